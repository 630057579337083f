// Collects error messages without letting a storm of identical failures grow memory or output.

export class ErrorLog {
  private counts = new Map<string, number>();

  add(message: string): void {
    const n = this.counts.get(message);
    if (n !== undefined) this.counts.set(message, n + 1);
    else if (this.counts.size < 20) this.counts.set(message, 1);
  }

  /** "message (xN)" lines, most frequent first. */
  list(): string[] {
    return [...this.counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([m, n]) => (n > 1 ? `${m} (x${n})` : m));
  }
}
