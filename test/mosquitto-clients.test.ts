// Interoperability with Debian's mosquitto-clients: mosquitto_sub and mosquitto_pub, spawned as
// processes against the real broker, in MQTT 3.1.1 and 5.0, QoS 1 and 2, and retained with -r.
import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { uniqueId } from './helpers/clients.ts';

type Version = 'mqttv311' | 'mqttv5';

let broker: BrokerProcess;

interface Run {
  lines: string[];
  /** Resolves with the first stdout/stderr line matching pred. */
  line(pred: (l: string) => boolean, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; output: string }>;
}

/**
 * Spawns a mosquitto client; debug output (-d) tells when it is subscribed. stdout to a pipe is block
 * buffered, so stdbuf makes it line buffered: the SUBACK line must arrive while the client runs.
 * Bounded by -W and a kill.
 */
function run(cmd: 'mosquitto_sub' | 'mosquitto_pub', args: string[], limitMs = 15_000): Run {
  const child = spawn('stdbuf', ['-oL', cmd, '-h', '127.0.0.1', '-p', String(broker.port), '-d', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let waiters: Array<{ pred: (l: string) => boolean; resolve: (l: string) => void }> = [];
  const onLine = (l: string) => {
    lines.push(l);
    waiters = waiters.filter((w) => (w.pred(l) ? (w.resolve(l), false) : true));
  };
  readline.createInterface({ input: child.stdout }).on('line', onLine);
  readline.createInterface({ input: child.stderr }).on('line', onLine);
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const exited = new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, output: lines.join('\n') });
    });
  });
  return {
    lines,
    exited,
    line(pred, timeoutMs = 10_000) {
      const seen = lines.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${cmd}: no matching line within ${timeoutMs} ms:\n${lines.join('\n')}`)), timeoutMs);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

/** mosquitto_sub printing each message as `MSG <retain> <qos> <topic> <payload>`, exiting after `count`. */
function sub(version: Version, topic: string, qos: 1 | 2, count = 1): Run {
  return run('mosquitto_sub', ['-V', version, '-i', uniqueId('msub'), '-t', topic, '-q', String(qos), '-C', String(count), '-W', '10', '-F', 'MSG %r %q %t %p']);
}

async function pub(version: Version, topic: string, qos: 0 | 1 | 2, message: string | null, retain = false): Promise<void> {
  const args = ['-V', version, '-i', uniqueId('mpub'), '-t', topic, '-q', String(qos), ...(message === null ? ['-n'] : ['-m', message]), ...(retain ? ['-r'] : [])];
  const { code, output } = await run('mosquitto_pub', args).exited;
  expect(code, output).toBe(0);
}

beforeAll(async () => {
  broker = await startBroker({ workers: 2 });
});
afterAll(async () => {
  await broker.stop();
});

describe('mosquitto_pub / mosquitto_sub', () => {
  const pairs: Array<[Version, Version]> = [
    ['mqttv311', 'mqttv311'],
    ['mqttv5', 'mqttv5'],
    ['mqttv311', 'mqttv5'],
    ['mqttv5', 'mqttv311'],
  ];
  for (const [pubVersion, subVersion] of pairs) {
    for (const qos of [1, 2] as const) {
      it(`mosquitto_sub -V ${subVersion} receives mosquitto_pub -V ${pubVersion}'s message at QoS ${qos}`, async () => {
        const topic = `${uniqueId('mosq')}/x`;
        const s = sub(subVersion, topic, qos);
        await s.line((l) => l.includes('received SUBACK'));
        await pub(pubVersion, topic, qos, `hello q${qos}`);
        const { code, output } = await s.exited;
        expect(code, output).toBe(0);
        expect(s.lines.filter((l) => l.startsWith('MSG '))).toEqual([`MSG 0 ${qos} ${topic} hello q${qos}`]);
      });
    }
  }

  for (const version of ['mqttv311', 'mqttv5'] as const) {
    it(`-V ${version}: a message published with -r is stored and sent to a later mosquitto_sub with the retain flag; -r -n clears it`, async () => {
      const topic = `${uniqueId('mosq-ret')}/x`;
      await pub(version, topic, 1, 'kept', true);
      const s = sub(version, topic, 1);
      const { code, output } = await s.exited;
      expect(code, output).toBe(0);
      expect(s.lines.filter((l) => l.startsWith('MSG '))).toEqual([`MSG 1 1 ${topic} kept`]);

      await pub(version, topic, 1, null, true);
      // Cleared: a new subscriber gets only what is published after it subscribed.
      const after = sub(version, topic, 1);
      await after.line((l) => l.includes('received SUBACK'));
      await pub(version, topic, 1, 'live');
      expect((await after.exited).code).toBe(0);
      expect(after.lines.filter((l) => l.startsWith('MSG '))).toEqual([`MSG 0 1 ${topic} live`]);
    });
  }
});
