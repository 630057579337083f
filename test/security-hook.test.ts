// The authentication/authorization hook module (auth.hookModule), loaded on the main thread.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { IPubackPacket, IPublishPacket, ISubackPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { passwdAdd, tempDir } from './helpers/security.ts';

async function connectRaw(port: number, version: 4 | 5, username?: string, password?: string): Promise<{ raw: RawClient; code: number }> {
  const raw = await RawClient.connect(port, version);
  const c: Record<string, unknown> = { clientId: uniqueId('hook') };
  if (username !== undefined) c.username = username;
  if (password !== undefined) c.password = Buffer.from(password);
  const ack = await raw.handshake(c);
  return { raw, code: (version === 5 ? ack.reasonCode : ack.returnCode) ?? 0 };
}

async function code(port: number, version: 4 | 5, username?: string, password?: string): Promise<number> {
  const { raw, code } = await connectRaw(port, version, username, password);
  raw.destroy();
  return code;
}

describe('auth.hookModule', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  const hookLog = `${tmp.dir}/hook.log`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    broker = await startBroker({
      args: [
        '--auth.passwordFile', file,
        '--auth.hookModule', path.join(REPO_ROOT, 'test/fixtures/auth-hook.ts'),
        '--auth.failuresPerMinutePerAddress', '0',
        // The ACL refuses hook/allowed/#: the hook's yes overrides it; with no opinion the ACL decides.
        '--acl', JSON.stringify([{ action: 'all', topic: 'hook/allowed/#', allow: false }, { action: 'all', topic: 'acl/denied/#', allow: false }]),
      ],
      env: { AUTH_HOOK_LOG: hookLog },
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('decides CONNECT: yes, no (0x86/0x04), not authorized (0x87/0x05), failure (0x88/0x03); no opinion falls back to the password file', async () => {
    expect(await code(broker.port, 5, 'hook-ok', 'letmein')).toBe(0);
    expect(await code(broker.port, 4, 'hook-ok', 'nope')).toBe(0x04);
    expect(await code(broker.port, 5, 'hook-deny', 'x')).toBe(0x86);
    expect(await code(broker.port, 4, 'hook-noauth', 'x')).toBe(0x05);
    expect(await code(broker.port, 5, 'hook-noauth', 'x')).toBe(0x87);
    expect(await code(broker.port, 5, 'hook-throw', 'x')).toBe(0x88);
    expect(await code(broker.port, 4, 'hook-throw', 'x')).toBe(0x03);
    expect(await code(broker.port, 4, 'hook-slow', 'x')).toBe(0);
    expect(await code(broker.port, 4, 'alice', 'wonderland')).toBe(0);
    expect(await code(broker.port, 5, 'alice', 'wrong')).toBe(0x86);
    expect(await code(broker.port, 4)).toBe(0); // anonymous allowed by default
    const calls = readFileSync(hookLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const auth = calls.filter((c) => c.kind === 'authenticate');
    expect(auth.length).toBeGreaterThanOrEqual(11);
    expect(auth.every((c) => c.address === '127.0.0.1' || c.address === '::ffff:127.0.0.1')).toBe(true);
  });

  it('authorize(): a hook refusal gives SUBACK 0x87 / PUBACK 0x87, its yes overrides the ACL, no opinion leaves it to the ACL', async () => {
    const { raw, code } = await connectRaw(broker.port, 5, 'hook-ok', 'letmein');
    expect(code).toBe(0);
    raw.send({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [
        { topic: 'hook/denied/x', qos: 1 },
        { topic: 'hook/allowed/x', qos: 1 },
        { topic: 'acl/denied/x', qos: 1 },
        { topic: 'users/mapped-user/#', qos: 1 },
        { topic: 'users/someone-else/#', qos: 1 },
        { topic: 'free/x', qos: 1 },
      ],
    });
    const suback = await raw.next<ISubackPacket>('suback');
    expect(suback.granted).toEqual([0x87, 1, 0x87, 1, 0x87, 1]);

    raw.send({ cmd: 'publish', topic: 'hook/denied/t', payload: Buffer.from('x'), qos: 1, messageId: 10, retain: false, dup: false });
    expect((await raw.next<IPubackPacket>('puback', 5000, (p) => p.messageId === 10)).reasonCode).toBe(0x87);
    raw.send({ cmd: 'publish', topic: 'hook/allowed/x', payload: Buffer.from('ok'), qos: 1, messageId: 11, retain: false, dup: false });
    expect((await raw.next<IPubackPacket>('puback', 5000, (p) => p.messageId === 11)).reasonCode ?? 0).toBe(0);
    const got = await raw.next<IPublishPacket>('publish');
    expect(got.topic).toBe('hook/allowed/x');
    raw.destroy();
  });

  it('packets waiting for authorize() keep their order', async () => {
    const sub = await connectRaw(broker.port, 4, 'alice', 'wonderland');
    sub.raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'order/#', qos: 1 }] });
    await sub.raw.next('suback');
    const pub = await connectRaw(broker.port, 4, 'alice', 'wonderland');
    // New topics (each a hook round trip) interleaved with a repeated one (cached after the first).
    const topics = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? `order/new-${i}` : 'order/same'));
    for (const [i, topic] of topics.entries()) pub.raw.send({ cmd: 'publish', topic, payload: Buffer.from(String(i)), qos: 1, messageId: i + 1, retain: false, dup: false });
    const received: string[] = [];
    for (let i = 0; i < topics.length; i++) received.push((await sub.raw.next<IPublishPacket>('publish')).payload.toString());
    expect(received).toEqual(topics.map((_, i) => String(i)));
    sub.raw.destroy();
    pub.raw.destroy();
  });
});
