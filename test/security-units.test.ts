// The security modules' pure parts: PROXY headers, ACL compilation, password file, rate limiters.
import { describe, expect, it } from 'vitest';
import { aclFor, aclIsPerClient } from '../packages/core/src/auth/acl.ts';
import { formatHash, hashPasswordSync, parseHash, parsePasswordFile, PasswordFileError, verifySync } from '../packages/core/src/auth/password-file.ts';
import { FailureLimiter, TokenBucket } from '../packages/core/src/auth/rate-limit.ts';
import { parseProxyHeader, proxyV1, proxyV2 } from '../packages/core/src/transports/proxy-protocol.ts';

describe('PROXY protocol parser', () => {
  it('v1 TCP4/TCP6/UNKNOWN, with what follows left unconsumed', () => {
    const h = proxyV1('203.0.113.7', 4000);
    expect(parseProxyHeader(Buffer.concat([h, Buffer.from([0x10, 0x00])]))).toEqual({ status: 'ok', consumed: h.length, address: '203.0.113.7', port: 4000 });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 5000 1883\r\n'))).toMatchObject({ status: 'ok', address: '2001:db8::1', port: 5000 });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toMatchObject({ status: 'ok', address: null });
  });

  it('v2 PROXY and LOCAL', () => {
    const h = proxyV2('198.51.100.9', 40001);
    expect(parseProxyHeader(h)).toEqual({ status: 'ok', consumed: h.length, address: '198.51.100.9', port: 40001 });
    const local = Buffer.from(h.subarray(0, 16));
    local[12] = 0x20;
    local.writeUInt16BE(0, 14);
    expect(parseProxyHeader(local)).toMatchObject({ status: 'ok', address: null, consumed: 16 });
  });

  it('incomplete prefixes wait; garbage, wrong signatures and over-long headers are errors', () => {
    for (const h of [proxyV1('203.0.113.7', 4000), proxyV2('198.51.100.9', 40001)]) {
      for (let n = 1; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n)).status, `prefix ${n}`).toBe('incomplete');
    }
    expect(parseProxyHeader(Buffer.from([0x10, 0x0c, 0x00, 0x04]))).toMatchObject({ status: 'error' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 999.1.1.x 1.1.1.1 1 2\r\n'))).toMatchObject({ status: 'error' });
    expect(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`))).toMatchObject({ status: 'error' });
    expect(parseProxyHeader(Buffer.from('PRXY'))).toMatchObject({ status: 'error' });
    const badVersion = Buffer.from(proxyV2('1.2.3.4', 1));
    badVersion[12] = 0x11;
    expect(parseProxyHeader(badVersion)).toMatchObject({ status: 'error' });
  });
});

describe('ACL compilation', () => {
  const rules = [
    { action: 'all' as const, topic: 'users/%u/#', allow: true },
    { action: 'all' as const, topic: 'dev/%c/#', allow: true },
    { action: 'subscribe' as const, topic: 'admin/#', allow: true, username: 'admin' },
    { action: 'publish' as const, topic: 'anon/#', allow: true, anonymous: true as const },
    { action: 'all' as const, topic: 'deny/%u', allow: false },
  ];

  it('selects rules by username, client id and anonymity, substitutes %u and %c', () => {
    const alice = aclFor(rules, 'deny', { username: 'alice', clientId: 'c1' });
    expect(alice.canPublish('users/alice/x')).toBe(true);
    expect(alice.canPublish('users/bob/x')).toBe(false);
    expect(alice.canSubscribe('dev/c1/#')).toBe(true);
    expect(alice.canSubscribe('admin/#')).toBe(false);
    expect(alice.canPublish('anon/x')).toBe(false);
    const admin = aclFor(rules, 'deny', { username: 'admin', clientId: 'c2' });
    expect(admin.canSubscribe('admin/#')).toBe(true);
    const anon = aclFor(rules, 'deny', { username: null, clientId: 'c3' });
    expect(anon.canPublish('anon/x')).toBe(true);
    expect(anon.canPublish('users/null/x')).toBe(false);
    expect(aclIsPerClient(rules)).toBe(true);
    expect(aclIsPerClient([{ action: 'all', topic: 'a/#', allow: false }])).toBe(false);
  });

  it('a username with wildcards or / is never substituted: allow rules grant nothing, deny rules deny the action', () => {
    const sneaky = aclFor(rules, 'allow', { username: '+', clientId: 'x/#' });
    expect(sneaky.canPublish('users/bob/x')).toBe(false); // denied by the unsubstitutable deny rule
    expect(sneaky.canSubscribe('dev/anything/#')).toBe(false);
  });

  it('read checks only when a read can be refused; $SYS only by an explicit rule under default deny', () => {
    expect(aclFor([], 'allow', { username: null, clientId: 'a' }).checksReads).toBe(false);
    expect(aclFor([], 'allow', { username: null, clientId: 'a' }).empty).toBe(true);
    expect(aclFor([{ action: 'publish', topic: 'x', allow: false }], 'allow', { username: null, clientId: 'a' }).checksReads).toBe(false);
    const denySecret = aclFor([{ action: 'subscribe', topic: 'secret/#', allow: false }], 'allow', { username: null, clientId: 'a' });
    expect(denySecret.checksReads).toBe(true);
    expect(denySecret.canSubscribe('#')).toBe(true);
    expect(denySecret.canRead('secret/a')).toBe(false);
    expect(denySecret.canRead('open/a')).toBe(true);
    const strict = aclFor([{ action: 'all', topic: '#', allow: true }], 'deny', { username: null, clientId: 'a' });
    expect(strict.canRead('$SYS/broker/uptime')).toBe(false); // '#' does not match $ topics
    expect(strict.canRead('a/b')).toBe(true);
  });
});

describe('password file', () => {
  it('round-trips a hash and verifies only the right password', () => {
    const h = hashPasswordSync('pw', { N: 1024, r: 8, p: 1 });
    const parsed = parseHash(formatHash(h));
    expect(verifySync(Buffer.from('pw'), parsed)).toBe(true);
    expect(verifySync(Buffer.from('pW'), parsed)).toBe(false);
    expect(verifySync(Buffer.alloc(0), parsed)).toBe(false);
  });

  it('skips comments and blank lines; errors name the line', () => {
    const h = formatHash(hashPasswordSync('pw', { N: 1024, r: 8, p: 1 }));
    expect([...parsePasswordFile(`# users\n\nalice:${h}\n`).keys()]).toEqual(['alice']);
    expect(() => parsePasswordFile(`alice:${h}\nbob\n`, 'pw.txt')).toThrow(/pw.txt:2/);
    expect(() => parsePasswordFile('bob:scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==')).toThrow(PasswordFileError);
    expect(() => parsePasswordFile('bob:md5$abc')).toThrow(/scrypt/);
  });
});

describe('rate limiters', () => {
  it('failures per address per minute, forgotten after the window or a success', () => {
    const l = new FailureLimiter(2);
    l.failed('a', 0);
    expect(l.blocked('a', 1)).toBe(false);
    l.failed('a', 2);
    expect(l.blocked('a', 3)).toBe(true);
    expect(l.blocked('b', 3)).toBe(false);
    expect(l.blocked('a', 60_001)).toBe(false);
    l.failed('c', 0);
    l.failed('c', 0);
    l.succeeded('c');
    expect(l.blocked('c', 1)).toBe(false);
    expect(new FailureLimiter(0).blocked('a')).toBe(false);
  });

  it('token bucket: a second\'s burst, refilled over time, one oversized unit passes once', () => {
    const b = new TokenBucket(10, 0);
    let passed = 0;
    for (let i = 0; i < 100; i++) if (b.take(1, 0)) passed++;
    expect(passed).toBe(10);
    expect(b.take(1, 500)).toBe(true); // 5 tokens back after 0.5 s
    const bytes = new TokenBucket(1000, 0);
    expect(bytes.take(5000, 0)).toBe(true);
    expect(bytes.take(1, 1000)).toBe(false); // paying the debt off
    expect(bytes.take(1, 5000)).toBe(true);
  });
});
