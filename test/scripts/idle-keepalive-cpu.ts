// Benchmark (not a test): what N idle connections cost the broker's CPU. Keepalive is checked by one
// 250 ms sweep per worker (packages/worker/src/sweep.ts), not a timer per connection re-armed on every
// packet, so idle connections should cost little.
//
//   pnpm exec node test/scripts/idle-keepalive-cpu.ts [--connections 20000] [--clients 2] [--workers 2]
//                                                      [--keepalive 60] [--sample-s 10]
//
// Starts the broker (real process), samples its CPU with no connections (baseline), opens the idle
// connections from --clients separate processes (raw sockets: CONNECT, CONNACK, then silence), samples
// the broker's CPU again over --sample-s seconds from /proc/<pid>/stat (utime + stime, every thread),
// and prints CPU% of one core. The broker and each client process must stay under the open-files limit
// (RLIMIT_NOFILE), so --connections is capped to fit.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { startBroker } from '../helpers/broker.ts';
import { metricValue, scrape } from '../helpers/metrics.ts';

const SELF = fileURLToPath(import.meta.url);

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number`);
  return v;
}

/** Soft limit on open files for this process (the broker and clients inherit it). */
function openFilesLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft && /^\d+$/.test(soft) ? Number(soft) : 1024;
}

// --- client process: opens `count` idle MQTT connections, reports, then stays silent -------------------

async function runClient(port: number, count: number, keepalive: number, tag: string): Promise<void> {
  const sockets: net.Socket[] = [];
  const CONCURRENCY = 100;
  let next = 0;
  let done = 0;
  let failed = 0;
  const open = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      let acked = false;
      socket.once('connect', () => {
        socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `idle-${tag}-${i}`, clean: true, keepalive }));
      });
      socket.on('data', (d) => {
        // CONNACK: 0x20 0x02 <flags> <return code 0>
        if (!acked && d[0] === 0x20 && d[3] === 0) {
          acked = true;
          sockets.push(socket);
          resolve();
        }
      });
      socket.on('error', () => undefined);
      socket.once('close', () => {
        if (!acked) {
          failed++;
          resolve();
        } else process.stdout.write(JSON.stringify({ closedByBroker: i }) + '\n');
      });
    });
  const lane = async (): Promise<void> => {
    while (next < count) {
      await open(next++);
      done++;
      if (done % 1000 === 0) process.stdout.write(JSON.stringify({ progress: done }) + '\n');
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, lane));
  process.stdout.write(JSON.stringify({ ready: sockets.length, failed }) + '\n');
  // Idle until killed: no PINGREQ (the sample is far shorter than 1.5 × keepalive).
  setInterval(() => undefined, 1 << 30);
}

// --- orchestrator ------------------------------------------------------------------------------------

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
}

/** utime + stime of the whole process (all threads), in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
  return Number(fields[11]) + Number(fields[12]); // utime (14), stime (15)
}

async function sampleCpu(pid: number, seconds: number): Promise<number> {
  const hz = clockTicks();
  const t0 = process.hrtime.bigint();
  const c0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const c1 = cpuTicks(pid);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  return ((c1 - c0) / hz / elapsed) * 100;
}

async function main(): Promise<void> {
  const requested = flag('connections', 20_000);
  const clientCount = Math.max(1, flag('clients', 2));
  const workers = Math.max(1, flag('workers', 2));
  const keepalive = flag('keepalive', 60);
  const sampleS = flag('sample-s', 10);
  const limit = openFilesLimit();
  // The broker holds one fd per connection plus ~100 of its own; each client process its share plus ~50.
  const connections = Math.min(requested, limit - 200, (limit - 100) * clientCount);
  if (connections < requested) console.log(`open files are limited to ${limit} per process: ${connections} connections instead of ${requested}`);
  const broker = await startBroker({ workers, logLevel: 'info', args: ['--timeouts.connectMs', '30000'] });
  const pid = broker.child.pid!;
  const children: ChildProcess[] = [];
  try {
    console.log(`broker pid ${pid}, ${workers} workers, port ${broker.port}`);
    const baseline = await sampleCpu(pid, sampleS);
    console.log(`baseline (0 connections): ${baseline.toFixed(2)}% of one core over ${sampleS} s`);

    const started = Date.now();
    const per = Math.ceil(connections / clientCount);
    const ready = await Promise.all(
      Array.from({ length: clientCount }, (_, k) => {
        const count = Math.min(per, connections - k * per);
        const child = spawn(process.execPath, [SELF, '--client', String(broker.port), String(count), String(keepalive), String(k)], { stdio: ['ignore', 'pipe', 'inherit'] });
        children.push(child);
        return new Promise<number>((resolve, reject) => {
          let buf = '';
          child.stdout!.on('data', (d: Buffer) => {
            buf += d.toString();
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const msg = JSON.parse(buf.slice(0, nl)) as { ready?: number; failed?: number; progress?: number; closedByBroker?: number };
              buf = buf.slice(nl + 1);
              if (msg.ready !== undefined) {
                if (msg.failed) console.log(`client ${k}: ${msg.failed} connections failed`);
                resolve(msg.ready);
              } else if (msg.closedByBroker !== undefined) console.log(`client ${k}: connection ${msg.closedByBroker} closed by the broker`);
            }
          });
          child.once('exit', (code) => reject(new Error(`client ${k} exited with ${code}`)));
        });
      }),
    );
    const open = ready.reduce((a, b) => a + b, 0);
    const rampS = (Date.now() - started) / 1000;
    const metrics = await scrape(broker.metricsPort);
    console.log(`${open} idle connections open (broker reports ${metricValue(metrics, 'starling_connections')}) after ${rampS.toFixed(1)} s`);
    if (rampS + sampleS > keepalive * 1.5) console.log('warning: the first connections would reach 1.5 × keepalive during the sample');
    const loaded = await sampleCpu(pid, sampleS);
    const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    console.log(`idle with ${open} connections (keepalive ${keepalive}): ${loaded.toFixed(2)}% of one core over ${sampleS} s (baseline ${baseline.toFixed(2)}%), broker RSS ${rss.toFixed(0)} MiB`);
    console.log(JSON.stringify({ connections: open, keepalive, workers, sampleSeconds: sampleS, cpuPercent: Number(loaded.toFixed(2)), baselineCpuPercent: Number(baseline.toFixed(2)), rssMiB: Math.round(rss) }));
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await broker.stop('SIGTERM');
  }
}

if (process.argv[2] === '--client') {
  const [port, count, keepalive, tag] = process.argv.slice(3).map(Number) as [number, number, number, number];
  void runClient(port, count, keepalive, String(tag));
} else {
  main().catch((err: Error) => {
    console.error(err);
    process.exit(1);
  });
}
