// The password file: one `username:scrypt$N$r$p$salt$hash` line per user (salt and hash base64).
// Blank lines and lines starting with # are ignored. Written by `starling-passwd`, read by the broker.
import { randomBytes, scrypt as scryptCb, scryptSync, timingSafeEqual } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

/** Interactive-login strength (RFC 7914 §2 suggests N=2^14, r=8 for that); ~16 MiB and tens of ms per check. */
export const DEFAULT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

export class PasswordFileError extends Error {
  override name = 'PasswordFileError';
}

/** Memory scrypt needs for these parameters, with headroom (Node refuses above maxmem). */
export function scryptMaxmem(N: number, r: number): number {
  return 256 * N * r + 1024 * 1024;
}

export function formatHash(h: ScryptHash): string {
  return `scrypt$${h.N}$${h.r}$${h.p}$${h.salt.toString('base64')}$${h.hash.toString('base64')}`;
}

export function parseHash(text: string): ScryptHash {
  const parts = text.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') throw new PasswordFileError('expected scrypt$N$r$p$salt$hash');
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (!Number.isInteger(N) || N < 2 || (N & (N - 1)) !== 0 || N > 2 ** 22) throw new PasswordFileError(`N must be a power of two up to 2^22, got ${parts[1]}`);
  if (!Number.isInteger(r) || r < 1 || r > 32) throw new PasswordFileError(`r must be 1..32, got ${parts[2]}`);
  if (!Number.isInteger(p) || p < 1 || p > 16) throw new PasswordFileError(`p must be 1..16, got ${parts[3]}`);
  const salt = Buffer.from(parts[4]!, 'base64');
  const hash = Buffer.from(parts[5]!, 'base64');
  if (salt.length < 8 || hash.length < 16) throw new PasswordFileError('salt or hash too short');
  return { N, r, p, salt, hash };
}

/** Username → hash. Errors name the line. */
export function parsePasswordFile(text: string, source = 'password file'): Map<string, ScryptHash> {
  const users = new Map<string, ScryptHash>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new PasswordFileError(`${source}:${i + 1}: expected username:scrypt$...`);
    try {
      users.set(line.slice(0, colon), parseHash(line.slice(colon + 1)));
    } catch (err) {
      throw new PasswordFileError(`${source}:${i + 1}: ${(err as Error).message}`);
    }
  }
  return users;
}

export function hashPasswordSync(password: string | Buffer, params: { N: number; r: number; p: number } = DEFAULT_PARAMS): ScryptHash {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, KEY_LENGTH, { ...params, maxmem: scryptMaxmem(params.N, params.r) });
  return { ...params, salt, hash };
}

export function hashPassword(password: string | Buffer, params: { N: number; r: number; p: number } = DEFAULT_PARAMS): Promise<ScryptHash> {
  const salt = randomBytes(16);
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, KEY_LENGTH, { ...params, maxmem: scryptMaxmem(params.N, params.r) }, (err, hash) =>
      err ? reject(err) : resolve({ ...params, salt, hash }),
    ),
  );
}

/** Constant-time comparison of scrypt(password) with the stored hash (synchronous: run it off the event loop). */
export function verifySync(password: Uint8Array, h: { N: number; r: number; p: number; salt: Uint8Array; hash: Uint8Array }): boolean {
  const got = scryptSync(password, h.salt, h.hash.length, { N: h.N, r: h.r, p: h.p, maxmem: scryptMaxmem(h.N, h.r) });
  return got.length === h.hash.length && timingSafeEqual(got, h.hash);
}

const USERNAME = /^[^:\s#][^:\r\n]*$/;

export function validUsername(name: string): boolean {
  return USERNAME.test(name) && Buffer.byteLength(name) <= 65535;
}

/** Adds or replaces a user's line, keeping the others (and comments) as they were; atomic rename. */
export async function upsertUser(file: string, username: string, hash: ScryptHash): Promise<'added' | 'updated'> {
  if (!validUsername(username)) throw new PasswordFileError(`invalid username ${JSON.stringify(username)} (no ':' or line breaks)`);
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const line = `${username}:${formatHash(hash)}`;
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  let outcome: 'added' | 'updated' = 'added';
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.startsWith(`${username}:`)) {
      lines[i] = line;
      outcome = 'updated';
    }
  }
  if (outcome === 'added') lines.push(line);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${lines.join('\n')}\n`, { mode: 0o600 });
  await rename(tmp, file);
  return outcome;
}

export async function removeUser(file: string, username: string): Promise<boolean> {
  const text = await readFile(file, 'utf8');
  const lines = text.replace(/\n$/, '').split('\n');
  const kept = lines.filter((l) => !l.startsWith(`${username}:`));
  if (kept.length === lines.length) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, kept.length > 0 ? `${kept.join('\n')}\n` : '', { mode: 0o600 });
  await rename(tmp, file);
  return true;
}
