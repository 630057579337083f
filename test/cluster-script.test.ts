// scripts/cluster.sh: one command starts a redis-server and three nodes on fixed ports (overridable, as
// here, to stay clear of anything else on the machine), prints how to connect, and Ctrl-C (SIGINT to
// its process group, as a terminal sends it) stops everything.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, uniqueId } from './helpers/clients.ts';
import { freePort } from '../packages/router/test/redis-server.ts';
import { waitForMetric } from './helpers/cluster.ts';
import { onTopic, record } from './helpers/receive.ts';

describe('scripts/cluster.sh', () => {
  it('starts redis-server and three nodes that form a cluster, prints how to connect, and stops everything on Ctrl-C', async () => {
    const ports: number[] = [];
    while (ports.length < 7) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const [redisPort, ...rest] = ports as [number, ...number[]];
    const mqtt = rest.slice(0, 3);
    const metrics = rest.slice(3, 6);
    const child = spawn('bash', [path.join(REPO_ROOT, 'scripts/cluster.sh'), '--sys.intervalMs', '0'], {
      cwd: REPO_ROOT,
      env: { ...process.env, MQTT_PORTS: mqtt.join(' '), METRICS_PORTS: metrics.join(' '), REDIS_PORT: String(redisPort), WORKERS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit');
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no banner within 60 s:\n${out}\n${err}`)), 60_000);
        child.stdout!.on('data', () => {
          if (out.includes('Press Ctrl-C')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then(() => reject(new Error(`cluster.sh exited early:\n${out}\n${err}`)));
      });
      for (const p of mqtt) expect(out).toContain(`mqtt://127.0.0.1:${p}`);
      for (const p of metrics) expect(out).toContain(`http://127.0.0.1:${p}/metrics`);
      expect(out).toContain(`redis://127.0.0.1:${redisPort}`);

      for (const p of metrics) await waitForMetric({ metricsPort: p } as BrokerProcess, 'starling_cluster_nodes', (v) => v === 3);
      const sub = await connectClient(mqtt[2]!, { clientId: uniqueId('script-sub') });
      const rec = record(sub);
      await sub.subscribeAsync('demo/#', { qos: 1 });
      const pub = await connectClient(mqtt[0]!, { clientId: uniqueId('script-pub') });
      await pub.publishAsync('demo/hello', 'hi from node-a', { qos: 1 });
      await pub.publishAsync('demo/fence', 'f', { qos: 1 });
      expect((await rec.until(onTopic('demo/fence'), 10_000)).map((r) => r.payload.toString())).toEqual(['hi from node-a']);
      await Promise.all([sub.endAsync(true), pub.endAsync(true)]);
    } finally {
      // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGINT');
    }
    const [code] = await exited;
    expect(code).toBe(130);
    expect(out).toContain('stopped');
    // Every process it started is gone (by command line: a port may already serve someone else again).
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => metrics.some((p) => line.includes(`--metrics.port ${p} `)) || (line.includes('redis-server') && line.includes(`:${redisPort}`)));
    expect(left).toEqual([]);
  }, 120_000);
});
