// A description of the machine and software versions, stored with compare results so numbers
// can be read in context.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR } from './brokers.ts';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  openFilesLimit: string;
  versions: Record<string, string>;
}

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
  } catch (err) {
    // `mosquitto -h` prints its version and exits non-zero.
    const e = err as { stdout?: string; stderr?: string };
    return `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
}

function pkgVersion(name: string): string {
  try {
    const file = path.join(BENCH_DIR, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    return 'n/a';
  }
}

export function machineInfo(): MachineInfo {
  const limits = (() => {
    try {
      const m = /Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
      return m ? m[1]! : 'unknown';
    } catch {
      return 'unknown';
    }
  })();
  const mosq = /mosquitto version (\S+)/.exec(tryRun('mosquitto', ['-h']))?.[1] ?? 'not installed';
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    openFilesLimit: limits,
    versions: { mosquitto: mosq, aedes: pkgVersion('aedes'), 'mqtt-packet': pkgVersion('mqtt-packet') },
  };
}
