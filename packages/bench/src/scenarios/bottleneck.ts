// A rough reading of what capped a run, so nobody mistakes a saturated generator for a slow
// broker. Thresholds are deliberately simple; the raw numbers are in the result next to it.

import type { ProcSample } from '../types.ts';

export function limitedBy(s: {
  threads: number[];
  machineBusy: number;
  broker?: ProcSample;
  paced: boolean;
}): string {
  const busiest = Math.max(0, ...s.threads);
  if (s.paced) return 'fixed rate';
  if (busiest >= 0.9) return 'generator thread';
  if (s.machineBusy >= 0.9) return 'machine CPU';
  if (s.broker && s.broker.cores >= 0.9) return 'broker CPU';
  return 'round trips / window';
}
