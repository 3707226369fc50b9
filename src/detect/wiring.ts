/** Wires the detection stage from config (called by the one wiring function, src/wiring.ts). */
import { networkInterfaces } from 'node:os';
import type { Clock } from '../clock.js';
import type { Component } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import { discoverCluster, formatClusterFacts, type DetectorEnv, type InterfaceAddress } from './cluster.js';
import { DetectionEngine } from './engine.js';
import { buildDetectors, DETECTOR_MODULES } from './registry.js';
import { loadRulesFile } from './rules/load.js';
import type { LoadedRules } from './rules/types.js';
import { RulesWatcher } from './rules/watch.js';

export interface DetectDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** The environment KUBERNETES_SERVICE_HOST/PORT are read from (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** This node's addresses (default os.networkInterfaces()). */
  readonly interfaces?: readonly InterfaceAddress[];
}

export interface Detection {
  readonly stage: DetectStage;
  readonly components: Component[];
  /** SIGHUP: reload the companion rules file (an invalid file keeps the old rules). */
  reload(): void;
}

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
  warn(rules);
  const env = detectorEnv(config, deps);
  log.info({ cluster: formatClusterFacts(env.cluster) }, 'cluster networks and API servers the detectors start from');
  const engine = new DetectionEngine({
    rules,
    detectors: buildDetectors(rules, DETECTOR_MODULES, env),
    logger: deps.logger,
    metrics: deps.metrics,
    clock: deps.clock,
    forwardSignalAlerts: config.detect.forward_signal_alerts,
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
  return { stage: engine, components: [watcher], reload: () => void watcher.reload('SIGHUP') };
}
