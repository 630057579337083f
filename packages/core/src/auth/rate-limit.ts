// Failed logins per source address, in fixed one-minute windows; bounded memory.

const WINDOW_MS = 60_000;
const MAX_TRACKED = 100_000;

export class FailureLimiter {
  private readonly limit: number;
  private readonly entries = new Map<string, { count: number; resetAt: number }>();

  constructor(perMinute: number) {
    this.limit = perMinute;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether this address has used up its failures for the current window. */
  blocked(address: string, now = Date.now()): boolean {
    if (this.limit === 0) return false;
    const e = this.entries.get(address);
    if (!e) return false;
    if (now >= e.resetAt) {
      this.entries.delete(address);
      return false;
    }
    return e.count >= this.limit;
  }

  failed(address: string, now = Date.now()): void {
    if (this.limit === 0) return;
    let e = this.entries.get(address);
    if (!e || now >= e.resetAt) {
      if (!e && this.entries.size >= MAX_TRACKED) this.prune(now);
      e = { count: 0, resetAt: now + WINDOW_MS };
      this.entries.set(address, e);
    }
    e.count++;
  }

  succeeded(address: string): void {
    this.entries.delete(address);
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (now >= e.resetAt) this.entries.delete(k);
    // Still full (a wide spread of addresses): forget the oldest half rather than grow.
    if (this.entries.size >= MAX_TRACKED) {
      let n = this.entries.size / 2;
      for (const k of this.entries.keys()) {
        if (n-- <= 0) break;
        this.entries.delete(k);
      }
    }
  }
}

/** Token bucket: `rate` per second, burst of one second's worth (units: packets or bytes). */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly rate: number;

  constructor(rate: number, now = Date.now()) {
    this.rate = rate;
    this.tokens = Math.max(rate, 1);
    this.last = now;
  }

  take(n = 1, now = Date.now()): boolean {
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(Math.max(this.rate, 1), this.tokens + (elapsed * this.rate) / 1000);
      this.last = now;
    }
    // Debt allowed: one unit larger than the burst (a big message) passes once, then the client waits.
    if (this.tokens <= 0) return false;
    this.tokens -= n;
    return true;
  }
}

/** Token buckets keyed by address (connection rate), bounded in number. */
export class AddressRate {
  private readonly rate: number;
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(rate: number) {
    this.rate = rate;
  }

  allow(address: string, now = Date.now()): boolean {
    if (this.rate <= 0) return true;
    let b = this.buckets.get(address);
    if (!b) {
      if (this.buckets.size >= MAX_TRACKED) this.buckets.clear();
      b = new TokenBucket(this.rate, now);
      this.buckets.set(address, b);
    }
    return b.take(1, now);
  }
}
