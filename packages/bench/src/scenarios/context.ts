import type { Progress } from '../progress.ts';

/** What a scenario run gets besides its options. */
export interface RunContext {
  progress: Progress;
  /** Prefix for progress lines, e.g. "mosquitto fan-in r2". */
  label: string;
  /** Broker process to sample (CPU, RSS); absent when the broker runs elsewhere. */
  brokerPid?: number;
}
