/** Wires the detection stage from config (called by the one wiring function, src/wiring.ts). */
import type { Clock } from '../clock.js';
import type { Component } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import { DetectionEngine } from './engine.js';
import { buildDetectors } from './registry.js';
import { loadRulesFile } from './rules/load.js';
import { RulesWatcher } from './rules/watch.js';
import type { EngineObserver } from '../journal/observer.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Engine observers (the detection journal): see every finding and the alert emitted for it. */
  readonly observers?: readonly EngineObserver[];
}

export interface Detection {
  readonly stage: DetectStage;
  readonly components: Component[];
  /** SIGHUP: reload the companion rules file (an invalid file keeps the old rules). */
  reload(): void;
}

/** Loads the rules file (throws ConfigError with file:line:col problems), builds the engine, then the watcher that reloads it. */
export function buildDetection(config: Config, deps: DetectDeps): Detection {
  const path = config.detect.rules_file;
  const rules = loadRulesFile(path);
  const engine = new DetectionEngine({
    rules,
    detectors: buildDetectors(rules),
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    forwardSignalAlerts: config.detect.forward_signal_alerts,
    ...(deps.observers ? { observers: deps.observers } : {}),
  });
  const watcher = new RulesWatcher({
    path,
    initial: rules,
    logger: deps.logger,
    metrics: deps.metrics,
    pollMs: config.detect.rules_poll_interval,
    onReload: (r) => engine.setRules(r, buildDetectors(r)),
  });
  return { stage: engine, components: [watcher], reload: () => void watcher.reload('SIGHUP') };
}
