// Shared by the connection-lifecycle tests (test/lifecycle-*.test.ts): disconnect counters, the one
// 'connection closed' log line per connection, and clients that hold a will.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import type { DisconnectReason } from '@starling/core/disconnect-reasons.ts';
import { REPO_ROOT, type BrokerProcess, type LogLine } from './broker.ts';
import { collect, connectClient } from './clients.ts';
import { metricValue, scrape } from './metrics.ts';

/** pino's numeric levels. */
export const LEVEL = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;

/** A scrape that includes every worker's registry (a worker that did not answer in time is left out
 *  of the scrape, and its counters would read as 0). */
export async function fullScrape(broker: BrokerProcess): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const text = await scrape(broker.metricsPort);
    const workers = metricValue(text, 'starling_workers');
    const answered = [...text.matchAll(/^starling_connections\{worker="\d+"\}/gm)].length;
    if (answered >= workers || attempt >= 5) return text;
  }
}

/** starling_disconnects_total for one reason (summed over workers and the main thread). */
export async function disconnects(broker: BrokerProcess, reason: DisconnectReason): Promise<number> {
  return metricValue(await fullScrape(broker), 'starling_disconnects_total', { reason });
}

/** Every reason's counter, read in one scrape. */
export async function allDisconnects(broker: BrokerProcess): Promise<Map<string, number>> {
  const text = await fullScrape(broker);
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^starling_disconnects_total\{([^}]*)\}\s+(\S+)/gm)) {
    const reason = /reason="([^"]*)"/.exec(m[1]!)?.[1];
    if (reason) out.set(reason, (out.get(reason) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The broker's 'connection closed' line for one client (by client id), or for a reason. */
export function closedLine(broker: BrokerProcess, match: { clientId?: string; reason?: DisconnectReason }, timeoutMs = 10_000): Promise<LogLine> {
  return broker.waitForLog(
    (l) => l.msg === 'connection closed' && (match.clientId === undefined || l.clientId === match.clientId) && (match.reason === undefined || l.reason === match.reason),
    timeoutMs,
  );
}

export function closedLines(broker: BrokerProcess, clientId: string): LogLine[] {
  return broker.logs.filter((l) => l.msg === 'connection closed' && l.clientId === clientId);
}

/** Which worker a client landed on (from the broker's 'connected' debug line). */
export async function workerOf(broker: BrokerProcess, clientId: string): Promise<number> {
  const line = await broker.waitForLog((l) => l.msg === 'connected' && l.clientId === clientId);
  return line.worker as number;
}

/** A subscriber (mqtt package) on a filter, with its messages collected. */
export async function subscriber(port: number, filter: string, opts: { protocolVersion?: 4 | 5; qos?: 0 | 1 | 2 } = {}) {
  const client = await connectClient(port, { protocolVersion: opts.protocolVersion ?? 5 });
  const got = collect(client);
  await client.subscribeAsync(filter, { qos: opts.qos ?? 1 });
  return { client, got };
}

/** The next emission of an event of an mqtt package client (its typings are not an EventEmitter's). */
export function nextEvent<T extends unknown[] = unknown[]>(client: MqttClient, event: string): Promise<T> {
  return new Promise((resolve) => (client as unknown as { once(e: string, fn: (...args: unknown[]) => void): void }).once(event, (...args) => resolve(args as T)));
}

/** Resolves when the client's connection is gone (mqtt package). */
export function clientClosed(client: MqttClient): Promise<void> {
  if (client.disconnected || !client.connected) return Promise.resolve();
  return nextEvent(client, 'close').then(() => undefined);
}

/** Ends every client without waiting on a broker that may already have closed them. */
export async function endAll(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
}

const WILL_CLIENT = path.join(REPO_ROOT, 'test/scripts/will-client.ts');

/** A separate client PROCESS (test/scripts/will-client.ts): connects with a will, prints "connected". */
export async function spawnWillClient(opts: { port: number; clientId: string; keepalive: number; willTopic: string; willPayload: string; protocolVersion?: 4 | 5 }): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [WILL_CLIENT, String(opts.port), opts.clientId, String(opts.keepalive), opts.willTopic, opts.willPayload, String(opts.protocolVersion ?? 4)],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('connected')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`will client exited with ${code}: ${err}`)));
  });
  return child;
}
