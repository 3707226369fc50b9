/** Wires the enrichers from config (called by the one wiring function, src/wiring.ts). */
import type { Clock } from '../clock.js';
import type { Component } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Enricher } from '../pipeline/types.js';
import type { Db } from '../store/db.js';
import { egressReplica, imageReplica } from '../cluster/replicas.js';
import type { ClusterStore } from '../cluster/wiring.js';
import { ContainerEnricher } from './container.js';
import { EgressEnricher } from './egress.js';

export interface EnrichDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly db: () => Db;
  /** Shared store (store.backend: redis); null: each node learns alone. */
  readonly cluster?: ClusterStore | null;
}

export function buildEnrichment(config: Config, deps: EnrichDeps): { enrichers: Enricher[]; components: Component[] } {
  const enrichers: Enricher[] = [];
  const components: Component[] = [];
  const { logger, metrics, clock } = deps;
  const cluster = deps.cluster ?? null;
  const sink = cluster?.sync ?? null;
  if (config.enrich.container.enabled && config.enrich.container.runtime !== 'none') {
    const container = new ContainerEnricher({ config: config.enrich.container, db: deps.db(), logger, metrics, clock, cluster: sink });
    enrichers.push(container);
    components.push(container);
    cluster?.sync.register(imageReplica(container.store, cluster.specs.images));
  }
  if (config.enrich.egress.enabled) {
    const egress = new EgressEnricher({ config: config.enrich.egress, db: config.enrich.egress.baseline.enabled ? deps.db() : null, logger, metrics, clock, cluster: sink });
    enrichers.push(egress);
    components.push(egress);
    if (cluster && egress.baseline) cluster.sync.register(egressReplica(egress.baseline, cluster.specs.egress));
  }
  return { enrichers, components };
}
