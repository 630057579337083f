// Starts a real redis-server on a free loopback port for tests.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export class RedisServer {
  readonly port: number;
  private readonly args: string[];
  private proc: ChildProcess | null = null;

  private constructor(port: number, args: string[]) {
    this.port = port;
    this.args = args;
  }

  /** args: more redis-server options, e.g. ['--requirepass', 'secret']; tls: serve TLS only, with this
   *  certificate and key (PEM files). */
  static async start(options: { args?: string[]; tls?: { certFile: string; keyFile: string } } = {}): Promise<RedisServer> {
    const port = await freePort();
    const listen = options.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', options.tls.certFile, '--tls-key-file', options.tls.keyFile, '--tls-auth-clients', 'no']
      : ['--port', String(port)];
    const server = new RedisServer(port, [...listen, ...(options.args ?? [])]);
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it again on the same port (empty: nothing is persisted). */
  launch(): Promise<void> {
    const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir(), ...this.args];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      let output = '';
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          proc.stdout!.off('data', onData);
          proc.stdout!.resume();
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.resume();
      proc.once('error', reject);
      proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    });
  }

  /** Kills it (SIGKILL: a crash, not a shutdown) and waits until it is gone. */
  kill(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  }
}

/** A Redis Cluster of `size` masters on free loopback ports, slots split evenly, ready to serve. */
export class RedisClusterServers {
  readonly servers: RedisServer[];
  private readonly dir: string;

  private constructor(servers: RedisServer[], dir: string) {
    this.servers = servers;
    this.dir = dir;
  }

  static async start(size = 3): Promise<RedisClusterServers> {
    const dir = mkdtempSync(join(tmpdir(), 'starling-cluster-'));
    const servers: RedisServer[] = [];
    for (let i = 0; i < size; i++)
      servers.push(await RedisServer.start({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${i}.conf`)] }));
    const clients = servers.map((s) => new Redis(s.port, '127.0.0.1'));
    try {
      const per = Math.ceil(16384 / size);
      await Promise.all(clients.map((c, i) => c.call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1)))));
      for (const s of servers.slice(1)) await clients[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(s.port));
      // Gossip has no event to wait for: poll the cluster state.
      for (;;) {
        const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>));
        if (infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${size}`))) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      for (const c of clients) c.disconnect();
    }
    return new RedisClusterServers(servers, dir);
  }

  get nodes(): Array<{ host: string; port: number }> {
    return this.servers.map((s) => ({ host: '127.0.0.1', port: s.port }));
  }

  async kill(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
