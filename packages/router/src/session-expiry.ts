import type { StoredSession } from './types.ts';

/** Session Expiry Interval meaning "never" (MQTT 5.0 §3.1.2.11.2). */
export const NEVER_EXPIRES = 0xffffffff;

/** Epoch ms at which a stored session ends, or undefined while connected or when it never expires. */
export function sessionExpiresAt(s: StoredSession): number | undefined {
  if (s.disconnectedAt === undefined || s.expiryInterval >= NEVER_EXPIRES) return undefined;
  return s.disconnectedAt + s.expiryInterval * 1000;
}
