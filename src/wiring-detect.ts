/** Wires the detection engine from config (part of the one wiring function in wiring.ts). */
import type { Clock } from './clock.js';
import type { Component, ComponentHealth } from './component.js';
import type { Config } from './config/schema.js';
import { DetectionEngine } from './detect/engine.js';
import { DETECTOR_MODULES, buildDetectors } from './detect/registry.js';
import { RulesWatcher } from './detect/rules-file.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { DetectStage } from './pipeline/types.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
}

export interface Detection {
  readonly stage: DetectStage;
  readonly components: Component[];
  /** SIGHUP: reload the companion rules file (an invalid file keeps the old rules). */
  reload(): void;
}

/** Loads the rules file (throws ConfigError with file:line:col problems) and builds the engine. */
export function buildDetection(config: Config, deps: DetectDeps): Detection {
  let engine: DetectionEngine | null = null;
  const watcher = new RulesWatcher({
    path: config.detect.rules_file,
    detectors: DETECTOR_MODULES,
    logger: deps.logger.child({ component: 'detect/rules' }),
    metrics: deps.metrics,
    pollMs: config.detect.rules_poll_interval,
    onReload: (r) => engine?.setRules(r, buildDetectors(r)),
  });
  engine = new DetectionEngine({
    rules: watcher.rules,
    detectors: buildDetectors(watcher.rules),
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    forwardSignalAlerts: config.detect.forward_signal_alerts,
  });
  const watcherComponent: Component = {
    id: 'detect/rules',
    start: async () => watcher.start(),
    stop: async () => watcher.stop(),
    health: (): ComponentHealth => {
      const err = watcher.error;
      return err ? { ready: true, detail: `last reload invalid, old rules kept: ${err.slice(0, 200)}` } : { ready: true };
    },
  };
  return { stage: engine, components: [watcherComponent], reload: () => void watcher.reload('SIGHUP') };
}
