// Starts Starling as a user does (`node packages/core/src/bin/starling.ts …`) on free ports and
// captures its JSON log lines, so tests can assert on what an operator would read.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = path.join(REPO_ROOT, 'packages/core/src/bin/starling.ts');

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface BrokerOptions {
  /** Extra CLI flags, e.g. ['--timeouts.connectMs', '1000']. */
  args?: string[];
  env?: Record<string, string>;
  workers?: number;
  logLevel?: string;
}

export class BrokerProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  port = 0;
  metricsPort = 0;
  private readonly waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<number | null>;

  constructor(child: ChildProcess) {
    this.child = child;
    this.exited = once(child, 'exit').then(([code]) => code as number | null);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: LogLine;
      try {
        parsed = JSON.parse(line) as LogLine;
      } catch {
        parsed = { level: 30, msg: line };
      }
      this.logs.push(parsed);
      for (const w of [...this.waiters]) {
        if (w.pred(parsed)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(parsed);
        }
      }
    });
    readline.createInterface({ input: child.stderr! }).on('line', (line) => this.stderr.push(line));
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Resolves with the first log line (already seen or future) matching pred. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
    });
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    return this.exited;
  }
}

/** Spawns the broker without waiting for it: for tests that watch start-up itself (e.g. /readyz). */
export function launchBroker(opts: BrokerOptions = {}): BrokerProcess {
  const args = [
    ENTRY,
    '--port', '0',
    '--host', '127.0.0.1',
    '--metrics.port', '0',
    '--metrics.host', '127.0.0.1',
    '--workers', String(opts.workers ?? 2),
    '--logLevel', opts.logLevel ?? 'debug',
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new BrokerProcess(child);
}

export async function startBroker(opts: BrokerOptions = {}): Promise<BrokerProcess> {
  const broker = launchBroker(opts);
  const started = broker.waitForLog((l) => l.msg === 'starling listening', 20_000);
  const failed = broker.exited.then((code) => {
    throw new Error(`broker exited with ${code} before listening:\n${broker.stderr.join('\n')}`);
  });
  const line = await Promise.race([started, failed]);
  broker.port = line.port as number;
  broker.metricsPort = line.metricsPort as number;
  return broker;
}
