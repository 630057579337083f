import type { WorkerContext } from './context.ts';

/** How often the sweep runs: bounds how late a deadline is noticed. */
const SWEEP_MS = 250;

/**
 * One timer per worker checks every connection's deadlines (connect timeout, keepalive): cheap with
 * tens of thousands of idle connections, unlike a timer per connection re-armed on every packet.
 */
export function startSweep(ctx: WorkerContext, extra: (now: number) => void): NodeJS.Timeout {
  const timer = setInterval(() => {
    const now = Date.now();
    for (const conn of ctx.connections.values()) {
      if (conn.state === 'awaiting-connect' || conn.state === 'connecting') {
        // Counted from accept, independent of keepalive; trickling bytes do not extend it.
        if (now >= conn.connectDeadline) conn.close('connect_timeout');
      } else if (conn.state === 'connected' && conn.keepaliveLimitMs > 0 && !conn.readingHeld && now - conn.lastSeen > conn.keepaliveLimitMs) {
        // [MQTT-3.1.2-24] nothing within 1.5 × keepalive. Not while the broker itself is not reading the
        // socket (backpressure): the client's packets are waiting in TCP buffers, not missing.
        conn.close('keepalive_timeout');
      }
    }
    ctx.flow.sweep(now);
    extra(now);
  }, SWEEP_MS);
  timer.unref();
  return timer;
}
