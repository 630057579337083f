// Live progress: one rewritten line on a TTY, plain lines (at most one per second) otherwise,
// always on stderr so stdout stays clean for --json.

export class Progress {
  private tty: boolean;
  private last = 0;
  private shown = false;
  private quiet: boolean;

  constructor(quiet = false) {
    this.tty = Boolean(process.stderr.isTTY);
    this.quiet = quiet;
  }

  update(text: string): void {
    if (this.quiet) return;
    const now = Date.now();
    if (now - this.last < (this.tty ? 200 : 1000)) return;
    this.last = now;
    if (this.tty) {
      const width = process.stderr.columns ?? 120;
      process.stderr.write(`\r\x1b[K${text.slice(0, width - 1)}`);
      this.shown = true;
    } else process.stderr.write(`${text}\n`);
  }

  /** A line that stays (run start/finish); clears a pending TTY progress line first. */
  log(text: string): void {
    if (this.quiet) return;
    if (this.tty && this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
    this.last = 0;
    process.stderr.write(`${text}\n`);
  }
}

export function fmtRate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)}M/s`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)}k/s`;
  return `${perSec.toFixed(0)}/s`;
}
