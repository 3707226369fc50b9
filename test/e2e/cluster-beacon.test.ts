/**
 * Beacon series pooled by image across nodes, end to end: three built companions (`run`), each
 * with its own Falcosidekick stand-in, the beacon detector on `group_by: image` (the shipped
 * rules file otherwise: thresholds as shipped). The replicas of one image beacon on one schedule
 * and every node sees a third of the connections (15 seconds: below `min_points` alone).
 *
 * - Sharing one real redis-server: the three thirds form one series → exactly one beacon
 *   detection across the three sidekicks, from the series' owner.
 * - With no Redis (the default SQLite store): no node produces one.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seriesOwner } from '../../src/cluster/series.js';
import { BEACON_RULE } from '../../src/detect/detectors/beacon.js';
import { stringify } from '../../src/json/lossless.js';
import { postAlert, startNodes, type ClusterNode } from '../support/cluster-nodes.js';
import { BASE_NS, falcoAlertJson, secNs } from '../support/falco-alerts.js';
import { redisSkipReason, startRedis, type RedisServer } from '../support/redis.js';
import { FakeSidekick } from '../support/sidekick.js';
import { poll, wait as sleep } from '../support/wait.js';

const skip = redisSkipReason();
if (skip) process.stderr.write(`test/e2e/cluster-beacon.test.ts: ${skip}\n`);

const NAMES = ['node-a', 'node-b', 'node-c'] as const;
const IMAGE = 'shop/api';
const EXE = '/app/agent';
const DEST = '203.0.113.7';
/** Connections of the beacon (one schedule, 60 s ± 2 s), the i-th on node i % 3. */
const CONNECTIONS = 45;

/** The i-th connect of the beacon: a container of the image on node i % 3. */
function beaconConnect(i: number, t: number): string {
  const node = i % 3;
  return falcoAlertJson({
    rule: 'Companion signal: outbound connection from container',
    priority: 'Notice',
    tags: ['falco_companion_signal'],
    ns: BASE_NS + secNs(t),
    defaults: false,
    fields: {
      'evt.type': 'connect',
      'fd.name': `10.244.${node}.5:40000->${DEST}:443`,
      'fd.cip': `10.244.${node}.5`,
      'fd.sip': DEST,
      'fd.sport': 443,
      'fd.l4proto': 'tcp',
      'container.id': `c0ffee00000${node}`,
      'container.image.repository': IMAGE,
      'proc.exepath': EXE,
      'proc.name': 'agent',
      'test.seq': i,
    },
  });
}

interface Run {
  readonly nodes: ClusterNode[];
  readonly sidekicks: FakeSidekick[];
}

describe.skipIf(skip !== null)('e2e: one beacon from replicas on three nodes', () => {
  let dir: string;
  let redis: RedisServer;
  const runs: Run[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-pool-'));
    redis = await startRedis();
    const rules = readFileSync('src/detect/defaults/companion-rules.yaml', 'utf8');
    const pooled = rules.replace(/^ {2}beacon:\n/m, '  beacon:\n    group_by: image\n');
    expect(pooled).not.toBe(rules);
    writeFileSync(join(dir, 'rules.yaml'), pooled);
  }, 30_000);

  afterAll(async () => {
    for (const r of runs) {
      for (const n of r.nodes) await n.cli.stop('SIGTERM');
      for (const s of r.sidekicks) await s.close();
    }
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /** Three nodes (with Redis or not) each with its own sidekick; the beacon played across them. */
  async function play(label: string, redisAddress: string | null): Promise<Run> {
    const sidekicks = await Promise.all(NAMES.map(() => new FakeSidekick().start()));
    const nodes = await startNodes({
      dir: join(dir, label),
      names: NAMES,
      sidekickUrl: (name) => (sidekicks[NAMES.indexOf(name as (typeof NAMES)[number])] as FakeSidekick).url,
      redisAddress,
      env: { FALCO_COMPANION_DETECT_RULES_FILE: join(dir, 'rules.yaml'), FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false' },
    });
    const run = { nodes, sidekicks };
    runs.push(run);
    const forwarded = (k: number, i: number): boolean =>
      (sidekicks[k] as FakeSidekick).accepted.some((a) => stringify((a.parsed['output_fields'] as Record<string, unknown>)['test.seq'] as never) === String(i));
    let t = 0;
    for (let i = 0; i < CONNECTIONS; i++) {
      const k = i % 3;
      expect(await postAlert(nodes[k] as ClusterNode, beaconConnect(i, t))).toBe(200);
      await poll(() => (forwarded(k, i) ? true : null), { timeoutMs: 10_000, intervalMs: 10, what: `${label}: connect ${i} forwarded` });
      // Pulls run every 200 ms: the next connect (another node) finds this one in its inbox.
      if (redisAddress !== null) await sleep(300);
      t += 60 + (((i * 7919) % 5) - 2); // 58 … 62 s
    }
    return run;
  }

  const beacons = (r: Run): { node: string; alert: Record<string, unknown> }[] =>
    r.sidekicks.flatMap((s, k) => s.accepted.filter((a) => a.parsed['rule'] === BEACON_RULE).map((a) => ({ node: NAMES[k] as string, alert: a.parsed })));

  it('with no Redis, each node alone (a third of the connections) produces no beacon detection', async () => {
    const r = await play('alone', null);
    await sleep(500);
    expect(beacons(r)).toEqual([]);
  }, 120_000);

  it('sharing one Redis, the three thirds are one series and exactly one detection, from its owner', async () => {
    const r = await play('pooled', redis.address);
    const found = await poll(() => (beacons(r).length > 0 ? beacons(r) : null), { timeoutMs: 15_000, intervalMs: 100, what: 'a beacon detection' });
    await sleep(1500); // any second one would be out by now
    expect(beacons(r)).toHaveLength(1);
    expect(found[0]?.node).toBe(seriesOwner(`${IMAGE}|${EXE}|${DEST}|443`, NAMES));
    const fields = found[0]?.alert['output_fields'] as Record<string, unknown>;
    expect(stringify(fields['companion.beacon.nodes'] as never)).toBe('3');
    expect(Number(stringify(fields['companion.beacon.unique_times'] as never))).toBeGreaterThanOrEqual(16);
  }, 120_000);
});
