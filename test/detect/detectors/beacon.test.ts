import { describe, expect, it } from 'vitest';
import { BEACON_RULE, createBeaconDetector } from '../../../src/detect/detectors/beacon.js';
import { rng, runDetector, sig } from '../../support/signals.js';

/** A series of connects: start, base interval, ± uniform jitter, count. */
function series(opts: { n: number; base: number; jitter: number; seed?: number; dest?: string; port?: number; container?: string; start?: number; exe?: string }) {
  const r = rng(opts.seed ?? 1);
  let t = opts.start ?? 0;
  const out = [];
  for (let i = 0; i < opts.n; i++) {
    out.push(sig({ kind: 'connect', t, dest: opts.dest ?? '203.0.113.7', port: opts.port ?? 443, container: opts.container ?? 'c1', exe: opts.exe ?? '/tmp/.x/agent' }));
    t += opts.base + (r() * 2 - 1) * opts.jitter;
  }
  return out;
}

describe('beacon detector', () => {
  it('flags a 60 s ± 2 s beacon over 30 minutes with score, interval, jitter and count', () => {
    const det = createBeaconDetector();
    const { findings } = runDetector(det, series({ n: 31, base: 60, jitter: 2 }));
    expect(findings).toHaveLength(1);
    const f = findings[0]!;
    expect(f.rule).toBe(BEACON_RULE);
    expect(f.score).toBeGreaterThanOrEqual(0.95);
    expect(f.fields['beacon.interval_s']).toBeGreaterThanOrEqual(58);
    expect(f.fields['beacon.interval_s']).toBeLessThanOrEqual(62);
    expect(typeof f.fields['beacon.jitter_s']).toBe('number');
    expect(f.fields['beacon.count']).toBeGreaterThanOrEqual(11);
    expect(f.mitre).toEqual(expect.arrayContaining(['T1071', 'T1571', 'T1573', 'mitre_command_and_control']));
    expect(f.message).toContain('203.0.113.7:443');
    const times = f.evidence.map((e) => e.timeNs);
    expect([...times].sort((a, b) => (a < b ? -1 : 1))).toEqual(times);
    for (const v of Object.values(f.fields)) if (typeof v === 'string') expect(v.length).toBeLessThan(512);
  });

  it('repeats an unchanged series at most once an hour (internal limit; the engine decides what is sent); distinct destinations are separate series', () => {
    const det = createBeaconDetector();
    const a = series({ n: 120, base: 60, jitter: 1 });
    const b = series({ n: 120, base: 60, jitter: 1, dest: '198.51.100.9', seed: 2 });
    const merged = [...a, ...b].sort((x, y) => (x.timeNs < y.timeNs ? -1 : 1));
    const { findings } = runDetector(det, merged);
    // 2 hours of each: one finding per series per hour → 2 + 2, at least an hour apart
    expect(findings).toHaveLength(4);
    const keys = [...new Set(findings.map((f) => f.key))];
    expect(keys).toHaveLength(2);
    for (const k of keys) {
      const [f1, f2] = findings.filter((f) => f.key === k);
      expect(f2!.timeNs - f1!.timeNs).toBeGreaterThanOrEqual(3_600_000_000_000n);
    }
  });

  it('does not flag random (Poisson-like) connections', () => {
    const r = rng(7);
    let t = 0;
    const sigs = [];
    for (let i = 0; i < 200; i++) {
      sigs.push(sig({ kind: 'connect', t, dest: '203.0.113.7', port: 443 }));
      t += -Math.log(1 - r()) * 120;
    }
    expect(runDetector(createBeaconDetector(), sigs).findings).toHaveLength(0);
  });

  it('benign: apt every 5 min with ±80% jitter to the mirror the image always used stays at Notice at most', () => {
    let scored = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const sigs = series({ n: 72, base: 300, jitter: 240, seed, exe: '/usr/lib/apt/methods/http', dest: '185.125.190.36', port: 80 }).map((x, i) =>
        sig({ kind: 'connect', ns: x.timeNs, exe: '/usr/lib/apt/methods/http', dest: '185.125.190.36', port: 80, companion: i < 12 ? { 'dest.learning': true, 'dest.new_for_image': i === 0 } : { 'dest.new_for_image': false } }),
      );
      // A lower threshold than the default, so that some of these do cross it.
      const { findings } = runDetector(createBeaconDetector({ threshold: 0.85 }), sigs);
      scored += findings.length;
      for (const f of findings) expect(f.priority, `seed ${seed}`).toBe('Notice');
    }
    expect(scored).toBeGreaterThan(0); // some seeds do look periodic: the baseline, not the score, keeps them quiet
  });

  it('skips loopback and configured destination classes', () => {
    expect(runDetector(createBeaconDetector(), series({ n: 60, base: 10, jitter: 0.2, dest: '127.0.0.1', port: 15021 })).findings).toHaveLength(0);
    const cls = series({ n: 60, base: 10, jitter: 0.2 }).map((s) => sig({ kind: 'connect', ns: s.timeNs, dest: '169.254.169.254', port: 80, companion: { 'dest.class': 'link_local' } }));
    expect(runDetector(createBeaconDetector(), cls).findings).toHaveLength(0);
  });

  it('needs at least min_points unique seconds and rescores on a cadence, not on every connect', () => {
    const det = createBeaconDetector({ rescore_every: 10 });
    const { state } = runDetector(det, series({ n: 103, base: 60, jitter: 1 }));
    // first score at 16 points, then every 10 new points: 16, 26, ..., 96 → 9 scorings for 103 connects
    expect(state.scored).toBe(9);
    // 15 connects are a burst, not yet a series (the recorded beacon-container has 12)
    const st2 = runDetector(createBeaconDetector(), series({ n: 15, base: 1, jitter: 0 })).state;
    expect(st2.scored).toBe(0);
  });

  it('drops connection times outside the window; a beacon split by a long gap is rescored from scratch', () => {
    const det = createBeaconDetector({ window: 600_000 }); // 10 min
    const first = series({ n: 8, base: 60, jitter: 0 });
    const later = series({ n: 3, base: 60, jitter: 0, start: 7200 });
    const { state, findings } = runDetector(det, [...first, ...later]);
    const s = [...state.series.values()][0]!;
    expect(s.secs.length).toBe(3);
    for (const f of findings) for (const e of f.evidence) expect(e.timeNs).toBeGreaterThanOrEqual(later[0]!.timeNs - 600_000_000_000n);
  });

  it('bounds series (LRU) and points per series, counting evictions', () => {
    const det = createBeaconDetector({ max_series: 5, max_points: 16 });
    const sigs = [];
    for (let i = 0; i < 20; i++) sigs.push(sig({ kind: 'connect', t: i, dest: `203.0.113.${i}`, port: 443 }));
    for (let i = 0; i < 40; i++) sigs.push(sig({ kind: 'connect', t: 100 + i * 60, dest: '203.0.113.19', port: 443 }));
    const { state } = runDetector(det, sigs);
    expect(state.series.size).toBeLessThanOrEqual(5);
    expect(state.series.evicted).toBe(15);
    expect(state.droppedPoints).toBe(41 - 16);
    expect(det.evictions(state)).toBe(15 + 25);
    for (const s of state.series.values()) expect(s.secs.length).toBeLessThanOrEqual(16);
  });

  it('strobes (≥ strobe connections in the window) are not scored', () => {
    const det = createBeaconDetector({ strobe: 50 });
    const { findings, state } = runDetector(det, series({ n: 200, base: 1, jitter: 0 }));
    expect(findings.length).toBe(1); // scored while below 50, then silent as a strobe
    expect(state.scored).toBeLessThanOrEqual(10);
  });

  it('raises priority to Critical for intel-listed destinations', () => {
    const sigs = series({ n: 31, base: 60, jitter: 1 }).map((s) => sig({ kind: 'connect', ns: s.timeNs, dest: '203.0.113.7', port: 8443, companion: { 'dest.intel': 'feodo' } }));
    const { findings } = runDetector(createBeaconDetector(), sigs);
    expect(findings[0]?.priority).toBe('Critical');
  });

  it('rejects weights that do not sum to 1', () => {
    expect(() => createBeaconDetector({ weights: { ts: 0.5, hist: 0.5, dur: 0.5 } })).toThrow(/sum to 1/);
  });
});

describe('beacon detector: total points budget', () => {
  const held = (st: ReturnType<ReturnType<typeof createBeaconDetector>['init']>): number => {
    let n = 0;
    for (const s of st.series.values()) n += s.secs.length;
    return n;
  };

  it('evicts the least recently used series when all series together exceed max_total_points (counted)', () => {
    const det = createBeaconDetector({ max_total_points: 100, max_points: 60 });
    const sigs = ['c1', 'c2', 'c3'].flatMap((c, i) => series({ n: 40, base: 7, jitter: 0, container: c, start: i * 1000 }));
    const { state } = runDetector(det, sigs);
    expect(state.points).toBe(held(state));
    expect(state.points).toBeLessThanOrEqual(100);
    expect([...state.series.values()].map((s) => s.key.split('|')[0])).toEqual(['c2', 'c3']);
    expect(state.series.evicted).toBe(1);
    expect(det.evictions(state)).toBe(1);
  });

  it('trims a lone series that holds the whole budget, and keeps the total exact across window sweeps', () => {
    const det = createBeaconDetector({ max_total_points: 20, max_points: 60 });
    const { state } = runDetector(det, series({ n: 30, base: 5, jitter: 0 }));
    expect(state.points).toBe(20);
    expect(held(state)).toBe(20);
    expect(state.droppedPoints).toBe(10);

    const small = createBeaconDetector({ window: 60_000, max_total_points: 50, max_points: 16 });
    const mixed = Array.from({ length: 8 }, (_, i) => series({ n: 12, base: 9, jitter: 1, seed: i + 1, container: `c${i % 3}`, dest: `203.0.113.${i}`, start: i * 50 })).flat();
    mixed.sort((x, y) => (x.timeNs < y.timeNs ? -1 : 1));
    const r = runDetector(small, mixed);
    expect(r.state.points).toBe(held(r.state));
    expect(r.state.points).toBeLessThanOrEqual(50);
  });
});
