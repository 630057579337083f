// ACLs per user / client id / anonymous, %u and %c substitution, default deny ($SYS included), and the
// read check per delivered topic (a wildcard never carries a topic its subscriber may not read).
import type { IPubackPacket, IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { passwdAdd, tempDir } from './helpers/security.ts';

async function login(port: number, version: 4 | 5, username?: string, clientId = uniqueId('acl')): Promise<RawClient> {
  const raw = await RawClient.connect(port, version);
  const c: Record<string, unknown> = { clientId };
  if (username !== undefined) {
    c.username = username;
    c.password = Buffer.from(`${username}-pw`);
  }
  const ack = await raw.handshake(c);
  expect((version === 5 ? ack.reasonCode : ack.returnCode) ?? 0).toBe(0);
  return raw;
}

let mid = 1;
async function subscribe(raw: RawClient, ...topics: string[]): Promise<number[]> {
  const messageId = mid++;
  raw.send({ cmd: 'subscribe', messageId, subscriptions: topics.map((topic) => ({ topic, qos: 1 as const })) });
  return (await raw.next<ISubackPacket>('suback', 5000, (p) => p.messageId === messageId)).granted as number[];
}

/** v5 QoS 1 publish: the PUBACK reason code. */
async function publish5(raw: RawClient, topic: string, payload = 'x', retain = false): Promise<number> {
  const messageId = mid++;
  raw.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain, dup: false });
  return (await raw.next<IPubackPacket>('puback', 5000, (p) => p.messageId === messageId)).reasonCode ?? 0;
}

describe('per-user rules, default deny', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    for (const u of ['alice', 'bob', 'admin']) passwdAdd(file, u, `${u}-pw`);
    const acl = [
      { action: 'subscribe', topic: 'users/%u/private/#', allow: false, username: 'alice' },
      { action: 'all', topic: 'users/%u/#', allow: true },
      { action: 'all', topic: 'clients/%c/#', allow: true },
      { action: 'all', topic: 'admin/#', allow: true, username: 'admin' },
      { action: 'subscribe', topic: '$SYS/#', allow: true, username: 'admin' },
      { action: 'publish', topic: 'anon/#', allow: true, anonymous: true },
      { action: 'all', topic: 'public/#', allow: true },
    ];
    broker = await startBroker({
      args: ['--auth.passwordFile', file, '--acl', JSON.stringify(acl), '--aclDefault', 'deny', '--sys.intervalMs', '200', '--auth.failuresPerMinutePerAddress', '0'],
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('%u: a user has its own subtree and not another user\'s (v5 0x87, v3.1.1 0x80)', async () => {
    const alice = await login(broker.port, 5, 'alice');
    expect(await subscribe(alice, 'users/alice/#', 'users/bob/#', 'public/x', 'elsewhere/x')).toEqual([1, 0x87, 1, 0x87]);
    expect(await publish5(alice, 'users/alice/a')).toBe(0);
    expect(await publish5(alice, 'users/bob/a')).toBe(0x87);
    expect(await publish5(alice, 'elsewhere/a')).toBe(0x87);
    const bob = await login(broker.port, 4, 'bob');
    expect(await subscribe(bob, 'users/bob/#', 'users/alice/#')).toEqual([1, 0x80]);
    alice.destroy();
    bob.destroy();
  });

  it('%c: a client id has its own subtree; rules with username apply to that user only', async () => {
    const dev = await login(broker.port, 5, 'bob', 'device-7');
    expect(await subscribe(dev, 'clients/device-7/#', 'clients/device-8/#', 'admin/#')).toEqual([1, 0x87, 0x87]);
    const admin = await login(broker.port, 5, 'admin');
    expect(await subscribe(admin, 'admin/#')).toEqual([1]);
    dev.destroy();
    admin.destroy();
  });

  it('anonymous: true applies to connections without username', async () => {
    const anon = await login(broker.port, 5);
    expect(await publish5(anon, 'anon/x')).toBe(0);
    const alice = await login(broker.port, 5, 'alice');
    expect(await publish5(alice, 'anon/x')).toBe(0x87);
    anon.destroy();
    alice.destroy();
  });

  it('$SYS is readable only where a rule allows it', async () => {
    const alice = await login(broker.port, 5, 'alice');
    expect(await subscribe(alice, '$SYS/#')).toEqual([0x87]);
    const admin = await login(broker.port, 5, 'admin');
    expect(await subscribe(admin, '$SYS/#')).toEqual([1]);
    const sys = await admin.next<IPublishPacket>('publish', 10_000);
    expect(sys.topic.startsWith('$SYS/')).toBe(true);
    alice.destroy();
    admin.destroy();
  });

  it('a wildcard the user may subscribe to does not carry topics the user may not read', async () => {
    const alice = await login(broker.port, 5, 'alice');
    // users/alice/# is allowed, users/alice/private/# is not readable by alice (rule before it).
    expect(await subscribe(alice, 'users/alice/#')).toEqual([1]);
    const admin = await login(broker.port, 5, 'admin');
    // admin publishes nowhere in users/alice except through its own rules: use alice's second client.
    const alice2 = await login(broker.port, 5, 'alice');
    expect(await publish5(alice2, 'users/alice/private/diary', 'secret')).toBe(0);
    expect(await publish5(alice2, 'users/alice/public', 'hello')).toBe(0);
    const got = await alice.next<IPublishPacket>('publish');
    expect(got.topic).toBe('users/alice/public');
    expect(alice.received.filter((p) => p.cmd === 'publish')).toHaveLength(0);
    alice.destroy();
    alice2.destroy();
    admin.destroy();
  });
});

describe('deny rules under default allow: wildcard subscriptions', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    const acl = [{ action: 'subscribe', topic: 'secret/#', allow: false }];
    broker = await startBroker({ args: ['--acl', JSON.stringify(acl)] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a # subscriber gets open topics, never secret ones (live and retained)', async () => {
    const pub = await login(broker.port, 5);
    const tag = uniqueId('t');
    expect(await publish5(pub, `secret/${tag}/retained`, 'r-secret', true)).toBe(0);
    expect(await publish5(pub, `open/${tag}/retained`, 'r-open', true)).toBe(0);
    const sub = await login(broker.port, 4);
    expect(await subscribe(sub, `+/${tag}/#`)).toEqual([1]);
    expect(await subscribe(sub, `secret/${tag}/#`)).toEqual([0x80]);
    const retained = await sub.next<IPublishPacket>('publish');
    expect(retained.topic).toBe(`open/${tag}/retained`);
    for (let i = 0; i < 5; i++) {
      expect(await publish5(pub, `secret/${tag}/${i}`, 's')).toBe(0);
      expect(await publish5(pub, `open/${tag}/${i}`, String(i))).toBe(0);
    }
    const live: string[] = [];
    for (let i = 0; i < 5; i++) live.push((await sub.next<IPublishPacket>('publish')).topic);
    expect(live).toEqual([0, 1, 2, 3, 4].map((i) => `open/${tag}/${i}`));
    // Nothing else arrives: a marker published last comes next.
    expect(await publish5(pub, `open/${tag}/marker`)).toBe(0);
    expect((await sub.next<IPublishPacket>('publish')).topic).toBe(`open/${tag}/marker`);
    expect(sub.received.filter((p) => p.cmd === 'publish')).toHaveLength(0);
    pub.destroy();
    sub.destroy();
  });
});

describe('will topics need publish permission', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ args: ['--acl', JSON.stringify([{ action: 'publish', topic: 'locked/#', allow: false }])] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a CONNECT whose will topic the client may not publish to is refused (0x87 / 0x05); $SYS wills too', async () => {
    for (const [version, topic, expected] of [
      [5, 'locked/will', 0x87],
      [4, 'locked/will', 0x05],
      [4, '$SYS/broker/fake', 0x05],
      [5, 'open/will', 0],
    ] as const) {
      const raw = await RawClient.connect(broker.port, version);
      const ack = await raw.handshake({ clientId: uniqueId('will'), will: { topic, payload: Buffer.from('bye'), qos: 0, retain: false } });
      expect((version === 5 ? ack.reasonCode : ack.returnCode) ?? 0, `${topic} v${version}`).toBe(expected);
      raw.destroy();
    }
  });
});
