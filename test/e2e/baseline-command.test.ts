/**
 * `falco-companion baseline export | import` (built CLI): a node's state database seeds a new
 * cluster store on a real redis-server, through a JSON-lines file or straight from the database.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { EgressBaseline } from '../../src/enrich/baseline.js';
import { ImageStore } from '../../src/enrich/image-store.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb } from '../../src/store/db.js';
import { CLI, requireBuilt } from '../support/cli.js';
import { redisSkipReason, startRedis, type RedisServer } from '../support/redis.js';

const skip = redisSkipReason();
const T0 = 1_750_000_000_000_000_000n;

describe.skipIf(skip !== null)('baseline export | import', () => {
  let dir: string;
  let redis: RedisServer;
  const run = (args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [CLI, 'baseline', ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const redisEnv = (prefix: string): Record<string, string> => ({ FALCO_COMPANION_STORE_BACKEND: 'redis', FALCO_COMPANION_STORE_REDIS_ADDRESSES: redis.address, FALCO_COMPANION_STORE_REDIS_KEY_PREFIX: prefix });

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(join(tmpdir(), 'fc-baseline-cmd-'));
    redis = await startRedis();
    // A node that learned alone (no cluster store): two destinations of nginx, one image with a tag move.
    const db = openStateDb(join(dir, 'node'));
    const metrics = new Metrics({ collectDefault: false });
    const b = new EgressBaseline({ db, learningPeriodMs: 0, maxPerImage: 10, maxTotal: 10, maxImages: 10, flushIntervalMs: 60_000, logger: silentLogger(), metrics });
    b.isNew('nginx', '203.0.113.1', 443, T0);
    b.isNew('nginx', '203.0.113.1', 443, T0 + 1_000_000_000n);
    b.isNew('nginx', 'api.example.com', 443, T0 + 2_000_000_000n);
    b.flush();
    const clock = new ManualClock(1_750_000_000_000);
    const images = new ImageStore({ db, maxImages: 10, maxTags: 10, metrics, clock });
    const ref = { registry: 'docker.io', repository: 'library/nginx', tag: '1.27', digest: null };
    const facts = (id: string) => ({ imageId: id, ref, digest: `${id}-d`, created: null, layers: 2, newestLayerCreated: null, newestLayerCmd: null });
    images.observe(facts('sha256:a'));
    clock.advance(60_000);
    images.observe(facts('sha256:b'));
    db.close();
  });
  afterAll(async () => {
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('export writes every learned entry as a JSON line', () => {
    const r = run(['export', '--state-dir', join(dir, 'node'), '--out', join(dir, 'seed.jsonl')]);
    expect(r.status, r.stderr).toBe(0);
    const lines = readFileSync(join(dir, 'seed.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { ns: string; group: string; field: string; tuple: unknown[] });
    expect(lines.filter((l) => l.ns === 'eg').map((l) => l.field).sort()).toEqual(['203.0.113.1|443', 'api.example.com|443', '~']);
    expect(lines.find((l) => l.field === '203.0.113.1|443')?.tuple).toEqual([1_750_000_000_000, 1_750_000_001_000, 2]);
    // image records and the tag's history (b is current, a was before)
    expect(lines.filter((l) => l.ns === 'img').map((l) => l.field).sort()).toEqual(['i|sha256:a', 'i|sha256:b', 't|1.27|sha256:a', 't|1.27|sha256:b']);
    expect(r.stderr).toMatch(/exported 7 entries/);
  });

  it('import merges a file into Redis; bad lines are skipped and counted', () => {
    writeFileSync(join(dir, 'seed2.jsonl'), readFileSync(join(dir, 'seed.jsonl'), 'utf8') + 'not json\n{"ns":"zz","group":"g","field":"f","tuple":[]}\n');
    const r = run(['import', '--in', join(dir, 'seed2.jsonl')], redisEnv('fromfile'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/imported 7 entries .* 2 skipped/);
    expect(redis.cli('HGET', '{fromfile}:eg:h:nginx', '203.0.113.1|443').split('\u001f').slice(0, 3)).toEqual(['<1750000000000', '>1750000001000', '+2']);
    expect(Number(redis.cli('ZCARD', '{fromfile}:img:v:docker.io/library/nginx'))).toBe(4);
  });

  it('import reads the state database directly when no file is given', () => {
    const r = run(['import', '--state-dir', join(dir, 'node')], redisEnv('direct'));
    expect(r.status, r.stderr).toBe(0);
    expect(Number(redis.cli('HLEN', '{direct}:eg:h:nginx'))).toBe(3);
  });

  it('import refuses without a Redis store configured, and fails when Redis is unreachable', () => {
    const none = run(['import', '--state-dir', join(dir, 'node')]);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/store.backend is not redis/);
    const down = run(['import', '--state-dir', join(dir, 'node'), '--timeout', '500'], { ...redisEnv('x'), FALCO_COMPANION_STORE_REDIS_ADDRESSES: '127.0.0.1:1' });
    expect(down.status).toBe(1);
    expect(down.stderr).toMatch(/Redis not reachable within 500 ms/);
  });
});
