// Starting and stopping the brokers under test. Each broker is a command template run on free
// loopback ports; every started process group is killed on stop, on error and on exit.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openClient } from './load/handshake.ts';
import type { Endpoint } from './types.ts';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The workspace root (holds pnpm-workspace.yaml); broker commands run from there. */
export const REPO_ROOT = ((): string => {
  let dir = BENCH_DIR;
  while (dir !== path.dirname(dir)) {
    if (existsSync(path.join(dir, 'pnpm-workspace.yaml'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
})();

export interface BrokerDef {
  name: string;
  /**
   * Command line, split on whitespace (no shell). Placeholders: {port} MQTT port, {port2} a second
   * free port (metrics), {config} a generated config file, {dir} a scratch dir, {bench} this
   * package's directory. A leading `node` means the Node running this tool (Node 26 here).
   */
  template: string;
  /** Writes a config file for {config}. */
  config?: (port: number, dir: string) => string;
}

function mosquittoConfig(port: number, dir: string): string {
  const file = path.join(dir, 'mosquitto.conf');
  // Debian's defaults (20 in flight, 1000 queued per client) would throttle QoS 1/2 and drop
  // under fan-out; lift them so every broker is measured without an artificial queue limit.
  writeFileSync(
    file,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'max_inflight_messages 0',
      'max_queued_messages 100000',
      'max_queued_bytes 0',
      'max_connections -1',
      // set_tcp_nodelay stays at its default (false), like a Node net.Server's noDelay: every
      // broker runs with its stock TCP behaviour.
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  return file;
}

export const BUILTIN_BROKERS: Record<string, BrokerDef> = {
  mosquitto: { name: 'mosquitto', template: 'mosquitto -c {config}', config: mosquittoConfig },
  aedes: { name: 'aedes', template: 'node {bench}/src/servers/aedes-server.ts --port {port}' },
  // --logLevel warn: like the mosquitto config above (errors and warnings only), so no broker
  // pays for per-connection info logging in a benchmark.
  starling: { name: 'starling', template: 'node packages/core/src/bin/starling.ts --port {port} --metrics.port {port2} --logLevel warn' },
  // Two Aedes nodes sharing redis (mqemitter-redis): a reference point for the `cluster` scenario.
  'aedes-cluster': { name: 'aedes-cluster', template: 'node {bench}/src/servers/aedes-cluster.ts --port {port} --port-b {port2}' },
};

/** "name=template" overrides or adds a broker; a bare name picks a built-in one. */
export function resolveBrokers(names: string[], overrides: string[]): BrokerDef[] {
  const defs: Record<string, BrokerDef> = { ...BUILTIN_BROKERS };
  for (const o of overrides) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new Error(`--broker-cmd expects name=command, got '${o}'`);
    const name = o.slice(0, eq);
    defs[name] = { name, template: o.slice(eq + 1), config: defs[name]?.config };
  }
  return names.map((n) => {
    const d = defs[n];
    if (!d) throw new Error(`unknown broker '${n}': use --broker-cmd ${n}='command with {port}'`);
    return d;
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RunningBroker {
  name: string;
  pid: number;
  endpoint: Endpoint;
  /** The second node ({port2}) when started with nodes = 2. */
  endpointB: Endpoint;
  metricsPort: number;
  command: string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // negative pid: the whole process group
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

// Whatever happens to this process, no broker outlives it.
process.on('exit', () => {
  for (const c of live) killGroup(c, 'SIGKILL');
});

/**
 * Starts `def` and waits until it completes an MQTT handshake. With nodes = 2 (the cluster
 * scenario) {port2} is a second MQTT node and must answer too.
 */
export async function startBroker(def: BrokerDef, opts: { nodes?: 1 | 2; readyTimeoutMs?: number } = {}): Promise<RunningBroker> {
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const port = await freePort();
  const port2 = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), `bench-${def.name}-`));
  const config = def.config ? def.config(port, dir) : '';
  const argv = def.template
    .trim()
    .split(/\s+/)
    .map((t) =>
      t
        .replaceAll('{port}', String(port))
        .replaceAll('{port2}', String(port2))
        .replaceAll('{config}', config)
        .replaceAll('{dir}', dir)
        .replaceAll('{bench}', BENCH_DIR),
    );
  if (argv[0] === 'node') argv[0] = process.execPath;
  const command = argv.join(' ');
  const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let log = '';
  const keepLog = (b: Buffer): void => {
    log = (log + b.toString()).slice(-4000);
  };
  child.stdout!.on('data', keepLog);
  child.stderr!.on('data', keepLog);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | null = null;
  child.once('error', (err) => (spawnError = err));

  const stop = async (): Promise<void> => {
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    clearTimeout(timer);
    killGroup(child, 'SIGKILL');
    live.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };

  const endpoint = { host: '127.0.0.1', port };
  const endpointB = { host: '127.0.0.1', port: port2 };
  const deadline = Date.now() + readyTimeoutMs;
  for (const ep of opts.nodes === 2 ? [endpoint, endpointB] : [endpoint]) {
    await waitReady(ep);
  }
  return { name: def.name, pid: child.pid!, endpoint, endpointB, metricsPort: port2, command, stop };

  async function waitReady(ep: Endpoint): Promise<void> {
    for (;;) {
      if (spawnError || child.exitCode !== null || child.signalCode !== null) {
        await stop();
        throw new Error(`${def.name} exited before accepting connections (${command}): ${spawnError ?? ''}\n${log}`);
      }
      try {
        const { socket } = await openClient({ endpoint: ep, clientId: 'bench-ready', protocol: 4, keepalive: 10, timeoutMs: 1000 });
        socket.destroy();
        break;
      } catch {
        if (Date.now() > deadline) {
          await stop();
          throw new Error(`${def.name} did not accept MQTT connections on port ${ep.port} within ${readyTimeoutMs} ms (${command})\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

/** Kills every broker still running (signal handlers call this before exiting). */
export function killAllBrokers(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
  live.clear();
}
