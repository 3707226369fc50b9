/**
 * Companion "nodes" for cluster e2e tests: built CLIs (`run`, each its own state directory and
 * node name) forwarding to a Falcosidekick stand-in, optionally sharing one real redis-server
 * (test/support/redis.ts) as their cluster store with short sync intervals.
 */
import { join } from 'node:path';
import { startHttpCli, type RunningCli } from './cli.js';

export interface ClusterNode {
  readonly name: string;
  readonly cli: RunningCli;
  /** http://HOST:PORT of its receiver (and ops endpoints). */
  base: string;
}

/** Environment of a node on the shared store at `redisAddress` (null: the default, SQLite only). */
export function storeEnv(name: string, redisAddress: string | null): Record<string, string> {
  if (redisAddress === null) return {};
  return {
    FALCO_COMPANION_STORE_BACKEND: 'redis',
    FALCO_COMPANION_STORE_REDIS_ADDRESSES: redisAddress,
    FALCO_COMPANION_STORE_REDIS_NODE_NAME: name,
    FALCO_COMPANION_STORE_REDIS_COMMAND_TIMEOUT: '1000',
    FALCO_COMPANION_STORE_REDIS_RECONNECT_MAX: '500',
    FALCO_COMPANION_STORE_SYNC_FLUSH_INTERVAL: '100',
    FALCO_COMPANION_STORE_SYNC_PULL_INTERVAL: '200',
  };
}

/**
 * Start one node per name (state in `dir/<name>`), forwarding to `sidekickUrl(name)`; resolves
 * when every receiver listens and, with Redis, every node connected to it.
 */
export async function startNodes(o: { dir: string; names: readonly string[]; sidekickUrl: (name: string) => string; redisAddress: string | null; env?: Record<string, string> }): Promise<ClusterNode[]> {
  const nodes: ClusterNode[] = o.names.map((name) => ({ name, cli: startHttpCli(o.sidekickUrl(name), join(o.dir, name), { ...storeEnv(name, o.redisAddress), ...o.env }), base: '' }));
  for (const n of nodes) n.base = `http://${await n.cli.httpAddress()}`;
  if (o.redisAddress !== null) for (const n of nodes) await n.cli.waitForLog((l) => l['msg'] === 'shared store connected');
  return nodes;
}

/** POST one alert (JSON) to a node's receiver; the HTTP status. */
export async function postAlert(n: ClusterNode, body: string): Promise<number> {
  const res = await fetch(`${n.base}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  await res.arrayBuffer();
  return res.status;
}

/** A metric's value from the node's /metrics (the line `name value`; NaN when absent). */
export async function metricValue(n: ClusterNode, name: string): Promise<number> {
  const text = await (await fetch(`${n.base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}
