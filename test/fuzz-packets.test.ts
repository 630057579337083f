// Property-based fuzzing of everything a socket can send: valid packets of every type and protocol
// version, mutated (bytes, lengths, types), split at random boundaries, against the real broker.
// Bounded here (200 connections); `node test/scripts/fuzz.ts` runs longer.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { Canary, fuzzCaseArb, runCase, runWsCase } from './helpers/fuzz.ts';

describe('hostile input', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ args: ['--timeouts.connectMs', '1000', '--ws.port', '0'], logLevel: 'info' });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('200 fuzzed connections: the broker stays up, a canary keeps publishing and receiving, each connection is answered or closed', async () => {
    const canary = await Canary.open(broker.port);
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
    let batches = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fuzzCaseArb, { minLength: 20, maxLength: 20 }), async (cases) => {
        const outcomes = await Promise.all(cases.map((c) => runCase(broker.port, c)));
        outcomes.forEach((o, i) => expect(o.answered || o.closed, `case ${i}: ${cases[i]!.bytes.toString('hex')}`).toBe(true));
        expect(broker.child.exitCode).toBeNull();
        await canary.roundTrip();
        batches++;
      }),
      { numRuns: 10, seed, endOnFailure: true },
    );
    expect(batches).toBe(10);
    canary.close();
    // Nothing reached a handler's catch-all or killed a worker: those are bugs, even when contained.
    const bugs = broker.logs.filter((l) => l.msg === 'handler failed' || l.msg === 'worker exited; starting a replacement' || l.msg === 'unhandled rejection');
    expect(bugs, JSON.stringify(bugs.slice(0, 3))).toEqual([]);
  }, 120_000);

  it('60 fuzzed connections over WebSocket: same properties', async () => {
    const wsPort = broker.logs.find((l) => l.msg === 'transport listening' && l.listener === 'ws')!.port as number;
    const canary = await Canary.open(broker.port);
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
    await fc.assert(
      fc.asyncProperty(fc.array(fuzzCaseArb, { minLength: 20, maxLength: 20 }), async (cases) => {
        const outcomes = await Promise.all(cases.map((c) => runWsCase(wsPort, c)));
        outcomes.forEach((o, i) => expect(o.answered || o.closed, `case ${i}: ${cases[i]!.bytes.toString('hex')}`).toBe(true));
        expect(broker.child.exitCode).toBeNull();
        await canary.roundTrip();
      }),
      { numRuns: 3, seed, endOnFailure: true },
    );
    canary.close();
    const bugs = broker.logs.filter((l) => l.msg === 'handler failed' || l.msg === 'worker exited; starting a replacement' || l.msg === 'unhandled rejection');
    expect(bugs, JSON.stringify(bugs.slice(0, 3))).toEqual([]);
  }, 60_000);
});
