/**
 * The Redis shared store (src/cluster/redis-store.ts) against a real redis-server (Debian package)
 * started here: the server-side merge equals the merge functions of src/cluster/tuple.ts in any
 * order of writes, announcements and pulls, bounds and TTLs, the epoch, and every way to connect:
 * TCP, unix socket, ACL user + password, mutual TLS, Sentinel, Cluster.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisSharedStore, redisStoreOptions, type RedisStoreOptions } from '../../src/cluster/redis-store.js';
import { decodeTuple, encodeTuple, mergeTuple, type Tuple } from '../../src/cluster/tuple.js';
import type { NamespaceSpec } from '../../src/cluster/types.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';
import { poll } from '../support/wait.js';
import { freePort, redisSkipReason, startRedis, type RedisServer } from '../support/redis.js';

const skip = redisSkipReason();
if (skip) process.stderr.write(`test/cluster/redis-store.test.ts: ${skip}\n`);

const SPEC: NamespaceSpec = { name: 'eg', recency: 1, maxFields: 20, maxGroups: 10, ttlMs: 3_600_000, recencyUnitMs: 1, announceEvery: 1000 };
const OPS = '<>+';

const options = (over: Partial<RedisStoreOptions> & Pick<RedisStoreOptions, 'addresses'>): RedisStoreOptions =>
  redisStoreOptions({ keyPrefix: 'test', connectTimeoutMs: 2000, reconnectInitialMs: 50, reconnectMaxMs: 500, ...over });

async function connected(o: RedisStoreOptions): Promise<RedisSharedStore> {
  const s = new RedisSharedStore(o);
  let up = false;
  let err: string | null = null;
  s.connect((c, e) => {
    up = c;
    err = e;
  });
  await poll(() => (up ? true : null), { timeoutMs: 10_000, what: `redis connection (${String(err)})` });
  return s;
}

const groups = (g: string, fields: Record<string, Tuple>): Map<string, Map<string, string>> => new Map([[g, new Map(Object.entries(fields).map(([f, t]) => [f, encodeTuple(OPS, t)]))]]);

describe.skipIf(skip !== null)('RedisSharedStore on a real redis-server', () => {
  let redis: RedisServer;
  let store: RedisSharedStore;
  let n = 0;
  const spec = (): NamespaceSpec => ({ ...SPEC, name: 'eg' });
  beforeAll(async () => {
    redis = await startRedis();
    store = await connected(options({ addresses: [redis.address] }));
  });
  afterAll(async () => {
    await store?.close();
    await redis?.close();
  });
  const fresh = async (): Promise<RedisSharedStore> => connected(options({ addresses: [redis.address], keyPrefix: `t${++n}` }));

  it('the server merge equals the merge functions, in any order of writes from any node', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 1e12 }), fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 100 })), { minLength: 1, maxLength: 6 }),
        async (writes) => {
          const s = await connected(options({ addresses: [redis.address], keyPrefix: `prop${++round}` }));
          try {
            const tuples: Tuple[] = writes.map(([f, d, c]) => [f, f + d, c]);
            for (const t of tuples) await s.push(spec(), groups('img', { 'x|1': t }), Date.now());
            const res = await s.pull(spec(), 0, 0, 100);
            const got = decodeTuple(OPS, res.entries.find((e) => e.field === 'x|1')?.value ?? '');
            expect(got).toEqual(tuples.reduce((a, b) => mergeTuple(OPS, a, b)));
          } finally {
            await s.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('strings merge in byte order like the client, whatever the server locale', async () => {
    const s = await fresh();
    const ops = '^^';
    const sp: NamespaceSpec = { ...spec(), name: 'img', recency: 0 };
    const enc = (t: Tuple): Map<string, Map<string, string>> => new Map([['r', new Map([['i|a', encodeTuple(ops, t)]])]]);
    await s.push(sp, enc(['sha256:b', '\uFF5E']), Date.now());
    await s.push(sp, enc(['sha256:a', '\u{1F600}']), Date.now());
    await s.push(sp, enc([null, 'Z']), Date.now());
    const got = (await s.pull(sp, 0, 0, 10)).entries[0]?.value ?? '';
    expect(decodeTuple(ops, got)).toEqual(mergeTuple(ops, mergeTuple(ops, ['sha256:b', '\uFF5E'], ['sha256:a', '\u{1F600}']), [null, 'Z']));
    await s.close();
  });

  it('announces new fields and changes, not count-only or small last-seen moves; pulls from a cursor', async () => {
    const s = await fresh();
    expect(await s.push(spec(), groups('nginx', { '~': [100, 100, null], '1.1.1.1|443': [100, 100, 1] }), Date.now())).toBe(2);
    const first = await s.pull(spec(), 0, 0, 100);
    expect(first.entries.map((e) => e.field).sort()).toEqual(['1.1.1.1|443', '~']);
    expect(first.more).toBe(false);
    // count only, and last seen moved by less than announceEvery: stored, not announced
    expect(await s.push(spec(), groups('nginx', { '1.1.1.1|443': [100, 900, 5] }), Date.now())).toBe(0);
    expect((await s.pull(spec(), first.next, first.next, 100)).entries).toEqual([]);
    // last seen moved by announceEvery since the last announcement: announced with the merged tuple
    expect(await s.push(spec(), groups('nginx', { '1.1.1.1|443': [150, 1200, 1] }), Date.now())).toBe(1);
    const later = await s.pull(spec(), first.next, first.next, 100);
    expect(later.entries.map((e) => [e.group, e.field, decodeTuple(OPS, e.value)])).toEqual([['nginx', '1.1.1.1|443', [100, 1200, 7]]]);
    // an earlier first seen is always announced
    expect(await s.push(spec(), groups('nginx', { '1.1.1.1|443': [50, 60, 0] }), Date.now())).toBe(1);
    await s.close();
  });

  it('pulls page by page with whole groups, and the cursor never skips a group', async () => {
    const s = await fresh();
    for (let g = 0; g < 12; g++) await s.push({ ...spec(), maxGroups: 100 }, groups(`img${g}`, Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`d${i}|1`, [g, g, 1] as Tuple]))), Date.now());
    // a group re-announced later still holds its older fields: they come with it (filtered by `since`)
    await s.push({ ...spec(), maxGroups: 100 }, groups('img0', { 'late|1': [99, 99, 1] }), Date.now());
    const seen = new Set<string>();
    let from = 0;
    for (let page = 0; page < 20; page++) {
      const r = await s.pull(spec(), from, 0, 12);
      for (const e of r.entries) seen.add(`${e.group}/${e.field}`);
      expect(r.entries.length).toBeLessThanOrEqual(12);
      from = r.next;
      if (!r.more) break;
    }
    expect(seen.size).toBe(61);
    // a pass from a later cursor gets only what was announced after it
    const after = await s.pull(spec(), from - 1, from - 1, 100);
    expect(after.entries.map((e) => e.field)).toEqual(['late|1']);
    await s.close();
  });

  it('bounds: fields per group (least recent first, the image record kept), groups, TTL', async () => {
    const s = await fresh();
    const sp: NamespaceSpec = { ...spec(), maxFields: 10, maxGroups: 3, ttlMs: 60_000 };
    const many: Record<string, Tuple> = { '~': [1, 1, null] };
    const now = Date.now();
    for (let i = 0; i < 30; i++) many[`d${i}|80`] = [now - 1000, now - 1000 + i, 1];
    await s.push(sp, groups('big', many), now);
    const raw = s.raw;
    if (!raw) throw new Error('no client');
    const fields = await raw.hkeys('{t' + n + '}:eg:h:big');
    expect(fields).toContain('~');
    expect(fields.length).toBe(10); // maxFields counts the image record too (egressSpec adds one for it)
    expect(fields).toContain('d29|80');
    expect(fields).not.toContain('d0|80');
    const ttl = await raw.pttl('{t' + n + '}:eg:h:big');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    for (let g = 0; g < 8; g++) await s.push(sp, groups(`g${g}`, { 'a|1': [g, g, 1] }), Date.now());
    expect(await raw.zcard('{t' + n + '}:eg:idx')).toBeLessThanOrEqual(3 + 1);
    expect(await raw.exists('{t' + n + '}:eg:h:big')).toBe(0);
    await s.close();
  });

  it('entries older than the TTL are trimmed with the group', async () => {
    const s = await fresh();
    const sp: NamespaceSpec = { ...spec(), maxFields: 4, ttlMs: 60_000 };
    const now = 10_000_000;
    const f: Record<string, Tuple> = {};
    for (let i = 0; i < 6; i++) f[`new${i}|1`] = [now, now, 1];
    f['stale|1'] = [1, now - 120_000, 1];
    await s.push(sp, groups('g', f), now);
    const keys = await s.raw?.hkeys(`{t${n}}:eg:h:g`);
    expect(keys).not.toContain('stale|1');
    expect(keys?.length).toBe(4);
    await s.close();
  });

  it('hello: one epoch per key prefix, created by the first node; live nodes counted', async () => {
    const a = await fresh();
    const b = await connected(options({ addresses: [redis.address], keyPrefix: `t${n}` }));
    const h1 = await a.hello('node-a', Date.now(), 60_000);
    const h2 = await b.hello('node-b', Date.now(), 60_000);
    expect(h1.epoch).toMatch(/^[0-9a-f-]{36}$/);
    expect(h2.epoch).toBe(h1.epoch);
    expect(h2.nodes).toBe(2);
    await a.push(spec(), groups('x', { 'a|1': [1, 1, 1] }), Date.now());
    expect((await b.hello('node-b', Date.now(), 60_000)).seq).toBe(1);
    // a node silent for longer than the live window is not counted
    expect((await b.hello('node-b', Date.now() + 120_000, 60_000)).nodes).toBe(1);
    await a.close();
    await b.close();
  });

  it('reloads its scripts after SCRIPT FLUSH (a restarted or failed-over server)', async () => {
    const s = await fresh();
    await s.push(spec(), groups('x', { 'a|1': [1, 1, 1] }), Date.now());
    redis.cli('SCRIPT', 'FLUSH');
    await s.push(spec(), groups('x', { 'a|1': [1, 2, 1] }), Date.now());
    expect(decodeTuple(OPS, (await s.pull(spec(), 0, 0, 10)).entries[0]?.value ?? '')).toEqual([1, 2, 2]);
    await s.close();
  });

  it('connects over a unix socket', async () => {
    const s = await connected(options({ addresses: [redis.socket], keyPrefix: 'unix' }));
    expect((await s.hello('n', Date.now(), 60_000)).nodes).toBe(1);
    await s.close();
  });

  it('a command on a server that answers nothing fails after the command timeout (no offline queue, no retry)', async () => {
    const s = await connected(options({ addresses: [redis.address], keyPrefix: 'slow', commandTimeoutMs: 200 }));
    redis.pause();
    try {
      const t0 = Date.now();
      await expect(s.hello('n', Date.now(), 1000)).rejects.toThrow(/timed out/i);
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      redis.resume();
    }
    await s.close();
  });
});

describe.skipIf(skip !== null)('RedisSharedStore: ACL user and password, mutual TLS', () => {
  let certs: TestCerts;
  let redis: RedisServer;
  beforeAll(async () => {
    certs = makeTestCerts();
    redis = await startRedis({
      tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.caCert, clientAuth: true },
      args: ['--user', 'default', 'off', '--user', 'companion', 'on', '>s3cret', '~{fc}:*', '+@all'],
    });
  });
  afterAll(async () => {
    await redis?.close();
    certs?.cleanup();
  });
  const tls = (): RedisStoreOptions['tls'] => ({ enabled: true, ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey, serverName: 'localhost', insecure: false });

  it('works with the ACL user, its password and a client certificate', async () => {
    const s = await connected(options({ addresses: [redis.address], keyPrefix: 'fc', username: 'companion', password: 's3cret', tls: tls() }));
    await s.push({ ...SPEC }, groups('nginx', { 'a|1': [1, 2, 3] }), Date.now());
    expect((await s.pull({ ...SPEC }, 0, 0, 10)).entries).toHaveLength(1);
    await s.close();
  });

  it('a wrong password or a key outside the user\'s patterns is refused', async () => {
    const bad = new RedisSharedStore(options({ addresses: [redis.address], keyPrefix: 'fc', username: 'companion', password: 'wrong', tls: tls() }));
    const errors: (string | null)[] = [];
    bad.connect((_c, e) => errors.push(e));
    await poll(() => (errors.some((e) => e !== null && /WRONGPASS|invalid/i.test(e)) ? true : null), { timeoutMs: 10_000, what: 'auth failure reported' });
    await bad.close();
    const other = await connected(options({ addresses: [redis.address], keyPrefix: 'other', username: 'companion', password: 's3cret', tls: tls() }));
    await expect(other.hello('n', Date.now(), 1000)).rejects.toThrow(/NOPERM|No permissions/i);
    await other.close();
  });
});

describe.skipIf(skip !== null)('RedisSharedStore: Sentinel and Cluster', () => {
  const servers: RedisServer[] = [];
  afterAll(async () => {
    for (const s of servers.reverse()) await s.close();
  });

  it('finds the master through a sentinel', async () => {
    const master = await startRedis();
    servers.push(master);
    const sentinel = await startRedis({ sentinelConf: `sentinel monitor mymaster 127.0.0.1 ${master.port} 1\nsentinel resolve-hostnames no\n` });
    servers.push(sentinel);
    const s = await connected(options({ mode: 'sentinel', addresses: [sentinel.address], keyPrefix: 'sent' }));
    await s.push({ ...SPEC }, groups('nginx', { 'a|1': [1, 2, 3] }), Date.now());
    expect(master.cli('HGET', '{sent}:eg:h:nginx', 'a|1')).toContain('+3');
    await s.close();
  }, 30_000);

  it('works on a 3-node Redis Cluster (all keys of a prefix in one hash slot)', async () => {
    const nodes: RedisServer[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const r = await startRedis({ port, args: ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'] });
      nodes.push(r);
      servers.push(r);
    }
    const { spawnSync } = await import('node:child_process');
    const created = spawnSync('/usr/bin/redis-cli', ['--cluster', 'create', ...nodes.map((x) => x.address), '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    expect(created.status, created.stdout + created.stderr).toBe(0);
    await poll(() => (nodes[0]?.cli('CLUSTER', 'INFO').includes('cluster_state:ok') ? true : null), { timeoutMs: 15_000, intervalMs: 200, what: 'cluster_state:ok' });
    const s = await connected(options({ mode: 'cluster', addresses: [nodes[0]?.address ?? ''], keyPrefix: 'clu' }));
    for (let g = 0; g < 5; g++) await s.push({ ...SPEC }, groups(`img${g}`, { 'a|1': [g, g, 1] }), Date.now());
    expect((await s.hello('n', Date.now(), 60_000)).seq).toBe(5);
    expect((await s.pull({ ...SPEC }, 0, 0, 100)).entries).toHaveLength(5);
    await s.close();
  }, 60_000);
});

