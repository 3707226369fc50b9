/** Wires the detection stage from config (called by the one wiring function, src/wiring.ts). */
import { networkInterfaces } from 'node:os';
import type { Clock } from '../clock.js';
import type { ClusterSeries } from '../cluster/types.js';
import type { Component } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import type { Db } from '../store/db.js';
import { DetectCheckpointer } from './checkpoint.js';
import { DetectionEngine } from './engine.js';
import type { DetectionObserver } from './types.js';
import { discoverCluster, formatClusterFacts, type DetectorEnv, type InterfaceAddress } from './cluster.js';
import { buildDetectors, DETECTOR_MODULES } from './registry.js';
import { loadRulesFile } from './rules/load.js';
import type { LoadedRules } from './rules/types.js';
import { RulesWatcher } from './rules/watch.js';
import { SignalStats } from './stats.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /**
   * The state database for checkpoints (opened on first use); null: the detection state lives in
   * memory only (replays: they never read or write it).
   */
  readonly db: (() => Db) | null;
  /** Watchers of every routed signal and finding (detection journal; the signal statistics are built here). */
  readonly observers?: readonly DetectionObserver[];
  /**
   * The state database for the signal statistics (opened on first use), in replays too: `tune` on
   * a replayed recording reads what the replay saw.
   */
  readonly statsDb?: () => Db;
  /** The environment KUBERNETES_SERVICE_HOST/PORT are read from (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** This node's addresses (default os.networkInterfaces()). */
  readonly interfaces?: readonly InterfaceAddress[];
  /** Beacon series pooled by image across nodes (`store.backend: redis`); absent: this node only. */
  readonly series?: ClusterSeries | null;
}

export interface Detection {
  readonly stage: DetectStage;
  /** Undefined when the stage may take an alert now, else a promise (a state part is being checkpointed). */
  readonly ready: () => Promise<void> | undefined;
  readonly components: Component[];
  /** SIGHUP: reload the companion rules file (an invalid file keeps the old rules). */
  reload(): void;
}

/** Loads the rules file (throws ConfigError with file:line:col problems), builds the engine, its checkpoints and the watcher that reloads it. */
function localInterfaces(): InterfaceAddress[] {
  return Object.values(networkInterfaces()).flatMap((xs) => (xs ?? []).map((x) => ({ address: x.address, cidr: x.cidr, internal: x.internal })));
}

/** The node and cluster facts the detectors start from (config, and the environment with `discover`). */
export function detectorEnv(config: Config, deps: Pick<DetectDeps, 'env' | 'interfaces'> = {}): DetectorEnv {
  const c = config.detect.cluster;
  return {
    cluster: discoverCluster({
      config: c,
      enrichPodCidrs: config.enrich.egress.cluster_pod_cidrs,
      enrichServiceCidrs: config.enrich.egress.cluster_service_cidrs,
      env: deps.env ?? process.env,
      interfaces: c.discover ? (deps.interfaces ?? localInterfaces()) : [],
    }),
  };
}

/** Loads the rules file (throws ConfigError with file:line:col problems), builds the engine, then the watcher that reloads it. */
export function buildDetection(config: Config, deps: DetectDeps): Detection {
  const path = config.detect.rules_file;
  const log = deps.logger.child({ component: 'detect/rules' });
  const warn = (r: LoadedRules): void => {
    for (const w of r.warnings) log.warn({ file: r.file }, w);
  };
  const rules = loadRulesFile(path);
  const st = config.detect.statistics;
  const stats = st.enabled && deps.statsDb ? new SignalStats({ db: deps.statsDb, logger: deps.logger, metrics: deps.metrics, retentionMs: st.retention, maxRows: st.max_rows }) : null;
  warn(rules);
  const env: DetectorEnv = { ...detectorEnv(config, deps), ...(deps.series ? { series: deps.series } : {}) };
  log.info({ cluster: formatClusterFacts(env.cluster) }, 'cluster networks and API servers the detectors start from');
  const engine = new DetectionEngine({
    rules,
    detectors: buildDetectors(rules, DETECTOR_MODULES, env),
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    forwardSignalAlerts: config.detect.forward_signal_alerts,
    observers: [...(deps.observers ?? []), ...(stats ? [stats] : [])],
    fairShare: { ratePerSecond: config.limits.container_signals_per_second, burst: config.limits.container_signal_burst },
    ...(deps.series ? { remote: deps.series } : {}),
  });
  const watcher = new RulesWatcher({
    path,
    initial: rules,
    logger: deps.logger,
    metrics: deps.metrics,
    pollMs: config.detect.rules_poll_interval,
    onReload: (r) => {
      warn(r);
      engine.setRules(r, buildDetectors(r, DETECTOR_MODULES, env));
    },
  });
  // First among the components: restores the state at start (before the pipeline takes an alert)
  // and saves it at stop (after the pipeline drained).
  const checkpoints =
    deps.db && config.detect.persist_state
      ? [new DetectCheckpointer({ engine, db: deps.db, intervalMs: config.detect.checkpoint_interval, logger: deps.logger, metrics: deps.metrics, clock: deps.clock })]
      : [];
  return { stage: engine, ready: () => engine.ready(), components: [...checkpoints, watcher, ...(stats ? [stats] : [])], reload: () => void watcher.reload('SIGHUP') };
}
