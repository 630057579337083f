// Smoke test for the load generator: a tiny bounded fan-in against a broker the tool starts
// itself (mosquitto when installed, else the bundled Aedes server), plus a one-round compare that
// exercises report rendering. No timing assertions: only that messages flowed and JSON is valid.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FrameScanner } from '../src/load/frames.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.resolve(here, '../src/cli.ts');
const root = path.resolve(here, '../../..');
// The workspace pins Node 26 (runs .ts directly); fall back to whatever runs the tests.
const localNode = path.join(root, 'node_modules/.bin/node');
const node = existsSync(localNode) ? localNode : process.execPath;
const hasMosquitto = spawnSync('mosquitto', ['-h']).error === undefined;
const broker = process.env.BENCH_SMOKE_BROKER ?? (hasMosquitto ? 'mosquitto' : 'aedes');
const out = mkdtempSync(path.join(os.tmpdir(), 'bench-smoke-'));

afterAll(() => rmSync(out, { recursive: true, force: true }));

function bench(args: string[]): string {
  return execFileSync(node, [cli, ...args, '--out', out, '--max-background', '1', '--quiet'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 90_000,
  });
}

describe('frame scanner', () => {
  it('splits frames that straddle chunk boundaries', () => {
    const seen: number[] = [];
    const scanner = new FrameScanner((type, _flags, _buf, start, end) => seen.push(type, end - start));
    // PUBACK(1), PUBLISH with a 200-byte body (2-byte remaining length), PINGRESP.
    const publish = Buffer.concat([Buffer.from([0x30, 0xc8, 0x01]), Buffer.alloc(200, 1)]);
    const all = Buffer.concat([Buffer.from([0x40, 0x02, 0x00, 0x01]), publish, Buffer.from([0xd0, 0x00])]);
    for (let i = 0; i < all.length; i += 7) scanner.push(all.subarray(i, i + 7));
    expect(seen).toEqual([4, 2, 3, 200, 13, 0]);
  });
});

describe(`bench against ${broker}`, () => {
  it('runs a 1 s fan-in and reports delivered messages as JSON', () => {
    const stdout = bench(['fan-in', '--broker', broker, '--warmup', '0.5', '--duration', '1', '--publishers', '2', '--json']);
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as {
      scenario: string;
      metrics: { deliveredPerSec: number; totalDelivered: number };
      generator: { cpuSeconds: number };
    };
    expect(result.scenario).toBe('fan-in');
    expect(result.metrics.totalDelivered).toBeGreaterThan(0);
    expect(result.metrics.deliveredPerSec).toBeGreaterThan(0);
    expect(result.generator.cpuSeconds).toBeGreaterThanOrEqual(0);
    const files = readdirSync(out).filter((f) => f.endsWith('-fan-in.json'));
    expect(files.length).toBe(1);
    expect(() => JSON.parse(readFileSync(path.join(out, files[0]!), 'utf8'))).not.toThrow();
  }, 120_000);

  it('compares one round and renders a report', () => {
    bench(['compare', '--brokers', broker, '--rounds', '1', '--cooldown', '0', 'pairs:qos=1,publishers=2,warmup=0.3,duration=0.7']);
    const dir = readdirSync(out).find((f) => f.endsWith('-compare'))!;
    const doc = JSON.parse(readFileSync(path.join(out, dir, 'compare.json'), 'utf8')) as {
      summary: Array<{ broker: string; n: number; primary: { median: number } | null }>;
    };
    expect(doc.summary[0]!.n).toBe(1);
    expect(doc.summary[0]!.primary!.median).toBeGreaterThan(0);
    const svg = readFileSync(path.join(out, dir, 'throughput.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(readFileSync(path.join(out, dir, 'report.md'), 'utf8')).toContain(broker);
  }, 120_000);
});
