// Helpers for the security tests: password files written by the real starling-passwd tool.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './broker.ts';

export const PASSWD = path.join(REPO_ROOT, 'packages/core/src/bin/starling-passwd.ts');

export function tempDir(prefix = 'starling-sec-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `starling-passwd add FILE USER --password PW --cost N`; throws with its stderr on failure. */
export function passwdAdd(file: string, user: string, password: string, cost = 1024): string {
  const r = spawnSync(process.execPath, [PASSWD, 'add', file, user, '--password', password, '--cost', String(cost)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`starling-passwd failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
