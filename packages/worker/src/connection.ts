import type { Socket } from 'node:net';
import mqtt from 'mqtt-packet';
import type { Message, QoS } from '@starling/router';
import { reasonInfo, type DisconnectReason } from '@starling/core/disconnect-reasons.ts';
import type { Logger } from '@starling/core/logger.ts';
import type { WorkerContext } from './context.ts';
import { encode, encodePublish, type ProtocolVersion } from './encode.ts';
import { dispatch } from './handlers/index.ts';
import { endSession } from './session-lifecycle.ts';
import type { Session } from './session.ts';
import { DENY_ALL, type ClientAcl } from '@starling/core/auth/acl.ts';

export type ConnState = 'awaiting-connect' | 'connecting' | 'connected' | 'closed';

/**
 * Whole-packet size from its Remaining Length (-1 while the header is incomplete): Maximum Packet Size
 * counts the fixed header too (MQTT 5.0 §3.1.2.11.4), so comparing the Remaining Length alone let
 * packets up to 5 bytes over the limit through.
 */
function packetSize(remaining: number): number {
  if (remaining < 0) return 0;
  return 1 + (remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4) + remaining;
}

/**
 * One client connection: bytes in (parser), bytes out (corked per turn), timers (connect deadline,
 * keepalive) and its end, classified exactly once. MQTT semantics live in handlers/.
 */
export class Connection {
  readonly id: number;
  readonly socket: Socket;
  readonly ctx: WorkerContext;
  log: Logger;
  state: ConnState = 'awaiting-connect';
  version: ProtocolVersion = 4;
  clientId: string | null = null;
  /** Authenticated identity (auth-client.ts); null: anonymous. */
  username: string | null = null;
  /** Topic authorization for this identity; allows nothing until authentication settles. */
  acl: ClientAcl = DENY_ALL;
  /** Source address when it is not the socket's (PROXY protocol). */
  remoteAddress: string | undefined;
  /** Holds packets until the authorization hook decided (auth-client.ts); null: no hook. */
  gate: ((packet: mqtt.Packet) => boolean) | null = null;
  session: Session | null = null;
  /** Packets that arrived after CONNECT while the session was being claimed; handled in order after CONNACK. */
  backlog: mqtt.Packet[] = [];

  /** Epoch ms of the last bytes received; keepalive counts from here. */
  lastSeen = Date.now();
  /** When the bytes being parsed arrived: every PUBLISH in one chunk shares it (latency histogram). */
  receivedAt = 0;
  /** Keepalive deadline in ms (1.5 × keepalive [MQTT-3.1.2-24]); 0 disables it. */
  keepaliveLimitMs = 0;
  readonly connectDeadline: number;

  // Limits the client announced (v5 CONNECT properties).
  clientMaxPacketSize = 268_435_455;
  clientReceiveMaximum = 65535;
  topicAliasMaximum = 0;
  /** Outbound QoS 1/2 window: min(client Receive Maximum, broker maxInflight) [MQTT-3.3.4-7]. */
  outboundWindow = 65535;

  // Topic aliases: client → broker (alias → topic) and broker → client (topic → alias).
  readonly inboundAliases = new Map<number, string>();
  readonly outboundAliases = new Map<string, number>();

  /** QoS 1/2 PUBLISH packets received and not yet acknowledged (PUBACK / PUBCOMP) [MQTT-3.3.4-9]. */
  inboundPending = 0;
  /** Acks are sent in the order the PUBLISHes arrived [MQTT-4.6.0-2]; async ones queue here. */
  ackChain: Promise<void> | null = null;

  will: Message | null = null;
  willDelaySeconds = 0;
  /** Session Expiry Interval as changed by the client's DISCONNECT (v5). */
  expiryOnDisconnect: number | undefined;
  endReason: DisconnectReason | null = null;

  // Backpressure (flow-control.ts): publishers this subscriber holds, and holds on this connection.
  readonly blocking = new Set<Connection>();
  congestedSince = 0;
  /** Backed up for longer than allowed: QoS 0 to it is dropped rather than slowing publishers. */
  slow = false;
  waitingForPeer = false;
  private holds = 0;

  private readonly parser: mqtt.Parser;
  private corked = false;
  private sawSocketError = false;

  constructor(ctx: WorkerContext, id: number, socket: Socket, acceptedAt = Date.now()) {
    this.ctx = ctx;
    this.id = id;
    this.socket = socket;
    this.log = ctx.log.child({ conn: id });
    // From accept (main thread), not from the hand-off: a busy worker must not extend the deadline.
    this.connectDeadline = acceptedAt + ctx.config.timeouts.connectMs;
    this.parser = mqtt.parser({ protocolVersion: 4 });
    this.parser.on('packet', this.onPacket);
    this.parser.on('error', this.onParseError);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, ctx.config.timeouts.tcpKeepAliveMs);
    socket.on('data', this.onData);
    socket.on('error', (err) => {
      this.sawSocketError = true;
      this.log.debug({ err: err.message }, 'socket error');
    });
    socket.on('close', () => {
      if (this.state !== 'closed') this.close(this.sawSocketError ? 'socket_error' : 'socket_closed');
    });
    socket.resume();
  }

  get ready(): boolean {
    return this.state === 'connected';
  }

  private readonly onData = (chunk: Buffer): void => {
    this.lastSeen = Date.now();
    this.receivedAt = this.ctx.metrics.stamp(this.lastSeen);
    this.ctx.metrics.stats.bytesIn += chunk.length;
    this.parser.parse(chunk);
    // Refuse an oversized packet as soon as its header says so, before buffering its body [MQTT-3.2.2-?]/0x95.
    const pending = (this.parser as unknown as { packet: { length: number } }).packet.length;
    if (packetSize(pending) > this.ctx.config.limits.maxPacketSize && this.state !== 'closed') this.close('packet_too_large');
  };

  private readonly onPacket = (packet: mqtt.Packet): void => {
    if (this.state === 'closed') return;
    if (packetSize(packet.length ?? 0) > this.ctx.config.limits.maxPacketSize) {
      this.close('packet_too_large');
      return;
    }
    if (this.state === 'connecting') {
      this.backlog.push(packet);
      return;
    }
    if (this.gate !== null && this.gate(packet)) return;
    try {
      dispatch(this, packet);
    } catch (err) {
      // A handler bug must cost one connection, never the worker.
      this.log.error({ err }, 'handler failed');
      this.close('protocol_error');
    }
  };

  private readonly onParseError = (err: Error): void => {
    if (this.state === 'closed') return;
    this.log.debug({ err: err.message }, 'malformed packet');
    if (this.state === 'awaiting-connect' && /protocol version|protocolId|Invalid protocol/i.test(err.message)) {
      // [MQTT-3.1.2-2] unacceptable protocol level: CONNACK 0x01 (v3.1.1 form), then close.
      this.writeNow(encode({ cmd: 'connack', returnCode: 1, sessionPresent: false }, 4));
      this.ctx.metrics.connectAttempts.inc({ result: 'unsupported_protocol' });
      this.close('protocol_error');
      return;
    }
    this.close('malformed_packet');
  };

  /** Handles packets that waited for CONNACK. */
  flushBacklog(): void {
    const backlog = this.backlog;
    this.backlog = [];
    for (const p of backlog) {
      if (this.state !== 'connected') return;
      this.onPacket(p);
    }
  }

  /** Writes a packet; writes within one event-loop turn leave in one syscall. */
  write(buf: Buffer): void {
    if (this.state === 'closed') return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(buf);
    this.ctx.metrics.stats.bytesOut += buf.length;
  }

  private writeNow(buf: Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(buf);
    this.ctx.metrics.stats.bytesOut += buf.length;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  send(packet: mqtt.Packet): void {
    this.write(encode(packet, this.version));
  }

  /** Stops reading this socket until every hold is released (TCP then slows the client). */
  holdReading(): void {
    if (this.holds++ === 0) this.socket.pause();
  }

  releaseReading(): void {
    if (this.holds === 0) return;
    if (--this.holds === 0 && this.state !== 'closed') {
      // While we did not read, the client's packets waited in TCP buffers: that time does not count
      // against its keepalive (the sweep skips held connections; the deadline restarts here).
      this.lastSeen = Date.now();
      this.socket.resume();
    }
  }

  /** Whether reading this socket is held (backpressure, a pending auth check). */
  get readingHeld(): boolean {
    return this.holds > 0;
  }

  socketBacklog(): number {
    return this.socket.writableLength;
  }

  /** Encodes a PUBLISH for this client alone (topic alias or subscription ids differ per client). */
  encodeForClient(m: Message, qos: QoS, retain: boolean, dup: boolean, packetId: number, subIds: number[] | null, now: number): Buffer {
    let topicAlias: number | undefined;
    let aliasOnly = false;
    if (this.topicAliasMaximum > 0) {
      const known = this.outboundAliases.get(m.topic);
      if (known !== undefined) {
        topicAlias = known;
        aliasOnly = true;
      } else if (this.outboundAliases.size < this.topicAliasMaximum) {
        topicAlias = this.outboundAliases.size + 1;
        this.outboundAliases.set(m.topic, topicAlias);
      }
    }
    const buf = encodePublish(m, { version: this.version, qos, retain, dup, packetId, subscriptionIds: subIds, topicAlias, aliasOnly, now });
    // A packet above the client's Maximum Packet Size is dropped by the caller [MQTT-3.1.2-25]: an alias
    // it would have set never reaches the client, so the next message on the topic must not rely on it.
    if (buf.length > this.clientMaxPacketSize && topicAlias !== undefined && !aliasOnly) this.outboundAliases.delete(m.topic);
    return buf;
  }

  /**
   * Ends the connection, once. Server-initiated ends of a v5 session send DISCONNECT with the reason's
   * code first [MQTT-4.13.1-1]. Then the session, the will and the metrics are settled.
   */
  close(reason: DisconnectReason, code?: number): void {
    if (this.state === 'closed') return;
    const wasState = this.state;
    this.endReason = reason;
    this.state = 'closed';
    const info = reasonInfo(reason);
    const disconnectCode = code ?? info.code;
    if (this.version === 5 && wasState === 'connected' && info.initiator === 'server' && disconnectCode !== undefined && !this.socket.destroyed) {
      this.writeNow(encode({ cmd: 'disconnect', reasonCode: disconnectCode }, 5));
    }
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
    this.socket.end();
    // A half-open peer never acknowledges our FIN: do not wait for it longer than timeouts.closeGraceMs.
    setTimeout(() => this.socket.destroy(), this.ctx.config.timeouts.closeGraceMs).unref();
    this.parser.removeAllListeners('packet');
    this.ctx.flow.release(this);
    this.ctx.connections.delete(this.id);
    this.ctx.metrics.disconnected(reason);
    const fields = { reason, initiator: info.initiator, clientId: this.clientId };
    this.log[info.level](fields, 'connection closed');
    endSession(this, wasState, reason);
    this.ctx.hub.post({ t: 'conn-end', connId: this.id, clientId: this.clientId, reason });
  }
}
