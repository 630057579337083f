import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/** JSON lines to stdout. Levels: info = lifecycle, warn = recoverable, error = an operator must act. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  // Synchronous destination: worker threads share the process's stdout, and a crash must not lose lines.
  return pino({ level, base: { ...bindings }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ sync: true }));
}
