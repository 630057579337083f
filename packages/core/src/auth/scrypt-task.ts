// Piscina task: one password check, on a hashing thread (never a session worker's or the main event loop).
import { verifySync } from './password-file.ts';

export interface VerifyTask {
  password: Uint8Array;
  N: number;
  r: number;
  p: number;
  salt: Uint8Array;
  hash: Uint8Array;
}

export default function verify(task: VerifyTask): boolean {
  return verifySync(task.password, task);
}
