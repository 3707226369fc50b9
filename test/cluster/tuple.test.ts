/**
 * Merge semantics of the shared learned state (src/cluster/tuple.ts, src/cluster/series.ts):
 * property tests with fast-check. Lattice cells (min, max, byte-order max) form a join
 * semilattice: commutative, associative, idempotent. Counts add: commutative and associative.
 * Bounded groups keep the most recent entries whatever the merge order.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boundGroup, byteCompare, decodeTuple, encodeTuple, mergeGroups, mergeTuple, SEP, type Cell, type Tuple } from '../../src/cluster/tuple.js';
import { mergeSeries, pooled, seriesOwner } from '../../src/cluster/series.js';
import { RESOURCE_OPS } from '../../src/cluster/types.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { ResourceBaselines } from '../../src/resource/baseline.js';

const cell = (op: string): fc.Arbitrary<Cell> =>
  op === '^' ? fc.option(fc.string({ unit: 'grapheme', maxLength: 6 }), { nil: null }) : fc.option(fc.integer({ min: 0, max: 2 ** 45 }), { nil: null });
const tupleOf = (ops: string): fc.Arbitrary<Tuple> => fc.tuple(...[...ops].map(cell));
const opsArb = fc.array(fc.constantFrom('<', '>', '^'), { minLength: 1, maxLength: 5 }).map((a) => a.join(''));
const withOps = (n: number): fc.Arbitrary<[string, ...Tuple[]]> => opsArb.chain((ops) => fc.tuple(fc.constant(ops), ...Array.from({ length: n }, () => tupleOf(ops))));

describe('tuple merge (min, max, byte-order max)', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(withOps(2), ([ops, a, b]) => {
        expect(mergeTuple(ops, a as Tuple, b as Tuple)).toEqual(mergeTuple(ops, b as Tuple, a as Tuple));
      }),
    );
  });
  it('is associative', () => {
    fc.assert(
      fc.property(withOps(3), ([ops, a, b, c]) => {
        const [x, y, z] = [a, b, c] as Tuple[];
        expect(mergeTuple(ops, mergeTuple(ops, x as Tuple, y as Tuple), z as Tuple)).toEqual(mergeTuple(ops, x as Tuple, mergeTuple(ops, y as Tuple, z as Tuple)));
      }),
    );
  });
  it('is idempotent (a write applied twice changes nothing)', () => {
    fc.assert(
      fc.property(withOps(2), ([ops, a, b]) => {
        const m = mergeTuple(ops, a as Tuple, b as Tuple);
        expect(mergeTuple(ops, m, b as Tuple)).toEqual(m);
        expect(mergeTuple(ops, a as Tuple, a as Tuple)).toEqual(a);
      }),
    );
  });
  it('first seen is the minimum, last seen the maximum, over any order of nodes', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 1e12 }), fc.integer({ min: 0, max: 1e6 })), { minLength: 1, maxLength: 8 }), (obs) => {
        const tuples: Tuple[] = obs.map(([t, d]) => [t, t + d]);
        const merged = tuples.reduce((acc, t) => mergeTuple('<>', acc, t));
        expect(merged[0]).toBe(Math.min(...obs.map(([t]) => t)));
        expect(merged[1]).toBe(Math.max(...obs.map(([t, d]) => t + d)));
      }),
    );
  });
});

describe('count cells add', () => {
  const counts = fc.tuple(fc.nat(1e6), fc.nat(1e6), fc.nat(1e6));
  it('commutative and associative, not idempotent (a retried delta counts twice: documented)', () => {
    fc.assert(
      fc.property(counts, ([a, b, c]) => {
        expect(mergeTuple('+', [a], [b])).toEqual(mergeTuple('+', [b], [a]));
        expect(mergeTuple('+', mergeTuple('+', [a], [b]), [c])).toEqual(mergeTuple('+', [a], mergeTuple('+', [b], [c])));
      }),
    );
    expect(mergeTuple('+', [2], [2])).toEqual([4]);
  });
});

describe('encoding', () => {
  it('round-trips every tuple (separators stripped from strings)', () => {
    fc.assert(
      fc.property(
        opsArb.chain((ops) => fc.tuple(fc.constant(ops), tupleOf(ops))),
        ([ops, t]) => {
          const back = decodeTuple(ops, encodeTuple(ops, t));
          const clean = t.map((v, i) => (v === null ? null : ops[i] === '^' ? String(v).split(SEP).join('') || null : v));
          expect(back).toEqual(clean);
        },
      ),
    );
  });
  it('ignores the server bookkeeping cell and rejects another layout', () => {
    expect(decodeTuple('<>+', `<1${SEP}>2${SEP}+3${SEP}@2`)).toEqual([1, 2, 3]);
    expect(decodeTuple('<>', `<1${SEP}>2${SEP}+3`)).toBeNull();
    expect(decodeTuple('<>', `>1${SEP}>2`)).toBeNull();
    expect(decodeTuple('<>', `<x${SEP}>2`)).toBeNull();
  });
  it('byte order is UTF-8 byte order (what the Redis script compares), not UTF-16', () => {
    expect(byteCompare('\u{1F600}', '\uFF5E')).toBeGreaterThan(0); // U+1F600 > U+FF5E though its UTF-16 surrogate is smaller
    expect(mergeTuple('^', ['\uFF5E'], ['\u{1F600}'])).toEqual(['\u{1F600}']);
  });
});

describe('bounded groups (an image\'s destinations, a series\' points)', () => {
  const entry = fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g'), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 50 }));
  const group = fc.array(entry, { maxLength: 7 }).map((es) => {
    const m = new Map<string, Tuple>();
    for (const [k, f, l] of es) m.set(k, [f, Math.max(f, l)]);
    return m;
  });
  const MAX = 3;
  const merge = (a: Map<string, Tuple>, b: Map<string, Tuple>): Map<string, Tuple> => mergeGroups('<>', 1, MAX, a, b);
  const bounded = (m: Map<string, Tuple>): Map<string, Tuple> => boundGroup(1, MAX, new Map(m));
  const sorted = (m: Map<string, Tuple>): [string, Tuple][] => [...m].sort((x, y) => byteCompare(x[0], y[0]));

  it('commutative and idempotent', () => {
    fc.assert(
      fc.property(group, group, (a, b) => {
        const [x, y] = [bounded(a), bounded(b)];
        expect(sorted(merge(x, y))).toEqual(sorted(merge(y, x)));
        const m = merge(x, y);
        expect(sorted(merge(m, y))).toEqual(sorted(m));
        expect(sorted(merge(x, x))).toEqual(sorted(x));
      }),
    );
  });
  it('keeps the same keys and recency whatever the grouping (associative on what the bound selects)', () => {
    fc.assert(
      fc.property(group, group, group, (a, b, c) => {
        const [x, y, z] = [bounded(a), bounded(b), bounded(c)];
        const left = merge(merge(x, y), z);
        const right = merge(x, merge(y, z));
        const view = (m: Map<string, Tuple>): [string, Cell][] => sorted(m).map(([k, t]) => [k, t[1] ?? null]);
        expect(view(left)).toEqual(view(right));
        expect(left.size).toBeLessThanOrEqual(MAX);
      }),
    );
  });
  it('unbounded merges are fully associative', () => {
    fc.assert(
      fc.property(group, group, group, (a, b, c) => {
        const m = (p: Map<string, Tuple>, q: Map<string, Tuple>): Map<string, Tuple> => mergeGroups('<>', 1, 100, p, q);
        expect(sorted(m(m(a, b), c))).toEqual(sorted(m(a, m(b, c))));
      }),
    );
  });
  it('never drops a protected key, drops the least recent first', () => {
    const m = new Map<string, Tuple>([
      ['~', [1, 1]],
      ['old', [1, 2]],
      ['mid', [1, 5]],
      ['new', [1, 9]],
    ]);
    expect([...boundGroup(1, 2, m, new Set(['~'])).keys()].sort()).toEqual(['mid', 'new', '~']);
  });
});

describe('pooled beacon series', () => {
  const pts = fc.array(fc.tuple(fc.integer({ min: 1_700_000_000, max: 1_700_000_100 }), fc.constantFrom('n1', 'n2', 'n3'), fc.integer({ min: 1, max: 5 })), { maxLength: 20 }).map((xs) => {
    const m = new Map<string, Tuple>();
    for (const [sec, node, count] of xs) m.set(`${sec}|${node}`, [sec, count]);
    return m;
  });
  const view = (m: Map<string, Tuple>): unknown => pooled(m);
  it('series merge is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(pts, pts, pts, (a, b, c) => {
        expect(view(mergeSeries(a, b, 1000))).toEqual(view(mergeSeries(b, a, 1000)));
        expect(view(mergeSeries(mergeSeries(a, b, 1000), c, 1000))).toEqual(view(mergeSeries(a, mergeSeries(b, c, 1000), 1000)));
        const m = mergeSeries(a, b, 1000);
        expect(view(mergeSeries(m, b, 1000))).toEqual(view(m));
      }),
    );
  });
  it('three nodes\' points form one sorted unique series with counts summed', () => {
    const m = new Map<string, Tuple>([
      ['60|n1', [60, 1]],
      ['120|n2', [120, 1]],
      ['180|n3', [180, 2]],
      ['180|n1', [180, 1]],
    ]);
    expect(pooled(m)).toEqual({
      points: [
        { sec: 60, count: 1 },
        { sec: 120, count: 1 },
        { sec: 180, count: 3 },
      ],
      nodes: ['n1', 'n2', 'n3'],
      last: new Map([
        ['n1', 180],
        ['n2', 120],
        ['n3', 180],
      ]),
    });
  });
  it('one owner per series whatever the order of the nodes (one detection for a pooled beacon)', () => {
    fc.assert(
      fc.property(fc.string(), fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 6 }), (key, nodes) => {
        const owner = seriesOwner(key, nodes);
        expect(nodes).toContain(owner);
        expect(seriesOwner(key, [...nodes].reverse())).toBe(owner);
      }),
    );
    expect(seriesOwner('k', [])).toBeNull();
  });
});

describe('resource baselines (rb): first = min, last = max, peak = max, counts and sums add', () => {
  const obs = fc.tuple(fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 1e6 }), fc.integer({ min: 0, max: 2 ** 40 }));
  const t = (o: [number, number, number, number, number]): Tuple => [o[0], o[0] + o[1], o[2], o[3], o[4]];
  it('the store merge is commutative and associative; the lattice cells idempotent', () => {
    fc.assert(
      fc.property(obs, obs, obs, (x, y, z) => {
        const [a, b, c] = [t(x), t(y), t(z)];
        expect(mergeTuple(RESOURCE_OPS, a, b)).toEqual(mergeTuple(RESOURCE_OPS, b, a));
        expect(mergeTuple(RESOURCE_OPS, mergeTuple(RESOURCE_OPS, a, b), c)).toEqual(mergeTuple(RESOURCE_OPS, a, mergeTuple(RESOURCE_OPS, b, c)));
        const m = mergeTuple(RESOURCE_OPS, a, b);
        expect(mergeTuple(RESOURCE_OPS, m, b).slice(0, 3)).toEqual(m.slice(0, 3));
      }),
    );
  });
  it('a node\'s view of what it pulled is commutative and idempotent (pulled totals only grow)', () => {
    const stats = (entries: readonly { group: string; field: string; tuple: Tuple }[][]) => {
      const b = new ResourceBaselines({ settings: { windowMs: 3_600_000, slots: 6, learningPeriodMs: 1, minSamples: 1, maxKeys: 10 }, db: null, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
      for (const batch of entries) b.mergeRemote(batch);
      return b.stats('image:a|cpu', 2n ** 62n);
    };
    fc.assert(
      fc.property(fc.array(obs, { minLength: 1, maxLength: 6 }), (xs) => {
        const batches = xs.map((x) => [{ group: 'image:a', field: 'cpu', tuple: t(x) }]);
        const once = stats(batches);
        expect(stats([...batches].reverse())).toEqual(once);
        expect(stats([...batches, ...batches])).toEqual(once);
      }),
    );
  });
});
