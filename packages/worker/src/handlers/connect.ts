import { randomUUID } from 'node:crypto';
import type mqtt from 'mqtt-packet';
import { isValidTopicName, type Message, type StoredWill } from '@starling/router';
import type { ClaimResult } from '@starling/core/thread-messages.ts';
import type { Connection } from '../connection.ts';
import { encode } from '../encode.ts';
import type { ConnectResult } from '../metrics.ts';
import { restoreSession, resendInflight } from '../session-lifecycle.ts';
import { Session } from '../session.ts';
import { copyBytes, forwardedProperties } from './publish.ts';
import { authenticateConnect } from '../auth-client.ts';

const NEVER = 0xffffffff;

/** Refuses a CONNECT with a CONNACK code and closes [MQTT-3.2.2-5]. */
function refuse(conn: Connection, v5Code: number, v3Code: number, result: ConnectResult): void {
  const packet: mqtt.IConnackPacket =
    conn.version === 5 ? { cmd: 'connack', reasonCode: v5Code, sessionPresent: false } : { cmd: 'connack', returnCode: v3Code, sessionPresent: false };
  conn.send(packet);
  conn.ctx.metrics.connectAttempts.inc({ result });
  conn.close(result === 'bad_credentials' ? 'bad_credentials' : result === 'not_authorized' ? 'not_authorized' : 'protocol_error');
}

export function handleConnect(conn: Connection, packet: mqtt.IConnectPacket): void {
  const ctx = conn.ctx;
  const cfg = ctx.config;
  if (conn.state !== 'awaiting-connect') {
    // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
    conn.close('protocol_error');
    return;
  }
  const version = (packet.protocolVersion ?? 4) as 3 | 4 | 5;
  conn.version = version;
  const expectedId = version === 3 ? 'MQIsdp' : 'MQTT';
  if (packet.protocolId !== expectedId) {
    // [MQTT-3.1.2-1] wrong protocol name: v5 0x84, v3 0x01.
    return refuse(conn, 0x84, 1, 'unsupported_protocol');
  }
  const props = packet.properties ?? {};
  const clean = packet.clean !== false;

  let clientId = packet.clientId ?? '';
  let assigned: string | undefined;
  if (clientId === '') {
    // [MQTT-3.1.3-8] v3.1.1 accepts an empty id only with clean session; v3.1 never.
    if (version === 3 || (version === 4 && !clean)) return refuse(conn, 0x85, 2, 'identifier_rejected');
    clientId = `starling-${randomUUID()}`;
    // [MQTT-3.2.2-16] v5 tells the client the id it was given.
    if (version === 5) assigned = clientId;
  }

  // Keepalive: the server enforces 1.5 × keepalive [MQTT-3.1.2-24]; a maximum caps it.
  let keepalive = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  const maxKa = cfg.keepalive.maxSeconds;
  if (keepalive > maxKa || (keepalive === 0 && !cfg.keepalive.allowZero)) {
    if (version !== 5) return refuse(conn, 0x85, 2, 'keepalive_rejected');
    keepalive = maxKa;
    serverKeepAlive = maxKa; // [MQTT-3.2.2-21] the client must use the Server Keep Alive.
  }
  conn.keepaliveLimitMs = keepalive * 1500;

  if (version === 5) {
    if (props.receiveMaximum === 0 || props.maximumPacketSize === 0) {
      // [MQTT-3.1.2-?] 0 is a protocol error for both.
      conn.close('protocol_error');
      return;
    }
    conn.clientReceiveMaximum = props.receiveMaximum ?? 65535;
    conn.clientMaxPacketSize = props.maximumPacketSize ?? 268_435_455;
    conn.topicAliasMaximum = props.topicAliasMaximum ?? 0;
    if (props.authenticationMethod !== undefined) {
      // Enhanced authentication is not offered: 0x8C Bad authentication method.
      return refuse(conn, 0x8c, 4, 'bad_credentials');
    }
  }
  conn.outboundWindow = Math.min(conn.clientReceiveMaximum, cfg.limits.maxInflight);

  // v3: clean session 0 keeps the session until the client cleans it; v5: Session Expiry Interval.
  let expiry = version === 5 ? (props.sessionExpiryInterval ?? 0) : clean ? 0 : NEVER;
  let grantedExpiry: number | undefined;
  if (expiry > cfg.limits.maxSessionExpiry) {
    expiry = cfg.limits.maxSessionExpiry;
    grantedExpiry = expiry;
  }

  // Will [MQTT-3.1.2-7..17]
  let willRecord: StoredWill | null = null;
  if (packet.will) {
    const w = packet.will;
    const wqos = (w.qos ?? 0) as 0 | 1 | 2;
    if (!isValidTopicName(w.topic)) return refuse(conn, 0x90, 2, 'malformed');
    if (wqos > cfg.mqtt.maximumQoS) return refuse(conn, 0x9b, 2, 'malformed');
    if (w.retain && !cfg.mqtt.retainAvailable) return refuse(conn, 0x9a, 2, 'malformed');
    const now = Date.now();
    const wp = w.properties ?? {};
    const message: Message = {
      topic: w.topic,
      payload: copyBytes(typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload),
      qos: wqos,
      retain: w.retain === true,
      origin: clientId,
      receivedAt: now,
      properties: forwardedProperties(wp),
    };
    if (wp.messageExpiryInterval !== undefined) message.expiresAt = now + wp.messageExpiryInterval * 1000;
    conn.will = message;
    conn.willDelaySeconds = wp.willDelayInterval ?? 0;
    willRecord = { clientId, owner: { nodeId: ctx.nodeId, workerId: ctx.workerId, connId: conn.id }, message, delayMs: Math.min(conn.willDelaySeconds, expiry) * 1000 };
  }

  conn.clientId = clientId;
  conn.log = conn.log.child({ clientId });
  conn.state = 'connecting';
  const cleanStart = version === 5 ? clean : clean;

  // Credentials first (auth-client.ts): a refused CONNECT never claims the session.
  authenticateConnect(conn, packet, clientId)
    .then(() => ctx.hub.request<ClaimResult>({ op: 'claim', clientId, connId: conn.id, cleanStart, will: willRecord }))
    .then(async (claim) => {
      if (conn.state !== 'connecting') return; // the socket went away while we waited
      let session: Session;
      let routes: Array<Promise<void>> = [];
      let sessionPresent = false;
      if (claim.session && !cleanStart) {
        ({ session, routes } = restoreSession(ctx, claim.session, claim.queue));
        // Moved from another node that still collects for it: new deliveries wait for that (mergeHandover).
        if (claim.hold) session.held = [];
        session.protocolVersion = version;
        sessionPresent = true;
      } else session = new Session(clientId, version, expiry);
      session.expiryInterval = expiry;
      session.expiresAt = 0;
      ctx.sessions.set(clientId, session);
      await Promise.all(routes);
      if (conn.state !== 'connecting') return;
      session.conn = conn;
      conn.session = session;
      // Deliveries through wildcards are checked per topic only when this ACL can refuse a read.
      session.readAcl = conn.acl.checksReads ? conn.acl : null;
      conn.state = 'connected';

      const ack: mqtt.IConnackPacket = { cmd: 'connack', sessionPresent };
      if (version === 5) {
        ack.reasonCode = 0;
        const p: NonNullable<mqtt.IConnackPacket['properties']> = {
          receiveMaximum: cfg.limits.receiveMaximum,
          topicAliasMaximum: cfg.limits.topicAliasMaximum,
          wildcardSubscriptionAvailable: true,
          subscriptionIdentifiersAvailable: true,
          sharedSubscriptionAvailable: true,
          retainAvailable: cfg.mqtt.retainAvailable,
        };
        if (cfg.limits.maxPacketSize < 268_435_455) p.maximumPacketSize = cfg.limits.maxPacketSize;
        if (cfg.mqtt.maximumQoS < 2) p.maximumQoS = cfg.mqtt.maximumQoS;
        if (serverKeepAlive !== undefined) p.serverKeepAlive = serverKeepAlive;
        if (assigned !== undefined) p.assignedClientIdentifier = assigned;
        if (grantedExpiry !== undefined) p.sessionExpiryInterval = grantedExpiry;
        ack.properties = p;
      } else ack.returnCode = 0;
      conn.write(encode(ack, version));
      ctx.metrics.connectAttempts.inc({ result: 'accepted' });
      conn.log.debug({ sessionPresent, tookOver: claim.tookOver }, 'connected');
      resendInflight(ctx, session);
      if (claim.hold) ctx.hub.tell({ op: 'resumed', clientId, connId: conn.id });
      conn.flushBacklog();
    })
    .catch((err: Error) => {
      if (conn.state !== 'connecting') return;
      conn.log.warn({ err: err.message }, 'session claim failed');
      // 0x88 Server unavailable / v3 0x03.
      refuse(conn, 0x88, 3, 'server_unavailable');
    });
}
