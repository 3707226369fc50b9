/**
 * RITA v5-compatible beacon scoring (activecm/rita `analysis/beacons.go`), reimplemented so the
 * companion reproduces RITA's own unit-test values exactly (see test/detect/detectors/rita.test.ts).
 *
 * Statistics follow the Go `montanaflynn/stats` package RITA uses:
 * - median: middle value, or the mean of the two middle values for even n;
 * - quartiles: Q2 = median; Q1, Q3 = medians of the lower and upper halves, the middle element
 *   excluded from both halves when n is odd;
 * - MAD: median(|x − median|), unscaled.
 * Rounding: `round3` is Go's `math.Round(x*1000)/1000` (half away from zero); duration coverage and
 * consistency use `math.Ceil(x*1000)/1000` as RITA does.
 *
 * Without byte counts (Falco `connect` alerts carry none) the data-size part is dropped and its
 * weight moves to the timestamp part: RITA splits its weight evenly between per-connection
 * regularity (TS 0.25 + DS 0.25) and persistence over time (histogram 0.25 + duration 0.25). We keep
 * that 50/50 balance: TS 0.5, histogram 0.25, duration 0.25 ({@link NO_BYTES_WEIGHTS}). Spreading the
 * DS weight evenly (1/3 each) would let histogram and duration, which are both ≈ 1 for any steady
 * series with small per-bin counts, outweigh the interval regularity that actually separates a
 * beacon from a jittery poller.
 */

import { round3 } from './kit.js';

/** Go's math.Ceil(x*1000)/1000. */
function ceil3(x: number): number {
  return Math.ceil(x * 1000) / 1000;
}

function sortedCopy(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Median (mean of the two middle values for even n). Input need not be sorted. NaN when empty. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = sortedCopy(xs);
  const n = s.length;
  if (n % 2 === 1) return s[(n - 1) / 2] as number;
  return ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

export interface Quartiles {
  readonly q1: number;
  readonly q2: number;
  readonly q3: number;
}

/** montanaflynn/stats Quartile: halves exclude the middle element for odd n. */
export function quartiles(xs: readonly number[]): Quartiles {
  const s = sortedCopy(xs);
  const n = s.length;
  if (n === 0) return { q1: Number.NaN, q2: Number.NaN, q3: Number.NaN };
  const c1 = n % 2 === 0 ? n / 2 : (n - 1) / 2;
  const c2 = n % 2 === 0 ? n / 2 : c1 + 1;
  return { q1: median(s.slice(0, c1)), q2: median(s), q3: median(s.slice(c2)) };
}

/** Median absolute deviation about the median, unscaled. */
export function mad(xs: readonly number[]): number {
  const m = median(xs);
  return median(xs.map((x) => Math.abs(x - m)));
}

export interface SkewResult {
  readonly skew: number;
  readonly score: number;
}

/** Bowley skewness, forced to 0 unless IQR ≥ 10 and Q2 differs from Q1 and Q3; score = 1 − |skew|. */
export function bowleySkewness(xs: readonly number[]): SkewResult {
  if (xs.length < 3) throw new RangeError('bowley skewness needs at least 3 values');
  const { q1, q2, q3 } = quartiles(xs);
  const num = q1 + q3 - 2 * q2;
  const den = q3 - q1;
  const skew = den >= 10 && q2 !== q1 && q2 !== q3 ? num / den : 0;
  return { skew, score: 1 - Math.abs(skew) };
}

export interface MadResult {
  readonly mad: number;
  readonly score: number;
}

/** MAD score = (median − MAD)/median when median ≥ 1, else `defaultScore`; negatives and NaN → 0. */
export function madScore(xs: readonly number[], defaultScore: number): MadResult {
  if (xs.length === 0) throw new RangeError('MAD needs at least one value');
  const m = median(xs);
  const d = mad(xs);
  let score = defaultScore;
  if (m >= 1) score = (m - d) / m;
  if (score < 0 || Number.isNaN(score)) score = 0;
  return { mad: d, score };
}

export interface StatScore {
  readonly score: number;
  readonly skew: number;
  readonly mad: number;
  /** Median of the values (the interval, for timestamps). */
  readonly median: number;
}

/** RITA calculateStatisticalScore: round3((skewScore + madScore)/2). */
export function statisticalScore(values: readonly number[], defaultMadScore: number): StatScore {
  const sk = bowleySkewness(values);
  const md = madScore(values, defaultMadScore);
  return { score: round3((sk.score + md.score) / 2), skew: sk.skew, mad: md.mad, median: median(values) };
}

/**
 * RITA getTimestampScore: timestamps in seconds (any order, duplicates allowed); deltas of the
 * sorted list with zeros dropped; needs ≥ 4 timestamps and ≥ 3 non-zero deltas (else null).
 */
export function timestampScore(tsSeconds: readonly number[]): StatScore | null {
  if (tsSeconds.length < 4) return null;
  const s = sortedCopy(tsSeconds);
  const deltas: number[] = [];
  for (let i = 0; i + 1 < s.length; i++) {
    const d = (s[i + 1] as number) - (s[i] as number);
    if (d > 0) deltas.push(d);
  }
  if (deltas.length < 3) return null;
  return statisticalScore(deltas, 1);
}

/** RITA getDataSizeScore: byte counts (zeros kept), MAD default score 0; needs ≥ 3 values. */
export function dataSizeScore(bytes: readonly number[]): StatScore | null {
  if (bytes.length < 3) return null;
  return statisticalScore(bytes, 0);
}

export interface HistogramOptions {
  /** Bimodal bin size as a fraction of the tallest bar (RITA HistModeSensitivity, default 0.05). */
  readonly modeSensitivity: number;
  /** Bars thrown out as outliers in the bimodal fit (RITA HistBimodalOutlierRemoval, default 1). */
  readonly bimodalOutlierRemoval: number;
  /** Non-empty bars needed for the bimodal fit (RITA HistBimodalMinHours, default 11; < 6 → 11). */
  readonly bimodalMinBars: number;
  /** Number of bins over the range (RITA: 24, one per hour of a day). */
  readonly bins: number;
}

export const RITA_HISTOGRAM_DEFAULTS: HistogramOptions = { modeSensitivity: 0.05, bimodalOutlierRemoval: 1, bimodalMinBars: 11, bins: 24 };

export interface HistogramResult {
  readonly histogram: readonly number[];
  /** Bar height bucket → number of bars in it. */
  readonly freqCount: ReadonlyMap<number, number>;
  readonly totalBars: number;
  /** Longest run of non-empty bins, wrapping around from the end to the start. */
  readonly longestRun: number;
  readonly cvScore: number;
  readonly bimodalScore: number;
  /** max(cvScore, bimodalScore). */
  readonly score: number;
}

/** RITA computeHistogramBins: numBins + 1 evenly spaced edges, first and last set exactly. */
export function histogramEdges(start: number, end: number, numBins: number): number[] {
  if (numBins <= 0 || end <= start) throw new RangeError('invalid histogram range or bin count');
  const step = (end - start) / numBins;
  const edges = new Array<number>(numBins + 1);
  edges[0] = start;
  for (let i = 1; i < numBins; i++) edges[i] = start + i * step;
  edges[numBins] = end;
  return edges;
}

/**
 * RITA createHistogram + getFrequencyCounts + CV and bimodal scores. `counts[i]` (optional) is the
 * multiplicity of `ts[i]` (the detector stores each second once with a count).
 */
export function histogramScore(start: number, end: number, ts: readonly number[], opts: HistogramOptions = RITA_HISTOGRAM_DEFAULTS, counts?: readonly number[]): HistogramResult {
  if (ts.length === 0) throw new RangeError('histogram needs at least one timestamp');
  const edges = histogramEdges(start, end, opts.bins);
  const order = ts.map((_, i) => i).sort((a, b) => (ts[a] as number) - (ts[b] as number));
  const hist = new Array<number>(edges.length - 1).fill(0);
  let cur = 0;
  let next = edges[1] as number;
  for (const i of order) {
    const t = ts[i] as number;
    const c = counts?.[i] ?? 1;
    if (t < next) {
      hist[cur] = (hist[cur] as number) + c;
      continue;
    }
    for (let j = cur + 1; j < edges.length - 1; j++) {
      cur = j;
      next = edges[j + 1] as number;
      if (t < next) break;
    }
    hist[cur] = (hist[cur] as number) + c;
  }
  // frequency counts, total bars, longest wrap-around run
  let totalBars = 0;
  let largest = 0;
  for (const h of hist) {
    if (h > 0) totalBars++;
    if (h > largest) largest = h;
  }
  const binSize = Math.ceil(largest * opts.modeSensitivity);
  const freqCount = new Map<number, number>();
  let longestRun = 0;
  let run = 0;
  for (let i = 0; i < hist.length * 2; i++) {
    const f = hist[i % hist.length] as number;
    if (f > 0) run++;
    else {
      if (run > longestRun) longestRun = run;
      run = 0;
    }
    if (i < hist.length && f > 0) {
      const bin = Math.floor(f / binSize) * binSize;
      freqCount.set(bin, (freqCount.get(bin) ?? 0) + 1);
    }
  }
  if (run > longestRun) longestRun = run;
  if (longestRun > hist.length) longestRun = hist.length;

  // coefficient of variation score
  const total = hist.reduce((a, b) => a + b, 0);
  const mean = total / hist.length;
  let ss = 0;
  for (const h of hist) ss += (h - mean) ** 2;
  const cv = Math.sqrt(ss / hist.length) / Math.abs(mean);
  let cvScore = cv > 1 ? 0 : round3(1 - cv);
  if (cvScore > 1) cvScore = 1;

  // bimodal fit score
  const minBars = opts.bimodalMinBars < 6 ? 11 : opts.bimodalMinBars;
  let fit = 0;
  if (totalBars >= minBars) {
    let l1 = 0;
    let l2 = 0;
    for (const v of freqCount.values()) {
      if (v > l1) {
        l2 = l1;
        l1 = v;
      } else if (v > l2) l2 = v;
    }
    fit = (l1 + l2) / Math.max(totalBars - opts.bimodalOutlierRemoval, 1);
  }
  let bimodalScore = round3(fit);
  if (bimodalScore > 1) bimodalScore = 1;
  return { histogram: hist, freqCount, totalBars, longestRun, cvScore, bimodalScore, score: Math.max(cvScore, bimodalScore) };
}

export interface DurationOptions {
  /** Non-empty bins needed (RITA DurMinHours, default 6). */
  readonly minBars: number;
  /** Run length that scores 1 (RITA DurIdealNumberOfConsistentHours, default 12). */
  readonly idealRun: number;
}

export const RITA_DURATION_DEFAULTS: DurationOptions = { minBars: 6, idealRun: 12 };

export interface DurationResult {
  readonly coverage: number;
  readonly consistency: number;
  readonly score: number;
}

/** RITA getDurationScore: max(coverage of the range, longest run / ideal), each ceil3 and capped at 1. */
export function durationScore(
  datasetMin: number,
  datasetMax: number,
  histMin: number,
  histMax: number,
  totalBars: number,
  longestRun: number,
  opts: DurationOptions = RITA_DURATION_DEFAULTS,
): DurationResult {
  if (opts.minBars < 1 || opts.idealRun < 1 || datasetMax <= datasetMin || histMax <= histMin) {
    throw new RangeError('invalid input for duration score');
  }
  if (totalBars < opts.minBars) return { coverage: 0, consistency: 0, score: 0 };
  const coverage = Math.min(1, ceil3((histMax - histMin) / (datasetMax - datasetMin)));
  const consistency = Math.min(1, ceil3(longestRun / opts.idealRun));
  return { coverage, consistency, score: Math.max(coverage, consistency) };
}

export interface Weights {
  readonly ts: number;
  readonly ds: number;
  readonly dur: number;
  readonly hist: number;
}

export const RITA_WEIGHTS: Weights = { ts: 0.25, ds: 0.25, dur: 0.25, hist: 0.25 };
/** No byte counts: DS dropped, its weight moved to TS (see the module comment). */
export const NO_BYTES_WEIGHTS: Weights = { ts: 0.5, ds: 0, dur: 0.25, hist: 0.25 };

/** Why weights are unusable, or null (each in [0,1], sum 1 within 1e-9). */
export function checkWeights(w: Weights): string | null {
  const ws = [w.ts, w.ds, w.dur, w.hist];
  if (ws.some((x) => !(x >= 0 && x <= 1))) return 'weights must be between 0 and 1';
  if (Math.abs(ws.reduce((a, b) => a + b, 0) - 1) > 1e-9) return 'weights must sum to 1';
  return null;
}

/** RITA getBeaconScore: round3 of the weighted sum; subscores must be in [0,1]. */
export function beaconScore(s: { ts: number; ds: number; dur: number; hist: number }, w: Weights = RITA_WEIGHTS): number {
  for (const x of [s.ts, s.ds, s.dur, s.hist]) if (!(x >= 0 && x <= 1)) throw new RangeError('scores must be between 0 and 1');
  const err = checkWeights(w);
  if (err) throw new RangeError(err);
  return round3(s.ts * w.ts + s.ds * w.ds + s.dur * w.dur + s.hist * w.hist);
}

export interface SeriesScore {
  readonly score: number;
  readonly ts: StatScore;
  readonly ds: StatScore | null;
  readonly hist: HistogramResult;
  readonly dur: DurationResult;
}

export interface ScoreSeriesOptions {
  readonly weights?: Weights;
  readonly histogram?: HistogramOptions;
  readonly duration?: DurationOptions;
}

/**
 * Score one series like RITA's analyzeBeacon: `ts` in whole seconds (duplicates allowed, or given
 * once with `counts`), `range` the dataset time range in seconds, `bytes` per connection or null.
 * With bytes null, the DS weight must be 0 (default: {@link NO_BYTES_WEIGHTS}). Null when the
 * series cannot be scored (fewer than 4 timestamps or 3 non-zero intervals, empty range).
 */
export function scoreSeries(
  ts: readonly number[],
  range: { readonly min: number; readonly max: number },
  bytes: readonly number[] | null = null,
  opts: ScoreSeriesOptions = {},
  counts?: readonly number[],
): SeriesScore | null {
  if (range.max <= range.min) return null;
  const t = timestampScore(ts);
  if (!t) return null;
  const ds = bytes ? dataSizeScore(bytes) : null;
  const weights = opts.weights ?? (bytes ? RITA_WEIGHTS : NO_BYTES_WEIGHTS);
  if (!ds && weights.ds !== 0) return null;
  const hist = histogramScore(range.min, range.max, ts, opts.histogram ?? RITA_HISTOGRAM_DEFAULTS, counts);
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of ts) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const dur = durationScore(range.min, range.max, lo, hi, hist.totalBars, hist.longestRun, opts.duration ?? RITA_DURATION_DEFAULTS);
  const score = beaconScore({ ts: t.score, ds: ds?.score ?? 0, dur: dur.score, hist: hist.score }, weights);
  return { score, ts: t, ds, hist, dur };
}
