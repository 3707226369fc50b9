/**
 * The `store` config section and the wiring of the cluster store: off by default (nothing
 * changes for a single node), every bad value reported with its path, secrets from a file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildClusterStore, redisStoreFromConfig } from '../../src/cluster/wiring.js';
import { nodeName } from '../../src/cluster/sync.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb } from '../../src/store/db.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-store-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cfg = (text: string, env: Record<string, string> = {}): Config => loadConfig<Config>(configSchema, { file: 'test.yaml', text, env });
const deps = () => ({ logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), db: () => openStateDb(':memory:') });

describe('store config and wiring', () => {
  it('defaults to sqlite: no cluster store is built, nothing is opened', () => {
    let opened = false;
    expect(buildClusterStore(cfg(''), { ...deps(), db: () => ((opened = true), openStateDb(':memory:')) })).toBeNull();
    expect(opened).toBe(false);
  });

  it('reports every bad value with its path', () => {
    expect(() => cfg('store:\n  backend: etcd\n  redis:\n    addresses: [redis]\n    key_prefix: "a b"\n    db: 99\n')).toThrow(
      /store\.backend[\s\S]*store\.redis\.addresses\[0\]: must be HOST:PORT[\s\S]*store\.redis\.db[\s\S]*store\.redis\.key_prefix/,
    );
  });

  it('takes addresses and the backend from the environment (compose, DaemonSet)', () => {
    const c = cfg('', { FALCO_COMPANION_STORE_BACKEND: 'redis', FALCO_COMPANION_STORE_REDIS_ADDRESSES: 'redis-a:6379,[::1]:6380,/run/redis.sock' });
    expect(c.store.backend).toBe('redis');
    expect(c.store.redis.addresses).toEqual(['redis-a:6379', '[::1]:6380', '/run/redis.sock']);
    const built = buildClusterStore(c, deps());
    expect(built?.sync.id).toBe('store/redis');
    expect(built?.specs.egress.maxFields).toBe(c.store.limits.egress_max_per_image + 1);
  });

  it('reads the password from a file; a missing file or a unix socket outside standalone is a clear error', () => {
    writeFileSync(join(dir, 'pw'), '  s3cret\n');
    expect(() => redisStoreFromConfig(cfg(`store:\n  backend: redis\n  redis:\n    password_file: ${join(dir, 'pw')}\n`).store)).not.toThrow();
    expect(() => redisStoreFromConfig(cfg(`store:\n  backend: redis\n  redis:\n    password_file: ${join(dir, 'nope')}\n`).store)).toThrow(/password_file .*nope/);
    expect(() => redisStoreFromConfig(cfg('store:\n  redis:\n    mode: sentinel\n    addresses: [/run/redis.sock]\n').store)).toThrow(/unix socket addresses work in standalone mode only/);
  });

  it('node name: configured, else NODE_NAME, else HOSTNAME', () => {
    expect(nodeName('n1', { NODE_NAME: 'k8s-node', HOSTNAME: 'pod' })).toBe('n1');
    expect(nodeName(null, { NODE_NAME: 'k8s-node', HOSTNAME: 'pod' })).toBe('k8s-node');
    expect(nodeName(null, { HOSTNAME: 'pod' })).toBe('pod');
    expect(nodeName(null, {}).length).toBeGreaterThan(0);
  });
});
