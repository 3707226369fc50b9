/**
 * Beacon series pooled by image across nodes (`group_by: image` with a cluster store): each node's
 * detector records its own connection seconds in its PooledSeries (src/cluster/series.ts, real);
 * the other nodes' points come back as input (`remote`), and only the series' owner reports it.
 * The store between the nodes is the in-process hand-over below (the Redis transport itself is
 * covered by test/cluster/sync.test.ts and, end to end, test/e2e/cluster-beacon.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { PooledSeries, seriesOwner } from '../../../src/cluster/series.js';
import { seriesSpec } from '../../../src/cluster/replicas.js';
import type { Entry } from '../../../src/cluster/types.js';
import { NO_ENV } from '../../../src/detect/cluster.js';
import { decodeState, encodeState, restoreInto } from '../../../src/detect/codec.js';
import { BEACON_RULE, createBeaconDetector, type BeaconSettings } from '../../../src/detect/detectors/beacon.js';
import type { Detector, Finding, Signal } from '../../../src/detect/types.js';
import { Metrics } from '../../../src/metrics.js';
import { rng, sig } from '../../support/signals.js';

const LIMITS = { egress_ttl: 1, egress_max_images: 1, egress_max_per_image: 1, image_ttl: 1, image_max_repositories: 1, image_max_per_repository: 1, series_ttl: 86_400_000, series_max: 100, series_max_points: 1000, resource_ttl: 1, resource_max_groups: 1, resource_max_per_group: 8 };
const NAMES = ['node-a', 'node-b', 'node-c'] as const;

interface Node {
  readonly name: string;
  readonly series: PooledSeries;
  readonly det: Detector<unknown>;
  state: unknown;
  /** Entries the other nodes wrote, not yet pulled (the store's lag). */
  readonly wire: Entry[];
}

/** Three nodes whose pooled series see each other's writes after `lag` of their own steps. */
function cluster(settings: Partial<BeaconSettings>, pooled = true): Node[] {
  const nodes: Node[] = [];
  for (const name of NAMES) {
    const sink = { put: (_ns: string, group: string, field: string, _ops: string, tuple: readonly (number | string | null)[]) => nodes.filter((n) => n.name !== name).forEach((n) => n.wire.push({ group, field, tuple })) };
    const series = new PooledSeries({ node: name, spec: seriesSpec(LIMITS), sink, maxSeries: 100, maxPoints: 1000, metrics: new Metrics({ collectDefault: false }) });
    const det = createBeaconDetector(settings, pooled ? { ...NO_ENV, series } : NO_ENV) as Detector<unknown>;
    nodes.push({ name, series, det, state: det.init(), wire: [] });
  }
  return nodes;
}

/** A step as the engine does it: pull what waits, drain it into the detector, then the signal. */
function step(n: Node, s: Signal): readonly Finding[] {
  n.series.applyRemote(n.wire.splice(0));
  const input = n.series.drain(64);
  if (input.length > 0) n.det.remote?.(n.state, input, s.timeNs);
  return n.det.step(n.state, s, s.timeNs).findings;
}

/** Replicas of one image on three nodes, one beacon schedule: connection i lands on node i % 3. */
function replicaBeacon(n: number, base = 60, jitter = 2): { node: number; s: Signal }[] {
  const r = rng(3);
  let t = 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ node: i % 3, s: sig({ kind: 'connect', t, dest: '203.0.113.7', port: 443, container: `c-${i % 3}`, image: 'shop/api', exe: '/app/agent' }) });
    t += base + (r() * 2 - 1) * jitter;
  }
  return out;
}

const KEY = 'shop/api|/app/agent|203.0.113.7|443';

describe('beacon series pooled by image across nodes', () => {
  it('replicas beaconing from three nodes (a third each, below min_points alone) are one series and one detection, from the owner', () => {
    const nodes = cluster({ group_by: 'image' });
    const found: { node: string; f: Finding }[] = [];
    for (const { node, s } of replicaBeacon(45)) for (const f of step(nodes[node] as Node, s)) found.push({ node: (nodes[node] as Node).name, f });
    expect(found.map((x) => x.f.rule)).toEqual([BEACON_RULE]);
    expect(found[0]?.node).toBe(seriesOwner(KEY, NAMES));
    expect(found[0]?.f.fields['beacon.nodes']).toBe(3);
    expect(found[0]?.f.fields['beacon.unique_times']).toBeGreaterThanOrEqual(16);
    expect(found[0]?.f.fields['beacon.interval_s']).toBeGreaterThan(55);
    expect(found[0]?.f.fields['beacon.interval_s']).toBeLessThan(65);
  });

  it('without a cluster store each node alone finds nothing (15 seconds each), and group_by container pools nothing', () => {
    for (const [settings, pooled] of [
      [{ group_by: 'image' as const }, false],
      [{ group_by: 'container' as const }, true],
    ] as const) {
      const nodes = cluster(settings, pooled);
      const found = replicaBeacon(45).flatMap(({ node, s }) => step(nodes[node] as Node, s));
      expect(found).toEqual([]);
      expect(nodes.every((n) => n.wire.length === 0)).toBe(true);
    }
  });

  it('the same node count per second from two pulls is counted once (each node\'s count only grows)', () => {
    const [a] = cluster({ group_by: 'image' }) as [Node];
    const st = a.state as { series: { get(k: string): { secs: number[]; cnts: number[] } | undefined } };
    const now = sig({ kind: 'connect', t: 0 }).timeNs;
    const sec = Number(now / 1_000_000_000n);
    const view = (count: number) => [{ key: KEY, points: [{ sec, count }], nodes: ['node-b'], last: new Map([['node-b', sec]]) }];
    a.det.remote?.(a.state, view(1), now);
    a.det.remote?.(a.state, view(1), now);
    a.det.remote?.(a.state, view(2), now);
    expect(st.series.get(KEY)).toMatchObject({ secs: [sec], cnts: [2] });
    // Points far ahead of this node's clock or outside the window are not taken.
    a.det.remote?.(a.state, [{ key: KEY, points: [{ sec: sec + 7200, count: 1 }, { sec: sec - 90_000, count: 1 }], nodes: ['node-b'], last: new Map([['node-b', sec + 7200]]) }], now);
    expect(st.series.get(KEY)?.secs).toEqual([sec]);
  });

  it('a node that stopped contributing hands the series over; the pooled state survives a checkpoint', () => {
    const nodes = cluster({ group_by: 'image' });
    const owner = NAMES.indexOf(seriesOwner(KEY, NAMES) as (typeof NAMES)[number]);
    // After 12 connections the owner's replica is rescheduled to the next node: the schedule goes
    // on from the two others for two hours. The owner stays live for an hour (a strobe bucket),
    // then hands the series over.
    const kept = replicaBeacon(120).map((p, i) => (i >= 12 && p.node === owner ? { ...p, node: (owner + 1) % 3 } : p));
    const found: string[] = [];
    for (const { node, s } of kept) {
      const n = nodes[node] as Node;
      // a checkpoint round trip on every step of one node: the state is plain codec data
      if (node === 1) n.state = restoreInto(n.det.init(), decodeState(encodeState(n.state)));
      for (const f of step(n, s)) found.push(`${n.name}:${f.rule}`);
    }
    expect(found).toHaveLength(1);
    expect(found[0]).not.toMatch(new RegExp(`^${NAMES[owner]}:`));
  });
});
