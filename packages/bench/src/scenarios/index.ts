import type { RunOptions, ScenarioResult } from '../types.ts';
import { runConnections } from './connections.ts';
import type { RunContext } from './context.ts';
import { runMessaging } from './messaging.ts';

export type { RunContext } from './context.ts';

export function runScenario(o: RunOptions, ctx: RunContext): Promise<ScenarioResult> {
  return o.scenario === 'connect-storm' || o.scenario === 'idle' ? runConnections(o, ctx) : runMessaging(o, ctx);
}
