// Issue 3, connection lifecycle: every connection end is classified exactly once, from a closed set of
// reasons (packages/core/src/disconnect-reasons.ts), counted in starling_disconnects_total{reason,
// initiator} and logged once ('connection closed') at the reason's level.
import { once } from 'node:events';
import net from 'node:net';
import type mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DISCONNECT_REASONS, type DisconnectReason } from '@starling/core/disconnect-reasons.ts';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { allDisconnects, closedLine, closedLines, fullScrape, LEVEL } from './helpers/lifecycle.ts';

const MAX_PACKET = 1024;
const RECEIVE_MAXIMUM = 2;
const TOPIC_ALIAS_MAXIMUM = 4;

/** What a case leaves behind: the client whose end is measured, and connections to close afterwards. */
interface Outcome {
  clientId?: string;
  cleanup?: Array<{ raw: RawClient; clientId: string }>;
}

/** Closes helper connections normally and waits until the broker has recorded each end. */
async function cleanupRaw(broker: BrokerProcess, clients: Array<{ raw: RawClient; clientId: string }>): Promise<void> {
  for (const { raw, clientId } of clients) {
    if (raw.socket.destroyed) continue;
    raw.send(raw.version === 5 ? ({ cmd: 'disconnect', reasonCode: 0 } as mqttPacket.IDisconnectPacket) : { cmd: 'disconnect' });
    await closedLine(broker, { clientId, reason: 'normal' });
  }
}

describe('disconnect reasons: counted once, logged once at the right level', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({
      workers: 2,
      args: [
        '--timeouts.connectMs', '1000',
        '--limits.maxPacketSize', String(MAX_PACKET),
        '--limits.receiveMaximum', String(RECEIVE_MAXIMUM),
        '--limits.topicAliasMaximum', String(TOPIC_ALIAS_MAXIMUM),
      ],
    });
  });
  afterAll(async () => {
    await broker.stop();
  });

  async function connected(version: 4 | 5, connect: Partial<mqttPacket.IConnectPacket> = {}) {
    const raw = await RawClient.connect(broker.port, version);
    const clientId = connect.clientId ?? uniqueId('reason');
    const ack = await raw.handshake({ keepalive: 60, ...connect, clientId });
    expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
    return { raw, clientId };
  }

  async function expectDisconnect(raw: RawClient, code: number): Promise<void> {
    const d = await raw.next<mqttPacket.IDisconnectPacket>('disconnect', 10_000);
    expect(d.reasonCode).toBe(code);
    expect(await raw.closedWithin(5000)).toBe(true);
  }

  const cases: Array<{ reason: DisconnectReason; title: string; act: () => Promise<Outcome> }> = [
    {
      reason: 'normal',
      title: 'DISCONNECT (v3.1.1) [MQTT-3.14.4-3]',
      act: async () => {
        const c = await connected(4);
        c.raw.send({ cmd: 'disconnect' });
        await c.raw.closed;
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'normal_with_will',
      title: 'v5 DISCONNECT 0x04',
      act: async () => {
        const c = await connected(5, { will: { topic: `reasons/${uniqueId()}`, payload: Buffer.from('w'), qos: 0, retain: false } as mqttPacket.IConnectPacket['will'] });
        c.raw.send({ cmd: 'disconnect', reasonCode: 0x04 } as mqttPacket.IDisconnectPacket);
        await c.raw.closed;
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'keepalive_timeout',
      title: 'nothing within 1.5 × keepalive (v5 DISCONNECT 0x8D) [MQTT-3.1.2-22]',
      act: async () => {
        const c = await connected(5, { keepalive: 1 });
        await expectDisconnect(c.raw, 0x8d);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'connect_timeout',
      title: 'no CONNECT within timeouts.connectMs',
      act: async () => {
        const raw = await RawClient.connect(broker.port, 4);
        expect(await raw.closedWithin(10_000)).toBe(true);
        return {};
      },
    },
    {
      reason: 'socket_closed',
      title: 'the client closes its socket without DISCONNECT',
      act: async () => {
        const c = await connected(4);
        c.raw.socket.end();
        await c.raw.closed;
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'socket_error',
      title: 'the connection is reset (RST)',
      act: async () => {
        const c = await connected(4);
        c.raw.socket.resetAndDestroy();
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'malformed_packet',
      title: 'malformed bytes (v5 DISCONNECT 0x81) [MQTT-4.13.1-1]',
      act: async () => {
        const c = await connected(5);
        c.raw.write(Buffer.from([0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00])); // SUBSCRIBE with header flags 0000, not 0010
        await expectDisconnect(c.raw, 0x81);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'protocol_error',
      title: 'a second CONNECT (v5 DISCONNECT 0x82) [MQTT-3.1.0-2]',
      act: async () => {
        const c = await connected(5);
        c.raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: c.clientId, clean: true, keepalive: 60 });
        await expectDisconnect(c.raw, 0x82);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'packet_too_large',
      title: `a packet above limits.maxPacketSize ${MAX_PACKET} (v5 DISCONNECT 0x95) [MQTT-3.2.2-15]`,
      act: async () => {
        const c = await connected(5);
        c.raw.send({ cmd: 'publish', topic: 'reasons/big', payload: Buffer.alloc(MAX_PACKET * 2, 1), qos: 0, dup: false, retain: false });
        await expectDisconnect(c.raw, 0x95);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'receive_maximum_exceeded',
      title: `more than Receive Maximum ${RECEIVE_MAXIMUM} QoS 2 PUBLISHes unacknowledged (v5 DISCONNECT 0x93)`,
      act: async () => {
        const c = await connected(5);
        for (let id = 1; id <= RECEIVE_MAXIMUM + 1; id++) c.raw.send({ cmd: 'publish', topic: 'reasons/rm', payload: Buffer.from('x'), qos: 2, messageId: id, dup: false, retain: false });
        await expectDisconnect(c.raw, 0x93);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'topic_alias_invalid',
      title: `a Topic Alias above Topic Alias Maximum ${TOPIC_ALIAS_MAXIMUM} (v5 DISCONNECT 0x94) [MQTT-3.2.2-17]`,
      act: async () => {
        const c = await connected(5);
        c.raw.send({ cmd: 'publish', topic: 'reasons/alias', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { topicAlias: TOPIC_ALIAS_MAXIMUM + 1 } });
        await expectDisconnect(c.raw, 0x94);
        return { clientId: c.clientId };
      },
    },
    {
      reason: 'session_taken_over',
      title: 'a new connection with the same client id (v5 DISCONNECT 0x8E) [MQTT-3.1.4-3]',
      act: async () => {
        const c = await connected(5);
        const newer = await RawClient.connect(broker.port, 5);
        await newer.handshake({ clientId: c.clientId });
        await expectDisconnect(c.raw, 0x8e);
        return { clientId: c.clientId, cleanup: [{ raw: newer, clientId: c.clientId }] };
      },
    },
  ];

  for (const { reason, title, act } of cases) {
    const info = DISCONNECT_REASONS[reason];
    it(`${reason}: ${title} moves {reason="${reason}",initiator="${info.initiator}"} by exactly 1, logged once at ${info.level}`, async () => {
      const before = await allDisconnects(broker);
      const logFrom = broker.logs.length;
      const outcome = await act();
      const line = await closedLine(broker, { clientId: outcome.clientId, reason });
      expect(line.reason).toBe(reason);
      expect(line.initiator).toBe(info.initiator);
      expect(line.level).toBe(LEVEL[info.level]);
      const after = await allDisconnects(broker);
      // This end and no other: every reason's counter is unchanged except this one, which moved by 1.
      for (const [r, n] of after) expect(n - (before.get(r) ?? 0), r).toBe(r === reason ? 1 : 0);
      const text = await fullScrape(broker);
      expect(text).toContain(`starling_disconnects_total{reason="${reason}",initiator="${info.initiator}"}`);
      // Exactly one 'connection closed' line for this connection.
      const lines = broker.logs.slice(logFrom).filter((l) => l.msg === 'connection closed' && (outcome.clientId ? l.clientId === outcome.clientId : l.reason === reason));
      expect(lines).toHaveLength(1);
      await cleanupRaw(broker, outcome.cleanup ?? []);
    });
  }

  it('a clean DISCONNECT writes no warn or error line and exactly one debug "connection closed" line (v3.1.1 and v5)', async () => {
    const logFrom = broker.logs.length;
    const ids: string[] = [];
    for (const protocolVersion of [4, 5] as const) {
      const client = await connectClient(broker.port, { protocolVersion });
      const id = client.options.clientId!;
      ids.push(id);
      await client.subscribeAsync(`reasons/${id}`, { qos: 1 });
      await client.publishAsync(`reasons/${id}`, 'x', { qos: 1 });
      await client.endAsync();
      await closedLine(broker, { clientId: id });
    }
    await fullScrape(broker); // a round trip through the main thread and every worker: later lines are in
    const window = broker.logs.slice(logFrom);
    expect(window.filter((l) => l.level >= LEVEL.warn)).toEqual([]);
    for (const id of ids) {
      const lines = closedLines(broker, id);
      expect(lines).toHaveLength(1);
      expect(lines[0]!.reason).toBe('normal');
      expect(lines[0]!.level).toBe(LEVEL.debug);
    }
  });

  it('has a counter series for every reason of the closed set, and only those', async () => {
    const counts = await allDisconnects(broker);
    expect([...counts.keys()].sort()).toEqual(Object.keys(DISCONNECT_REASONS).sort());
  });
});

describe('server_shutting_down (SIGTERM)', () => {
  it('sends v5 clients DISCONNECT 0x8B, counts server_shutting_down once per connection, logs it once, exits 0', async () => {
    // closeGraceMs 5 s: how long the broker waits for a peer that does not close its side.
    const broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--timeouts.closeGraceMs', '5000'] });
    try {
      // allowHalfOpen: the client does not answer the broker's FIN with its own, so its socket stays
      // open until the broker destroys it (timeouts.closeGraceMs): a client that lingers.
      const socket = net.connect({ port: broker.port, host: '127.0.0.1', allowHalfOpen: true });
      await once(socket, 'connect');
      const raw = new RawClient(socket, 5);
      const clientId = uniqueId('sigterm');
      await raw.handshake({ clientId });
      const before = await allDisconnects(broker);
      expect(broker.child.kill('SIGTERM')).toBe(true);
      const d = await raw.next<mqttPacket.IDisconnectPacket>('disconnect', 10_000);
      expect(d.reasonCode).toBe(0x8b);
      // The client keeps its socket open: the broker waits for it (up to timeouts.closeGraceMs) before
      // stopping its workers, so their counters can still be read now. (A client that closes at once
      // lets the broker exit at once: its last counters go with the process.)
      const after = await allDisconnects(broker);
      for (const [r, n] of after) expect(n - (before.get(r) ?? 0), r).toBe(r === 'server_shutting_down' ? 1 : 0);
      // The broker does not wait for the lingering client beyond closeGraceMs: it exits, with 0.
      expect(await broker.exited).toBe(0);
      raw.destroy();
      const lines = closedLines(broker, clientId);
      expect(lines).toHaveLength(1);
      expect(lines[0]!.reason).toBe('server_shutting_down');
      expect(lines[0]!.level).toBe(LEVEL.info);
      expect(broker.logs.filter((l) => l.level >= LEVEL.warn)).toEqual([]);
    } finally {
      await broker.stop('SIGKILL');
    }
  });
});
