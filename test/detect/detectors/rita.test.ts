import { describe, expect, it } from 'vitest';
import {
  beaconScore,
  bowleySkewness,
  dataSizeScore,
  durationScore,
  histogramScore,
  mad,
  median,
  quartiles,
  scoreSeries,
  statisticalScore,
  timestampScore,
  NO_BYTES_WEIGHTS,
  RITA_HISTOGRAM_DEFAULTS,
} from '../../../src/detect/detectors/rita.js';
import { round3 } from '../../../src/detect/detectors/kit.js';

/** Timestamps from a start and a list of intervals (seconds). */
const fromIntervals = (start: number, iv: number[]): number[] => iv.reduce((acc, d) => [...acc, (acc[acc.length - 1] as number) + d], [start]);

describe('RITA v5 statistics', () => {
  it('round3 rounds half away from zero (Go math.Round)', () => {
    expect(round3(0.0005)).toBe(0.001);
    expect(round3(-0.0005)).toBe(-0.001);
    expect(round3(0.7455)).toBe(0.746);
    expect(round3(0.9954)).toBe(0.995);
  });

  it('quartiles exclude the middle element for odd n (montanaflynn/stats)', () => {
    expect(quartiles([1, 2, 25, 42, 90, 299, 500, 1500, 4975])).toEqual({ q1: 13.5, q2: 90, q3: 1000 });
    expect(quartiles([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toEqual({ q1: 3, q2: 5.5, q3: 8 });
    expect(quartiles([98, 300, 98, 300, 98, 300, 98, 300, 98, 300])).toEqual({ q1: 98, q2: 199, q3: 300 });
  });

  it('median and MAD are unscaled', () => {
    expect(median([1, 299, 25, 4975, 90, 2, 42, 500, 1500])).toBe(90);
    expect(mad([1, 299, 25, 4975, 90, 2, 42, 500, 1500])).toBe(89);
    expect(mad([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).toBe(2.5);
  });
});

describe('RITA v5 timestamp score (TestGetTimestampScore)', () => {
  it('timestamps 1..10 → 1', () => {
    expect(timestampScore([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])?.score).toBe(1);
  });
  it('perfect 60 s intervals → 1', () => {
    expect(timestampScore(fromIntervals(1517338924, Array(9).fill(60)))?.score).toBe(1);
  });
  it('intervals 98,99,99,100,100,100,101,101,102 → 0.995', () => {
    const r = timestampScore([1517338924, 1517339022, 1517339121, 1517339220, 1517339320, 1517339420, 1517339520, 1517339621, 1517339722, 1517339824]);
    expect(r?.score).toBe(0.995);
    expect(r?.skew).toBe(0);
    expect(r?.mad).toBe(1);
  });
  it('alternating 98/300 → 0.746', () => {
    const r = timestampScore([1517338924, 1517339022, 1517339322, 1517339420, 1517339720, 1517339818, 1517340118, 1517340216, 1517340516, 1517340614, 1517340914]);
    expect(r?.score).toBe(0.746);
    expect(r?.mad).toBe(101);
  });
  it('random intervals 1,299,25,4975,90,2,42,500,1500 → 0.083', () => {
    const r = timestampScore([1517338924, 1517338925, 1517339224, 1517339249, 1517344224, 1517344314, 1517344316, 1517344358, 1517344858, 1517346358]);
    expect(r?.score).toBe(0.083);
    expect(r?.skew).toBeCloseTo(0.845, 3);
    expect(r?.mad).toBe(89);
  });
  it('fewer than 3 non-zero intervals or 4 timestamps → null', () => {
    expect(timestampScore(Array(9).fill(60))).toBeNull();
    expect(timestampScore([1517338924, 1517338925])).toBeNull();
    expect(timestampScore([])).toBeNull();
  });
});

describe('RITA v5 data size score (TestGetDataSizeScore)', () => {
  it('sizes 1..10 → 0.773', () => expect(dataSizeScore([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])?.score).toBe(0.773));
  it('nine × 60 → 1', () => expect(dataSizeScore(Array(9).fill(60))?.score).toBe(1));
  it('closely valued sizes → 0.995', () => expect(dataSizeScore([98, 99, 99, 100, 100, 100, 101, 101, 102])?.score).toBe(0.995));
  it('random sizes → 0.008', () => expect(dataSizeScore([524885, 1, 5000, 98654, 50, 41, 965842, 3])?.score).toBe(0.008));
  it('all zeros → 0.5', () => expect(dataSizeScore(Array(10).fill(0))?.score).toBe(0.5));
  it('< 3 sizes → null', () => expect(dataSizeScore([100, 200])).toBeNull());
});

describe('RITA v5 statistical score (TestCalculateStatisticalScore)', () => {
  it.each([
    [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 1, 1],
    [[-1, -2, -3, -4, -5, -6, -7, -8, -9, -10], 0, 0.5],
    [[7, 8, 7, 8, 7, 8, 7, 8, 7], 1, 1],
    [[1, 1, 2, 2, 2, 2], 1, 1],
    [[524885, 1, 5000, 98654, 50, 41, 965842, 3], 0, 0.008],
  ])('%j default %d → %d', (values, def, expected) => {
    expect(statisticalScore(values, def).score).toBe(expected);
  });
  it('bowley needs 3 values', () => expect(() => bowleySkewness([1, 2])).toThrow());
});

describe('RITA v5 beacon score (TestGetBeaconScore)', () => {
  it('weights 0.2/0.2/0.3/0.3 over 0.8/0.7/0.6/0.5 → 0.63', () => {
    expect(beaconScore({ ts: 0.8, ds: 0.7, dur: 0.6, hist: 0.5 }, { ts: 0.2, ds: 0.2, dur: 0.3, hist: 0.3 })).toBe(0.63);
  });
  it('other RITA vectors', () => {
    expect(beaconScore({ ts: 1, ds: 1, dur: 1, hist: 1 }, { ts: 0.1, ds: 0.2, dur: 0.3, hist: 0.4 })).toBe(1);
    expect(beaconScore({ ts: 0.1, ds: 0.2, dur: 0.3, hist: 0.4 })).toBe(0.25);
    expect(beaconScore({ ts: 0.1, ds: 0.2, dur: 0.3, hist: 0.4 }, { ts: 0.1, ds: 0.2, dur: 0.3, hist: 0.4 })).toBe(0.3);
    expect(beaconScore({ ts: 0.111, ds: 0.222, dur: 0.333, hist: 0.444 }, { ts: 0.173, ds: 0.325, dur: 0.299, hist: 0.203 })).toBe(0.281);
    expect(beaconScore({ ts: 0.25, ds: 1, dur: 1, hist: 1 }, { ts: 1, ds: 0, dur: 0, hist: 0 })).toBe(0.25);
  });
  it('rejects out-of-range scores and weights that do not sum to 1', () => {
    expect(() => beaconScore({ ts: -0.1, ds: 0.5, dur: 0.5, hist: 0.5 })).toThrow();
    expect(() => beaconScore({ ts: 1.1, ds: 0.5, dur: 0.5, hist: 0.5 })).toThrow();
    expect(() => beaconScore({ ts: 0.5, ds: 0.5, dur: 0.5, hist: 0.5 }, { ts: 0.3, ds: 0.3, dur: 0.3, hist: 0.3 })).toThrow();
    expect(() => beaconScore({ ts: 0.5, ds: 0.5, dur: 0.5, hist: 0.5 }, { ts: 0.3, ds: 0.3, dur: 0.2, hist: 0.1 })).toThrow();
  });
});

describe('RITA v5 duration score (TestGetDurationScore)', () => {
  const d0 = 1517338924;
  const d1 = d0 + 24 * 3600;
  it('full coverage → 1', () => expect(durationScore(d0, d1, d0, d1, 24, 24).score).toBe(1));
  it('full coverage, no run → 1', () => expect(durationScore(d0, d1, d0, d1, 6, 0).score).toBe(1));
  it('half coverage without a run → 0.5', () => {
    expect(durationScore(d0, d1, d0 + 12 * 3600, d1, 6, 0)).toEqual({ coverage: 0.5, consistency: 0, score: 0.5 });
    expect(durationScore(d0, d1, d0, d0 + 12 * 3600, 6, 0).score).toBe(0.5);
  });
  it('3/4 coverage → 0.75; run 12 → 1; run 6 → 0.5; too few bars → 0', () => {
    expect(durationScore(d0, d1, d0 + 6 * 3600, d1, 6, 0).score).toBe(0.75);
    expect(durationScore(d0, d1, d0 + 12 * 3600, d1, 12, 12).score).toBe(1);
    expect(durationScore(d0, d1, d0 + 12 * 3600, d0 + 18 * 3600, 6, 6)).toEqual({ coverage: 0.25, consistency: 0.5, score: 0.5 });
    expect(durationScore(d0, d1, d0 + 6 * 3600, d0 + 18 * 3600, 3, 1).score).toBe(0);
  });
  it('invalid input throws', () => {
    expect(() => durationScore(d0, d1, d0, d1, 12, 6, { minBars: 6, idealRun: 0 })).toThrow();
    expect(() => durationScore(1, 0, 0, 1, 6, 12)).toThrow();
  });
});

describe('RITA v5 histogram score (TestGetHistogramScore)', () => {
  const o = (bins: number, minBars: number) => ({ ...RITA_HISTOGRAM_DEFAULTS, bins, bimodalMinBars: minBars });
  it('simple number list → 0.478', () => {
    const ts = [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
    const r = histogramScore(1, 11, ts, o(10, 6));
    expect(r.histogram).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(r.totalBars).toBe(10);
    expect(r.longestRun).toBe(10);
    expect(r.score).toBe(0.478);
  });
  it('one per hour for 24 h → 1', () => {
    const ts = Array.from({ length: 24 }, (_, i) => 1517338924 + i * 3600);
    expect(histogramScore(1517338924, 1517338924 + 86400, ts, o(24, 11)).score).toBe(1);
  });
  it('closely valued timestamps → 0.064', () => {
    const r = histogramScore(98, 102, [98, 99, 99, 100, 100, 100, 101, 101, 102], o(8, 6));
    expect(r.histogram).toEqual([1, 0, 2, 0, 3, 0, 2, 1]);
    expect(r.longestRun).toBe(3);
    expect(r.score).toBe(0.064);
  });
  it('CV > 1 → 0', () => {
    const r = histogramScore(0, 1000000, [524885, 1, 5000, 98654, 50, 41, 965842, 3, 12001, 200400, 104001, 199999], o(10, 6));
    expect(r.histogram).toEqual([7, 2, 1, 0, 0, 1, 0, 0, 0, 1]);
    expect(r.longestRun).toBe(4);
    expect(r.score).toBe(0);
  });
  it('bimodal histogram → 1', () => {
    const r = histogramScore(0, 100, [1, 2, 3, 4, 15, 21, 22, 23, 24, 35, 41, 42, 43, 44, 55, 61, 62, 63, 64, 75, 81, 82, 83, 84, 95], o(10, 6));
    expect(r.cvScore).toBe(0.4);
    expect(r.score).toBe(1);
  });
  it('gaps and a wrap-around run → 0.028', () => {
    const r = histogramScore(0, 250, [10, 20, 100, 110, 110, 220], o(5, 6));
    expect(r.histogram).toEqual([2, 0, 3, 0, 1]);
    expect(r.longestRun).toBe(2);
    expect(r.score).toBe(0.028);
  });
  it('single bar → 0, even with a min-bars setting below 6', () => {
    const ts = Array.from({ length: 10 }, (_, i) => 1517338924 + i * 60);
    expect(histogramScore(1517338924, 1517338924 + 86400, ts, o(24, 11)).score).toBe(0);
    expect(histogramScore(1517338924, 1517338924 + 86400, ts, o(24, 1)).score).toBe(0);
  });
  it('counts give the same histogram as repeated timestamps', () => {
    const a = histogramScore(0, 250, [10, 20, 100, 110, 110, 220], o(5, 6));
    const b = histogramScore(0, 250, [10, 20, 100, 110, 220], o(5, 6), [1, 1, 1, 2, 1]);
    expect(b.histogram).toEqual(a.histogram);
    expect(b.score).toBe(a.score);
  });
  it('empty or invalid range throws', () => {
    expect(() => histogramScore(0, 10, [])).toThrow();
    expect(() => histogramScore(1, 0, [1, 2, 3])).toThrow();
    expect(() => histogramScore(1, 1, [1, 1, 1])).toThrow();
  });
});

describe('scoreSeries (no bytes: TS 0.5, hist 0.25, dur 0.25)', () => {
  it('a steady 60 s beacon over its span scores ≈ 1', () => {
    const ts = Array.from({ length: 31 }, (_, i) => 1000 + i * 60);
    const r = scoreSeries(ts, { min: 1000, max: 1000 + 1800 });
    expect(r?.score).toBe(1);
  });
  it('uses RITA weights with bytes, NO_BYTES_WEIGHTS without', () => {
    const ts = Array.from({ length: 31 }, (_, i) => 1000 + i * 60);
    const withBytes = scoreSeries(ts, { min: 1000, max: 2800 }, Array(31).fill(0));
    // DS of all zeros is 0.5 → 0.25·1 + 0.25·0.5 + 0.25 + 0.25 = 0.875
    expect(withBytes?.score).toBe(0.875);
    expect(NO_BYTES_WEIGHTS.ts + NO_BYTES_WEIGHTS.hist + NO_BYTES_WEIGHTS.dur).toBe(1);
  });
  it('null when not scorable', () => {
    expect(scoreSeries([1, 2, 3], { min: 0, max: 10 })).toBeNull();
    expect(scoreSeries([1, 2, 3, 4], { min: 10, max: 10 })).toBeNull();
  });
});
