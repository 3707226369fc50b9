/** Wires the detection stage from config (called by the one wiring function, src/wiring.ts). */
import type { Clock } from '../clock.js';
import type { Component } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import type { DetectStage } from '../pipeline/types.js';
import { DetectionEngine } from './engine.js';
import { buildDetectors } from './registry.js';
import { loadRulesFile } from './rules/load.js';
import { RulesWatcher } from './rules/watch.js';
import { SignalStats } from './stats.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /**
   * The state database for the signal statistics (opened on first use), in replays too: `tune` on
   * a replayed recording reads what the replay saw.
   */
  readonly statsDb?: () => Db;
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
  const st = config.detect.statistics;
  const stats = st.enabled && deps.statsDb ? new SignalStats({ db: deps.statsDb, logger: deps.logger, metrics: deps.metrics, retentionMs: st.retention, maxRows: st.max_rows }) : null;
  const engine = new DetectionEngine({
    rules,
    detectors: buildDetectors(rules),
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    forwardSignalAlerts: config.detect.forward_signal_alerts,
    ...(stats ? { observers: [stats] } : {}),
  });
  const watcher = new RulesWatcher({
    path,
    initial: rules,
    logger: deps.logger,
    metrics: deps.metrics,
    pollMs: config.detect.rules_poll_interval,
    onReload: (r) => engine.setRules(r, buildDetectors(r)),
  });
  return { stage: engine, components: stats ? [watcher, stats] : [watcher], reload: () => void watcher.reload('SIGHUP') };
}
