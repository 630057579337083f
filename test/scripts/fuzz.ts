// Long fuzz run against a real broker: `node test/scripts/fuzz.ts [--cases 5000] [--seconds 300] [--seed N] [--concurrency 20] [--ws]`
// (--ws: over MQTT-over-WebSocket).
// Bounded in count and time; loopback only. Exits 1 if the broker died, a canary round trip failed,
// a connection was neither answered nor closed, or the broker logged a handler failure / worker crash.
import fc from 'fast-check';
import { startBroker } from '../helpers/broker.ts';
import { Canary, fuzzCaseArb, runCase, runWsCase, type FuzzCase } from '../helpers/fuzz.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const cases = Math.min(arg('cases', 5000), 200_000);
const seconds = Math.min(arg('seconds', 300), 3600);
const seed = arg('seed', Date.now() % 2 ** 31);
const concurrency = Math.max(1, Math.min(arg('concurrency', 20), 200));

const overWs = process.argv.includes('--ws');
const broker = await startBroker({ args: ['--timeouts.connectMs', '1000', ...(overWs ? ['--ws.port', '0'] : [])], logLevel: 'info' });
// Whatever happens to this script, the broker it started goes with it.
process.on('exit', () => broker.child.kill('SIGKILL'));
const wsPort = overWs ? (broker.logs.find((l) => l.msg === 'transport listening' && l.listener === 'ws')!.port as number) : 0;
const send = (c: FuzzCase) => (overWs ? runWsCase(wsPort, c) : runCase(broker.port, c));
const canary = await Canary.open(broker.port);
const started = Date.now();
let sent = 0;
let answered = 0;
let closedOnly = 0;
const failures: string[] = [];
const samples = fc.sample(fc.array(fuzzCaseArb, { minLength: concurrency, maxLength: concurrency }), { numRuns: Math.ceil(cases / concurrency), seed });
console.log(`fuzz: seed ${seed}, ${cases} cases${overWs ? ' over WebSocket' : ''}, concurrency ${concurrency}, at most ${seconds} s`);
for (const batch of samples) {
  if (Date.now() - started > seconds * 1000 || failures.length > 0) break;
  const outcomes = await Promise.all(batch.map((c: FuzzCase) => send(c)));
  outcomes.forEach((o, i) => {
    sent++;
    if (o.answered) answered++;
    else if (o.closed) closedOnly++;
    else failures.push(`neither answered nor closed: v${batch[i]!.version} connectFirst=${batch[i]!.connectFirst} ${batch[i]!.bytes.toString('hex')}`);
  });
  if (broker.child.exitCode !== null) failures.push(`broker exited with ${broker.child.exitCode}`);
  await canary.roundTrip().catch((err: Error) => failures.push(err.message));
  if (sent % 1000 < concurrency) console.log(`  ${sent} cases, ${Math.round((Date.now() - started) / 1000)} s`);
}
canary.close();
const bugs = broker.logs.filter((l) => l.msg === 'handler failed' || l.msg === 'worker exited; starting a replacement' || l.msg === 'unhandled rejection');
for (const b of bugs.slice(0, 10)) failures.push(`broker: ${JSON.stringify(b)}`);
const warnings = new Map<string, number>();
for (const l of broker.logs) if (l.level >= 40) warnings.set(l.msg, (warnings.get(l.msg) ?? 0) + 1);
await broker.stop();
console.log(`fuzz: ${sent} cases in ${Math.round((Date.now() - started) / 1000)} s; answered ${answered}, closed without answer ${closedOnly}`);
console.log(`broker warnings/errors by message: ${JSON.stringify(Object.fromEntries(warnings))}`);
if (failures.length > 0) {
  console.log(`FAILED (seed ${seed}):\n${failures.slice(0, 20).join('\n')}`);
  process.exit(1);
}
console.log('fuzz: no failures');
