/**
 * C2 beaconing (T1071, T1571, T1573): RITA v5's beacon score per series of outbound `connect`
 * times, keyed by (container or image, executable, destination domain or IP, port).
 *
 * - Window: connection times older than `window` (event time) are dropped; RITA's dataset range
 *   becomes the series' own observed span inside the window, `[max(now − window, first), now]`, so a
 *   beacon is scored from its first minutes instead of waiting hours for a 24 h dataset to fill
 *   (histogram: 24 bins over that span; duration: coverage of it).
 * - Timestamps are whole seconds (as RITA); each second is stored once with a count. A series keeps
 *   at most `max_points` seconds, the most recent (older ones dropped and counted); the connection
 *   count for the strobe test is kept exactly in 24 per-window buckets. All series together keep at
 *   most `max_total_points` seconds: beyond that the least recently used series are evicted (counted).
 * - Scoring runs when the series has ≥ `min_points` unique seconds, is not a strobe, and
 *   `rescore_every` new seconds arrived since the last score: never on every connect.
 * - One finding per series per `renotify` period when score ≥ `threshold`.
 * No byte counts: TS 0.5, histogram 0.25, duration 0.25 (see rita.ts).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the series
 * (LRU, bounded per series and in total, evictions counted).
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, num, obj, oneOf, str, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { BoundedMap, byTime, cString, compact, destOf, exeOf, laterNs, msToNs, raise, retain, whereOf } from './kit.js';
import { checkWeights, scoreSeries, type SeriesScore } from './rita.js';
import { DEST, IMAGE } from '../../enrich/keys.js';

export const BEACON_DETECTOR_ID = 'beacon';
export const BEACON_RULE = 'C2 beaconing: periodic outbound connections';
export const BEACON_MITRE = ['T1071', 'T1571', 'T1573', 'mitre_command_and_control'] as const;

export const beaconSettingsSpec = obj('C2 beaconing: RITA v5 beacon score per (workload, executable, destination, port).', {
  enabled: bool('Run this detector.', true),
  window: duration('Sliding window of connection times per series (RITA: 24 h).', 86_400_000, { min: 60_000 }),
  group_by: oneOf('Series workload key: `container` (container id) or `image` (image repository; replicas pooled).', ['container', 'image'], 'container'),
  threshold: num('Beacon score (0..1) at or above which a finding is emitted (0.95: all beacons with ≤ ±10% jitter, about half with ±30%; see docs).', 0.95, { min: 0, max: 1 }),
  high_score: num('Score at or above which the priority is raised one step.', 0.98, { min: 0, max: 1 }),
  priority: oneOf('Priority of a finding at the threshold.', PRIORITIES, 'Warning', { caseInsensitive: true }),
  min_points: int('Unique connection seconds needed before scoring (RITA: 4).', 4, { min: 4 }),
  strobe: int('Connections in the window at or above which a series is a strobe and not scored (RITA: 86400).', 86_400, { min: 10 }),
  max_series: int('Series tracked at once (least recently used evicted, counted).', 10_000, { min: 1 }),
  max_points: int('Unique connection seconds kept per series (the most recent; older dropped, counted).', 1_440, { min: 16 }),
  max_total_points: int('Unique connection seconds kept across all series (≈ 16 B each); beyond it the least recently used series are evicted, counted.', 1_000_000, { min: 16 }),
  skip_dest_classes: list('Destination classes (enrichment `dest.class`) never scored; loopback addresses are always skipped.', str('Class name.', ''), ['loopback', 'link_local', 'multicast']),
  rescore_every: int('Rescore a series after this many new unique connection seconds.', 5, { min: 1 }),
  renotify: duration('At most one finding per series per this period.', 3_600_000, { min: 0 }),
  weights: obj('Score weights (must sum to 1). Falco connect alerts carry no bytes, so data size is not scored.', {
    ts: num('Timestamp (interval regularity) weight.', 0.5, { min: 0, max: 1 }),
    hist: num('Histogram (flatness over the span) weight.', 0.25, { min: 0, max: 1 }),
    dur: num('Duration (coverage / consistency) weight.', 0.25, { min: 0, max: 1 }),
  }),
});

export type BeaconSettings = Infer<typeof beaconSettingsSpec>;
export const BEACON_DEFAULTS = defaults(beaconSettingsSpec) as unknown as BeaconSettings;

interface Series {
  readonly key: string;
  /** Unique seconds, ascending. */
  secs: number[];
  cnts: number[];
  /** Exact connection counts per bucket (window / 24) for the strobe test. */
  buckets: Map<number, number>;
  newSince: number;
  scoredOnce: boolean;
  lastFindingNs: bigint | null;
  /** First signal kept in the window plus the latest few (evidence). */
  first: Signal | null;
  recent: Signal[];
  lastNs: bigint;
}

export interface BeaconState {
  readonly series: BoundedMap<string, Series>;
  /** Connection seconds dropped by the per-series cap (and by the total when one series holds it all). */
  droppedPoints: number;
  /** Unique connection seconds held by all series (bounded by `max_total_points`). */
  points: number;
  lastSweepNs: bigint;
  /** Times a series was scored (for tests and metrics). */
  scored: number;
}

const RECENT = 4;

function insertSorted(s: Series, sec: number): boolean {
  const a = s.secs;
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((a[mid] as number) < sec) lo = mid + 1;
    else hi = mid;
  }
  if (a[lo] === sec) {
    s.cnts[lo] = (s.cnts[lo] as number) + 1;
    return false;
  }
  a.splice(lo, 0, sec);
  s.cnts.splice(lo, 0, 1);
  return true;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');
}

export function createBeaconDetector(overrides: Partial<BeaconSettings> = {}): Detector<BeaconState> {
  const cfg: BeaconSettings = { ...BEACON_DEFAULTS, ...overrides, weights: { ...BEACON_DEFAULTS.weights, ...(overrides.weights ?? {}) } };
  const weights = { ts: cfg.weights.ts, ds: 0, hist: cfg.weights.hist, dur: cfg.weights.dur };
  const werr = checkWeights(weights);
  if (werr) throw new RangeError(`detectors.beacon.weights: ${werr}`);
  const windowNs = msToNs(cfg.window);
  const windowSec = cfg.window / 1000;
  const bucketSec = Math.max(1, windowSec / 24);

  function prune(s: Series, nowNs: bigint): void {
    const cutoffSec = Number((nowNs - windowNs) / 1_000_000_000n);
    let i = 0;
    while (i < s.secs.length && (s.secs[i] as number) < cutoffSec) i++;
    if (i > 0) {
      s.secs.splice(0, i);
      s.cnts.splice(0, i);
    }
    const cutoffBucket = Math.floor(cutoffSec / bucketSec);
    for (const b of s.buckets.keys()) if (b < cutoffBucket) s.buckets.delete(b);
    const cutoffNs = nowNs - windowNs;
    if (s.first && s.first.timeNs < cutoffNs) s.first = null;
    s.recent = s.recent.filter((x) => x.timeNs >= cutoffNs);
  }

  /** Evict least recently used series until the total fits; `cur` (just touched, newest) is trimmed only when alone. */
  function fitTotal(st: BeaconState, cur: Series): void {
    while (st.points > cfg.max_total_points && st.series.size > 1 && st.series.oldest() !== cur) st.series.evictOldest();
    const over = st.points - cfg.max_total_points;
    if (over > 0 && cur.secs.length > 0) {
      const drop = Math.min(over, cur.secs.length);
      cur.secs.splice(0, drop);
      cur.cnts.splice(0, drop);
      st.points -= drop;
      st.droppedPoints += drop;
    }
  }

  function seriesKey(sig: Signal): string | null {
    const d = destOf(sig);
    if (!d.host || d.port === null) return null;
    if (d.ip !== null && isLoopback(d.ip)) return null;
    const cls = cString(sig, DEST.class);
    if (cls !== null && cfg.skip_dest_classes.includes(cls)) return null;
    const workload =
      cfg.group_by === 'image'
        ? (sig.imageRepository ?? cString(sig, IMAGE.repository) ?? sig.containerId ?? 'host')
        : (sig.containerId ?? 'host');
    return `${workload}|${exeOf(sig)}|${d.host}|${d.port}`;
  }

  function finding(s: Series, r: SeriesScore, sig: Signal): Finding {
    const d = destOf(sig);
    const intel = cString(sig, DEST.intel);
    let priority: Priority = cfg.priority;
    if (r.score >= cfg.high_score) priority = raise(priority, 1);
    if (intel) priority = 'Critical';
    const total = s.cnts.reduce((a, b) => a + b, 0);
    const interval = r.ts.median;
    const evidence = [...(s.first && !s.recent.includes(s.first) ? [s.first] : []), ...s.recent].sort(byTime);
    const msg =
      `${exeOf(sig)} in ${whereOf(sig)} connects to ${d.host}:${d.port} every ~${Math.round(interval)}s ` +
      `(jitter ${Math.round(r.ts.mad)}s MAD, ${total} connections, beacon score ${r.score})` +
      (intel ? `; destination on intel list ${intel}` : '');
    return {
      detector: BEACON_DETECTOR_ID,
      rule: BEACON_RULE,
      priority,
      score: r.score,
      message: msg,
      mitre: BEACON_MITRE,
      key: `${BEACON_DETECTOR_ID}|${s.key}`,
      evidence,
      fields: compact({
        'beacon.score': r.score,
        'beacon.interval_s': interval,
        'beacon.jitter_s': r.ts.mad,
        'beacon.count': total,
        'beacon.unique_times': s.secs.length,
        'beacon.ts_score': r.ts.score,
        'beacon.hist_score': r.hist.score,
        'beacon.dur_score': r.dur.score,
        'beacon.dest': d.host,
        'beacon.dest_ip': d.ip,
        'beacon.dest_port': d.port,
        'beacon.exe': exeOf(sig),
        'beacon.first_seen': s.secs[0] !== undefined ? new Date((s.secs[0] as number) * 1000).toISOString() : null,
        'dest.intel': intel,
      }),
      timeNs: sig.timeNs,
    };
  }

  return {
    id: BEACON_DETECTOR_ID,
    consumes: ['connect'],
    init: () => {
      const st: BeaconState = {
        // A series leaving the map (LRU, sweep, budget) gives its points back to the total.
        series: new BoundedMap<string, Series>(cfg.max_series, (s) => (st.points -= s.secs.length)),
        droppedPoints: 0,
        points: 0,
        lastSweepNs: 0n,
        scored: 0,
      };
      return st;
    },
    evictions: (st) => st.series.evicted + st.droppedPoints,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      if (sig.kind !== 'connect') return none;
      const now = laterNs(nowNs, sig.timeNs);
      // periodic sweep of idle series (aged out, not counted as evictions)
      if (now - st.lastSweepNs > windowNs / 24n) {
        st.series.sweep((s) => s.lastNs < now - windowNs);
        st.lastSweepNs = now;
      }
      if (sig.timeNs < now - windowNs) return none; // too old for the window
      const key = seriesKey(sig);
      if (key === null) return none;
      let s = st.series.touch(key);
      if (!s) {
        s = { key, secs: [], cnts: [], buckets: new Map(), newSince: 0, scoredOnce: false, lastFindingNs: null, first: null, recent: [], lastNs: sig.timeNs };
        st.series.set(key, s);
      }
      const held = s.secs.length;
      prune(s, now);
      const sec = Number(sig.timeNs / 1_000_000_000n);
      if (insertSorted(s, sec)) s.newSince++;
      const b = Math.floor(sec / bucketSec);
      s.buckets.set(b, (s.buckets.get(b) ?? 0) + 1);
      if (sig.timeNs > s.lastNs) s.lastNs = sig.timeNs;
      const kept = retain(sig); // evidence only: no full alert per kept signal
      if (!s.first) s.first = kept;
      s.recent.push(kept);
      if (s.recent.length > RECENT) s.recent.shift();
      if (s.secs.length > cfg.max_points) {
        const drop = s.secs.length - cfg.max_points;
        s.secs.splice(0, drop);
        s.cnts.splice(0, drop);
        st.droppedPoints += drop;
      }
      st.points += s.secs.length - held;
      if (st.points > cfg.max_total_points) fitTotal(st, s);
      if (s.secs.length < cfg.min_points) return none;
      if (s.scoredOnce && s.newSince < cfg.rescore_every) return none;
      let inWindow = 0;
      for (const c of s.buckets.values()) inWindow += c;
      if (inWindow >= cfg.strobe) return none;
      s.newSince = 0;
      s.scoredOnce = true;
      st.scored++;
      const nowSec = Number(now / 1_000_000_000n);
      const first = s.secs[0] as number;
      const r = scoreSeries(s.secs, { min: Math.max(nowSec - windowSec, first), max: Math.max(nowSec, first + 1) }, null, { weights }, s.cnts);
      if (!r || r.score < cfg.threshold) return none;
      if (s.lastFindingNs !== null && sig.timeNs - s.lastFindingNs < msToNs(cfg.renotify)) return none;
      s.lastFindingNs = sig.timeNs;
      return { state: st, findings: [finding(s, r, sig)] };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const beaconModule = detectorModule({ id: BEACON_DETECTOR_ID, settings: beaconSettingsSpec, quietInCi: true, create: createBeaconDetector });
