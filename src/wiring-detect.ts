/** Wires the detection engine from config (part of the one wiring function in wiring.ts). */
import type { Clock } from './clock.js';
import type { Component } from './component.js';
import type { Config } from './config/schema.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { DetectStage } from './pipeline/types.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
}

export function buildDetection(_config: Config, _deps: DetectDeps): { stage: DetectStage; components: Component[]; reload: () => void } | null {
  return null;
}
