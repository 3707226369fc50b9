/** Builds the shared store and its sync from config (called by the one wiring function, src/wiring.ts). */
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { CompanionError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import { RedisSharedStore } from './redis-store.js';
import { egressSpec, imagesSpec, resourcesSpec, seriesSpec } from './replicas.js';
import { PooledSeries } from './series.js';
import { ClusterSync, nodeName } from './sync.js';
import type { NamespaceSpec } from './types.js';

export type StoreConfig = Config['store'];

export interface ClusterStore {
  readonly sync: ClusterSync;
  /** Beacon series pooled by image (the detector's {@link import('./types.js').ClusterSeries}). */
  readonly series: PooledSeries;
  readonly specs: { readonly egress: NamespaceSpec; readonly images: NamespaceSpec; readonly series: NamespaceSpec; readonly resources: ReturnType<typeof resourcesSpec> };
}

/** The Redis password: `password`, else the content of `password_file`. */
function password(c: StoreConfig['redis']): string | null {
  if (c.password) return c.password;
  if (!c.password_file) return null;
  try {
    return readFileSync(c.password_file, 'utf8').trim() || null;
  } catch (err) {
    throw new CompanionError('E_STORE_CONFIG', `store.redis.password_file ${c.password_file}: ${errorMessage(err)}`, { cause: err });
  }
}

export function redisStoreFromConfig(c: StoreConfig): RedisSharedStore {
  const r = c.redis;
  return new RedisSharedStore({
    mode: r.mode,
    addresses: r.addresses,
    sentinelMaster: r.sentinel_master,
    db: r.db,
    username: r.username,
    password: password(r),
    sentinelUsername: r.sentinel_username,
    sentinelPassword: r.sentinel_password,
    tls: { enabled: r.tls.enabled, ca: r.tls.ca, cert: r.tls.cert, key: r.tls.key, serverName: r.tls.server_name, insecure: r.tls.insecure },
    keyPrefix: r.key_prefix,
    connectTimeoutMs: r.connect_timeout,
    commandTimeoutMs: r.command_timeout,
    reconnectInitialMs: r.reconnect_initial,
    reconnectMaxMs: r.reconnect_max,
  });
}

export function namespaceSpecs(c: StoreConfig): ClusterStore['specs'] {
  return { egress: egressSpec(c.limits), images: imagesSpec(c.limits), series: seriesSpec(c.limits), resources: resourcesSpec(c.limits) };
}

/** The shared store with its sync, or null with `backend: sqlite` (each node learns alone). */
export function buildClusterStore(config: Config, deps: { readonly logger: Logger; readonly metrics: Metrics; readonly db: () => Db }): ClusterStore | null {
  const c = config.store;
  if (c.backend !== 'redis') return null;
  const sync = new ClusterSync({
    store: redisStoreFromConfig(c),
    db: deps.db(),
    node: nodeName(c.redis.node_name),
    flushIntervalMs: c.sync.flush_interval,
    pullIntervalMs: c.sync.pull_interval,
    batchSize: c.sync.batch_size,
    maxPending: c.sync.max_pending,
    maxPull: c.sync.max_pull,
    logger: deps.logger,
    metrics: deps.metrics,
  });
  const specs = namespaceSpecs(c);
  const series = new PooledSeries({ node: sync.node, spec: specs.series, sink: sync, maxSeries: c.limits.series_max, maxPoints: c.limits.series_max_points, metrics: deps.metrics });
  sync.register(series);
  return { sync, series, specs };
}
