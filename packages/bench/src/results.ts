// Where results go (.bench-results/ at the workspace root, gitignored) and how they are named.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './brokers.ts';

export function resultsDir(out?: string): string {
  const dir = path.resolve(REPO_ROOT, out ?? '.bench-results');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** 2026-01-31T12-00-00 style stamp: sortable and safe in file names. */
export function stamp(d = new Date()): string {
  return d.toISOString().slice(0, 19).replaceAll(':', '-');
}

export function writeJson(file: string, value: unknown): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
  return file;
}
