// Resource use over a measured window: the generator's own CPU (to tell whether it was the
// bottleneck), the whole machine's CPU, and the broker process tree when its pid is known.

import { BrokerMeter, machineCores, machineCpu, selfCpuSeconds } from '../proc-stats.ts';
import type { ProcSample } from '../types.ts';

export interface WindowSample {
  windowSec: number;
  generator: { cpuSeconds: number; cores: number };
  machineBusy: number;
  machineCores: number;
  /** Busy cores not accounted for by this process or the broker tree. */
  otherCores: number;
  broker?: ProcSample;
}

export class WindowMeter {
  private broker: BrokerMeter | null;
  private t0 = 0;
  private self0 = 0;
  private m0 = { busy: 0, total: 0 };

  constructor(brokerPid?: number) {
    this.broker = brokerPid ? new BrokerMeter(brokerPid) : null;
  }

  start(): void {
    this.t0 = performance.now();
    this.self0 = selfCpuSeconds();
    this.m0 = machineCpu();
    this.broker?.start();
  }

  /** Call now and then during the window to catch the broker's peak RSS. */
  poll(): void {
    this.broker?.poll();
  }

  end(): WindowSample {
    const windowSec = (performance.now() - this.t0) / 1000;
    const cpu = selfCpuSeconds() - this.self0;
    const m1 = machineCpu();
    const dTotal = m1.total - this.m0.total;
    const broker = this.broker?.end();
    const busy = dTotal > 0 ? (m1.busy - this.m0.busy) / dTotal : 0;
    const cores = machineCores();
    const gen = windowSec > 0 ? cpu / windowSec : 0;
    return {
      windowSec,
      generator: { cpuSeconds: cpu, cores: gen },
      machineBusy: busy,
      machineCores: cores,
      otherCores: Math.max(0, busy * cores - gen - (broker?.cores ?? 0)),
      broker,
    };
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
