// CPU and memory of a process tree from /proc (Linux). A broker may fork helpers or run worker
// processes, so a pid's descendants are counted with it.

import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

/** USER_HZ: /proc/<pid>/stat times are in these ticks; 100 on every Linux we target. */
const TICKS_PER_SEC = 100;

interface StatLine {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): StatLine | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

function readRssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The pid and all its descendants that are alive now. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (!st) continue;
    const list = children.get(st.ppid);
    if (list) list.push(pid);
    else children.set(st.ppid, [pid]);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    for (const c of children.get(pid) ?? []) stack.push(c);
  }
  return out;
}

export interface TreeSample {
  cpuSeconds: number;
  rssKb: number;
}

export function sampleTree(root: number): TreeSample {
  let ticks = 0;
  let rssKb = 0;
  for (const pid of processTree(root)) {
    const st = readStat(pid);
    if (!st) continue;
    ticks += st.ticks;
    rssKb += readRssKb(pid);
  }
  return { cpuSeconds: ticks / TICKS_PER_SEC, rssKb };
}

export function rssKb(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) total += readRssKb(p);
  return total;
}

/** Aggregate machine CPU counters from /proc/stat: busy and total jiffies. */
export function machineCpu(): { busy: number; total: number } {
  const first = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const v = first.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export function machineCores(): number {
  return os.availableParallelism();
}

/** The generator's own CPU (all threads of this process), in seconds. */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/**
 * Tracks a broker tree over a measured window: CPU between start() and end(), RSS at both ends
 * and the peak seen by poll().
 */
export class BrokerMeter {
  private pid: number;
  private cpu0 = 0;
  private t0 = 0;
  private rss0 = 0;
  private peak = 0;

  constructor(pid: number) {
    this.pid = pid;
  }

  start(): void {
    const s = sampleTree(this.pid);
    this.cpu0 = s.cpuSeconds;
    this.rss0 = s.rssKb;
    this.peak = s.rssKb;
    this.t0 = performance.now();
  }

  poll(): void {
    this.peak = Math.max(this.peak, rssKb(this.pid));
  }

  end(): { cpuSeconds: number; cores: number; rssStartKb: number; rssEndKb: number; rssPeakKb: number } {
    const s = sampleTree(this.pid);
    const sec = (performance.now() - this.t0) / 1000;
    const cpuSeconds = Math.max(0, s.cpuSeconds - this.cpu0);
    this.peak = Math.max(this.peak, s.rssKb);
    return { cpuSeconds, cores: sec > 0 ? cpuSeconds / sec : 0, rssStartKb: this.rss0, rssEndKb: s.rssKb, rssPeakKb: this.peak };
  }
}

/** Share of all cores busy over `ms` (0..1): other work on the machine skews any benchmark. */
export async function machineBusyOver(ms: number): Promise<number> {
  const a = machineCpu();
  await new Promise((r) => setTimeout(r, ms));
  const b = machineCpu();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/**
 * Waits (up to maxWaitMs) until the machine is quieter than `threshold`; returns the last
 * reading so results can record how loaded the machine was when the run started.
 */
export async function waitForQuiet(threshold: number, maxWaitMs: number, onWait?: (busy: number) => void): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const busy = await machineBusyOver(1000);
    if (busy <= threshold || Date.now() >= deadline) return busy;
    onWait?.(busy);
  }
}
