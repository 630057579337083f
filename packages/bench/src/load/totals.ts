// Per-thread running totals, mirrored into a SharedArrayBuffer so the main thread can read exact
// counts at the window boundaries without a message round trip.

/** Field indexes inside one worker's slot of the shared counters. */
export const FIELD = {
  sent: 0,
  acked: 1,
  delivered: 2,
  connected: 3,
  failed: 4,
  disconnects: 5,
  cpuUs: 6,
} as const;
export const FIELDS = 7;

export interface Totals {
  sent: number;
  acked: number;
  delivered: number;
  connected: number;
  failed: number;
  disconnects: number;
  /** CPU time (user+system, µs) used by the thread(s) so far. */
  cpuUs: number;
}

export function newTotals(): Totals {
  return { sent: 0, acked: 0, delivered: 0, connected: 0, failed: 0, disconnects: 0, cpuUs: 0 };
}

/**
 * Plain Float64 stores: an aligned 8-byte store is not torn on the platforms we run on, and the
 * reader only needs a recent value, not ordering, so Atomics (integers only) are not required.
 */
export function publishTotals(t: Totals, shared: Float64Array, slot: number): void {
  const b = slot * FIELDS;
  shared[b + FIELD.sent] = t.sent;
  shared[b + FIELD.acked] = t.acked;
  shared[b + FIELD.delivered] = t.delivered;
  shared[b + FIELD.connected] = t.connected;
  shared[b + FIELD.failed] = t.failed;
  shared[b + FIELD.disconnects] = t.disconnects;
  shared[b + FIELD.cpuUs] = t.cpuUs;
}

export function sumTotals(shared: Float64Array, slots: number): Totals {
  const t = newTotals();
  for (let s = 0; s < slots; s++) {
    const b = s * FIELDS;
    t.sent += shared[b + FIELD.sent]!;
    t.acked += shared[b + FIELD.acked]!;
    t.delivered += shared[b + FIELD.delivered]!;
    t.connected += shared[b + FIELD.connected]!;
    t.failed += shared[b + FIELD.failed]!;
    t.disconnects += shared[b + FIELD.disconnects]!;
    t.cpuUs += shared[b + FIELD.cpuUs]!;
  }
  return t;
}

/** Each worker thread's CPU time so far (µs), by slot. */
export function threadCpu(shared: Float64Array, slots: number): number[] {
  return Array.from({ length: slots }, (_, s) => shared[s * FIELDS + FIELD.cpuUs]!);
}
