// A two-node Aedes cluster on loopback for the `cluster` scenario: one redis-server plus two
// aedes-server.ts processes sharing it through mqemitter-redis.
// Usage: node aedes-cluster.ts --port 1883 --port-b 1884
// All three are children of this process, so the bench's process-tree sampling counts them and
// killing this process group stops them all.

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string' }, 'port-b': { type: 'string' }, 'redis-port': { type: 'string' } } });
if (!values.port || !values['port-b']) throw new Error('--port and --port-b are required');

const here = path.dirname(fileURLToPath(import.meta.url));
const children: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} did not open`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function run(cmd: string, args: string[]): void {
  const c = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  c.once('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`${cmd} exited (${code}); stopping the cluster\n`);
      stop(1);
    }
  });
  children.push(c);
}

let stopping = false;
function stop(code: number): void {
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 500).unref();
}
process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));

const redisPort = values['redis-port'] ? Number(values['redis-port']) : await freePort();
run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
await waitForPort(redisPort, 10_000);
const redis = `redis://127.0.0.1:${redisPort}`;
for (const port of [values.port, values['port-b']]) {
  run(process.execPath, [path.join(here, 'aedes-server.ts'), '--port', port, '--redis', redis]);
}
