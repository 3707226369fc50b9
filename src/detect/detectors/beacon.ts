/**
 * C2 beaconing (T1071, T1571, T1573): RITA v5's beacon score per series of outbound `connect`
 * times, keyed by (container or image, executable, destination domain or IP, port).
 *
 * Scope, as RITA and Elastic do it: by default only series whose destination **leaves the
 * cluster** are scored: public addresses, and private ones outside the cluster's pod, service and
 * node networks (src/detect/cluster.ts: config, `KUBERNETES_SERVICE_HOST`, the node's interfaces)
 * and outside the pod prefixes learned from the client side of container connects (and
 * `k8s.pod.ip`), summarised to `/learn_prefix_v4` and `/learn_prefix_v6` (bounded, LRU). Cluster
 * destinations are scored when opted in (`scope.internal`, or per namespace, image or CIDR).
 * Loopback and `skip_dest_classes` never are.
 *
 * Series:
 * - Window: connection times older than `window` (event time) are dropped; RITA's dataset range
 *   becomes the series' own observed span inside the window, `[max(now − window, first), now]`.
 * - Timestamps are whole seconds (as RITA); each second is stored once with a count. A series keeps
 *   at most `max_points` seconds, the most recent (older ones dropped and counted); the connection
 *   count for the strobe test is kept exactly in 24 per-window buckets. All series together keep at
 *   most `max_total_points` seconds: beyond that the least recently used series are evicted (counted).
 * - Scoring runs when the series has ≥ `min_points` unique seconds (16: fewer intervals give
 *   quartiles and MAD too noisy to tell a beacon from a short burst), is not a strobe, does not
 *   make several connections in most of its seconds (a download burst, not a beat), and
 *   `rescore_every` new seconds arrived since the last score.
 * No byte counts: TS 0.5, histogram 0.25, duration 0.25 (see rita.ts).
 *
 * Priority of a series at or above `threshold` (docs/detections-beacon-escape-image.md):
 * - the destination was in the image's egress baseline from its learning period
 *   (`dest.learning` / `dest.new_for_image: false` on the series' first connect, or another series
 *   of the same program on the same port and cadence that was: IP rotation behind one name):
 *   `known_priority` (Notice): pollers, update checks, SaaS APIs;
 * - a destination that became new for the image after its learning period, or unknown (no
 *   baseline): `priority` (Warning), + 1 at `high_score`, + 1 on a port outside `standard_ports`;
 * - + 1 when the same container also showed suspicious signals within the window (tmpfs exec,
 *   shell on a socket, escape indicators, network tools, a disguising prctl rename) or the program
 *   runs from tmpfs / memfd or under a kernel-thread name;
 * - `dest.intel` set: Critical.
 * Scraper fan-out: when at least `fanout_min_targets` series of one program share the cadence
 * (± `fanout_tolerance`), they are one `fanout_priority` (Informational) finding for the program,
 * never one per target (intel-listed destinations excepted).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the series
 * (LRU, bounded per series and in total, evictions counted), the program groups, the learned pod
 * prefixes and the suspicious-signal marks per container (all bounded).
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, cidrs, defaults, duration, int, list, num, obj, oneOf, str, strings, type Infer } from '../../config/dsl.js';
import { parseIp, type Ip } from '../../net/address.js';
import { cidrContains, type Cidr } from '../../net/cidr.js';
import { addressClass, ClusterNetworks, type DetectorEnv, inPrefix, learnedPrefix, NO_ENV } from '../cluster.js';
import { compileGlobs } from '../suppress.js';
import { type Detector, detectorModule, type Finding, type Signal, type SignalKind } from '../types.js';
import { basename, BoundedMap, byTime, cBool, cString, compact, destOf, exeOf, isDisguiseName, isKernelThreadName, keyString, laterNs, msToNs, raise, retain, unusualExeLocation, whereOf, RENOTIFY_DEPRECATED } from './kit.js';
import { checkWeights, median, scoreSeries, type SeriesScore } from './rita.js';
import { seriesOwner } from '../../cluster/series.js';
import { DEST, IMAGE } from '../../enrich/keys.js';

export const BEACON_DETECTOR_ID = 'beacon';
export const BEACON_RULE = 'C2 beaconing: periodic outbound connections';
export const BEACON_FANOUT_RULE = 'Periodic polling: one program contacts many destinations on one cadence';
export const BEACON_MITRE = ['T1071', 'T1571', 'T1573', 'mitre_command_and_control'] as const;

export const beaconSettingsSpec = obj('C2 beaconing: RITA v5 beacon score per (workload, executable, destination, port), for destinations that leave the cluster.', {
  enabled: bool('Run this detector.', true),
  window: duration('Sliding window of connection times per series (RITA: 24 h).', 86_400_000, { min: 60_000 }),
  group_by: oneOf('Series workload key: `container` (container id) or `image` (image repository; replicas pooled).', ['container', 'image'], 'container'),
  threshold: num('Beacon score (0..1) at or above which a series is a beacon. 0.92 catches ±30 % jitter (RITA\'s 0.95 misses part of it) and keeps aperiodic traffic below; see docs.', 0.92, { min: 0, max: 1 }),
  high_score: num('Score at or above which the priority of a new or unknown destination is raised one step.', 0.98, { min: 0, max: 1 }),
  priority: oneOf('Priority of a beacon to a destination that became new for the image after its learning period (or with no egress baseline).', PRIORITIES, 'Warning', { caseInsensitive: true }),
  known_priority: oneOf('Priority of a beacon to a destination the image has had since its learning period (pollers, update checks).', PRIORITIES, 'Notice', { caseInsensitive: true }),
  standard_ports: list('Destination ports that do not raise the priority of a new destination.', int('Port.', 443, { min: 0, max: 65535 }), [53, 80, 123, 443]),
  min_points: int('Unique connection seconds needed before scoring (RITA: 4 over a day; 16 in a stream, where the span is short).', 16, { min: 4 }),
  strobe: int('Connections in the window at or above which a series is a strobe and not scored (RITA: 86400).', 86_400, { min: 10 }),
  max_series: int('Series tracked at once (least recently used evicted, counted).', 10_000, { min: 1 }),
  max_points: int('Unique connection seconds kept per series (the most recent; older dropped, counted).', 1_440, { min: 16 }),
  max_total_points: int('Unique connection seconds kept across all series (≈ 16 B each); beyond it the least recently used series are evicted, counted.', 1_000_000, { min: 16 }),
  skip_dest_classes: list('Destination classes never scored; loopback is always skipped.', str('Class name.', ''), ['loopback', 'link_local', 'multicast', 'cloud_metadata']),
  rescore_every: int('Rescore a series after this many new unique connection seconds.', 5, { min: 1 }),
  fanout_min_targets: int('A program polling at least this many destinations on one cadence is one informational fan-out finding, not a beacon per target.', 4, { min: 2 }),
  fanout_tolerance: num('Relative difference of median intervals that still counts as one cadence.', 0.2, { min: 0, max: 1 }),
  fanout_priority: oneOf('Priority of the fan-out finding.', PRIORITIES, 'Informational', { caseInsensitive: true }),
  scope: obj('Which destinations are scored (cluster networks: detect.cluster in the config, plus learned pod prefixes).', {
    internal: bool('Also score destinations inside the cluster (pod, service and node networks) for every workload.', false),
    internal_namespaces: strings('Namespaces (globs) whose in-cluster destinations are scored too.'),
    internal_images: strings('Images (globs on the repository or repository:tag) whose in-cluster destinations are scored too.'),
    internal_cidrs: cidrs('In-cluster destination CIDRs that are scored anyway.'),
    learn: bool('Learn pod networks from the client address of container connects and k8s.pod.ip / container.ip.', true),
    learn_prefix_v4: int('IPv4 prefix length a learned (private) pod address is widened to.', 16, { min: 8, max: 32 }),
    learn_prefix_v6: int('IPv6 prefix length a learned (unique-local) pod address is widened to.', 48, { min: 16, max: 128 }),
    max_learned_prefixes: int('Learned prefixes kept (least recently seen evicted, counted).', 64, { min: 1 }),
  }),
  renotify: RENOTIFY_DEPRECATED,
  weights: obj('Score weights (must sum to 1). Falco connect alerts carry no bytes, so data size is not scored.', {
    ts: num('Timestamp (interval regularity) weight.', 0.5, { min: 0, max: 1 }),
    hist: num('Histogram (flatness over the span) weight.', 0.25, { min: 0, max: 1 }),
    dur: num('Duration (coverage / consistency) weight.', 0.25, { min: 0, max: 1 }),
  }),
});

export type BeaconSettings = Infer<typeof beaconSettingsSpec>;
export const BEACON_DEFAULTS = defaults(beaconSettingsSpec) as unknown as BeaconSettings;

/** Where the destination of a series stands in the image's egress baseline (its first connect). */
type Origin = 'known' | 'new' | 'unknown';

interface Series {
  readonly key: string;
  /** Program group: workload + executable (fan-out). */
  readonly group: string;
  readonly port: number | null;
  /** Set by the first local connect (null: only other nodes' points so far, pooled by image). */
  origin: Origin | null;
  /** Unique seconds, ascending. */
  secs: number[];
  cnts: number[];
  /** Exact connection counts per bucket (window / 24) for the strobe test. */
  buckets: Map<number, number>;
  /** Median of the recent intervals (s), 0 until known. */
  interval: number;
  newSince: number;
  scoredOnce: boolean;
  lastFindingNs: bigint | null;
  /** Priority rank of the last finding (internal rate limit: a rise goes out at once). */
  lastRank: number;
  /** First signal kept in the window plus the latest few (evidence). */
  first: Signal | null;
  recent: Signal[];
  lastNs: bigint;
  /**
   * Pooled by image across nodes (`group_by: image` with a cluster store; absent otherwise):
   * other nodes' connection counts per second (each node's count only grows: the maximum seen),
   * included in `secs` / `cnts`.
   */
  remote?: Map<number, number>;
  /** Pooled: contributing nodes (this one included) → the latest second each contributed. */
  nodes?: Map<string, number>;
}

interface Group {
  keys: string[];
  /** Fan-out seen: the shared cadence (s) and when. */
  fanoutInterval: number;
  fanoutNs: bigint | null;
}

export interface BeaconState {
  readonly series: BoundedMap<string, Series>;
  readonly groups: BoundedMap<string, Group>;
  /** Learned pod prefixes (CIDR text) → last seen. */
  readonly learned: BoundedMap<string, bigint>;
  /** Container (or `host`) → suspicious signals seen (kind → last time). */
  readonly suspects: BoundedMap<string, Map<string, bigint>>;
  /** Connection seconds dropped by the per-series cap (and by the total when one series holds it all). */
  droppedPoints: number;
  /** Unique connection seconds held by all series (bounded by `max_total_points`). */
  points: number;
  lastSweepNs: bigint;
  /** Times a series was scored (for tests and metrics). */
  scored: number;
  /** Connects not scored because the destination is inside the cluster. */
  internal: number;
}

const RECENT = 4;
/** Median connections per unique second at or above which a series is a burst (downloads), not a beacon. */
const BURST_PER_SECOND = 3;
const MAX_GROUP_KEYS = 256;
/** Contributing nodes remembered per pooled series (the least recently contributing dropped). */
const MAX_NODES = 64;
/** Other nodes' points ahead of the detection clock by more than this are dropped (counted). */
const REMOTE_AHEAD_SEC = 3600;
/** Repeat findings of an unchanged series at most this often (internal; the engine's notify policy decides what is sent). */
const REPEAT_NS = 3_600_000_000_000n;
const SUSPECT_KINDS = new Set<SignalKind>(['tmpfs_exec', 'shell_socket', 'escape', 'network_tool', 'proc_rename']);
const RANKS: readonly Priority[] = ['Debug', 'Informational', 'Notice', 'Warning', 'Error', 'Critical', 'Alert', 'Emergency'];
const rankOf = (p: Priority): number => RANKS.indexOf(p);

function insertSorted(s: Series, sec: number, n = 1): boolean {
  const a = s.secs;
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((a[mid] as number) < sec) lo = mid + 1;
    else hi = mid;
  }
  if (a[lo] === sec) {
    s.cnts[lo] = (s.cnts[lo] as number) + n;
    return false;
  }
  a.splice(lo, 0, sec);
  s.cnts.splice(lo, 0, n);
  return true;
}

/** `<workload>|<exe>|<dest>|<port>` → its program group and port (null: another shape). */
function parseSeriesKey(key: string): { group: string; port: number } | null {
  const b2 = key.lastIndexOf('|');
  const b1 = b2 > 0 ? key.lastIndexOf('|', b2 - 1) : -1;
  const port = Number(key.slice(b2 + 1));
  const group = key.slice(0, Math.max(0, b1));
  if (b1 <= 0 || !group.includes('|') || !Number.isInteger(port) || port < 0 || port > 65535) return null;
  return { group, port };
}

function recentInterval(secs: readonly number[]): number {
  const n = secs.length;
  if (n < 2) return 0;
  const d: number[] = [];
  for (let i = Math.max(1, n - 16); i < n; i++) d.push((secs[i] as number) - (secs[i - 1] as number));
  return median(d);
}

function originOf(sig: Signal): Origin {
  const learning = cBool(sig, DEST.learning);
  const isNew = cBool(sig, DEST.newForImage);
  if (learning === true || isNew === false) return 'known';
  if (isNew === true) return 'new';
  return 'unknown';
}

export function createBeaconDetector(overrides: Partial<BeaconSettings> = {}, env: DetectorEnv = NO_ENV): Detector<BeaconState> {
  const cfg: BeaconSettings = {
    ...BEACON_DEFAULTS,
    ...overrides,
    weights: { ...BEACON_DEFAULTS.weights, ...(overrides.weights ?? {}) },
    scope: { ...BEACON_DEFAULTS.scope, ...(overrides.scope ?? {}) },
  };
  const weights = { ts: cfg.weights.ts, ds: 0, hist: cfg.weights.hist, dur: cfg.weights.dur };
  const werr = checkWeights(weights);
  if (werr) throw new RangeError(`detectors.beacon.weights: ${werr}`);
  const windowNs = msToNs(cfg.window);
  const windowSec = cfg.window / 1000;
  const bucketSec = Math.max(1, windowSec / 24);
  const std = new Set(cfg.standard_ports);
  const skip = new Set(cfg.skip_dest_classes);
  const cluster = new ClusterNetworks(env.cluster);
  const optNs = cfg.scope.internal_namespaces.length ? compileGlobs(cfg.scope.internal_namespaces) : null;
  const optImages = cfg.scope.internal_images.length ? compileGlobs(cfg.scope.internal_images) : null;
  const optCidrs: readonly Cidr[] = cfg.scope.internal_cidrs as readonly Cidr[];
  const prefixCache = new Map<string, Cidr | null>(); // parse cache of learned prefix texts (not state)
  // Series pooled by image across nodes: this node's seconds go to the cluster store, the other
  // nodes' come back through `remote` (the engine drains them between steps).
  const pool = cfg.group_by === 'image' ? (env.series ?? null) : null;

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

  /** One second with `n` connections into a series (after `prune`, before `settle`). */
  function place(s: Series, sec: number, n: number): void {
    if (insertSorted(s, sec, n)) s.newSince++;
    const b = Math.floor(sec / bucketSec);
    s.buckets.set(b, (s.buckets.get(b) ?? 0) + n);
  }

  /** After placing points: cadence, the per-series and total bounds (`held`: seconds before). */
  function settle(st: BeaconState, s: Series, held: number): void {
    s.interval = recentInterval(s.secs);
    if (s.secs.length > cfg.max_points) {
      const drop = s.secs.length - cfg.max_points;
      s.secs.splice(0, drop);
      s.cnts.splice(0, drop);
      st.droppedPoints += drop;
    }
    st.points += s.secs.length - held;
    if (st.points > cfg.max_total_points) fitTotal(st, s);
    const r = s.remote;
    if (r && r.size > s.secs.length) {
      const oldest = s.secs[0] ?? Infinity;
      for (const sec of r.keys()) if (sec < oldest) r.delete(sec);
    }
  }

  function newSeries(key: string, group: string, port: number | null, origin: Origin | null, lastNs: bigint): Series {
    return { key, group, port, origin, secs: [], cnts: [], buckets: new Map(), interval: 0, newSince: 0, scoredOnce: false, lastFindingNs: null, lastRank: -1, first: null, recent: [], lastNs };
  }

  /** A pooled series' contributor `node` was seen at `sec` (bounded: the least recent dropped). */
  function noteNode(s: Series, node: string, sec: number): void {
    const m = (s.nodes ??= new Map());
    if ((m.get(node) ?? -Infinity) >= sec) return;
    m.set(node, sec);
    if (m.size > MAX_NODES) {
      let low: string | null = null;
      for (const [n, t] of m) if (low === null || t < (m.get(low) as number)) low = n;
      if (low !== null) m.delete(low);
    }
  }

  /**
   * Whether this node reports the pooled series (or program group) `key`: one node per series,
   * picked by rendezvous hashing over the contributors that still see it (a node that contributed
   * nothing for 4 × nodes × the cadence, at least a strobe bucket, hands over), so replicas of an
   * image beaconing from several nodes are one detection. Unpooled: always.
   */
  function owns(s: Series, key: string, nowSec: number): boolean {
    if (!pool || !s.nodes || s.nodes.size <= 1) return true;
    const quiet = Math.max(bucketSec, 4 * s.nodes.size * s.interval);
    const live = [pool.node];
    for (const [n, t] of s.nodes) if (n !== pool.node && t >= nowSec - quiet) live.push(n);
    return seriesOwner(key, live) === pool.node;
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

  /** Learn the pod prefix of a container connect's own (client) address and of k8s.pod.ip. */
  function learn(st: BeaconState, sig: Signal, now: bigint): void {
    if (!cfg.scope.learn || sig.containerId === null) return;
    const f = sig.alert.known;
    const podIp = f.k8sPodIp ?? f.containerIp;
    for (const text of [sig.net.clientIp, typeof podIp === 'string' ? podIp : null]) {
      const ip = text ? parseIp(text) : null;
      const p = ip ? learnedPrefix(ip, cfg.scope.learn_prefix_v4, cfg.scope.learn_prefix_v6) : null;
      if (p !== null) st.learned.set(p, now);
    }
  }

  function internal(st: BeaconState, sig: Signal, ip: Ip): boolean {
    const cls = cString(sig, DEST.class);
    if (cls === 'cluster_pod' || cls === 'cluster_service') return true;
    if (cluster.lookup(ip)) return true;
    for (const p of st.learned.entries()) if (inPrefix(prefixCache, p[0], ip)) return true;
    return false;
  }

  function optedIn(sig: Signal, ip: Ip): boolean {
    if (cfg.scope.internal) return true;
    if (optCidrs.some((c) => cidrContains(c, ip))) return true;
    if (optNs && sig.namespace !== null && optNs(sig.namespace)) return true;
    if (optImages && sig.imageRepository !== null && (optImages(sig.imageRepository) || (sig.imageTag !== null && optImages(`${sig.imageRepository}:${sig.imageTag}`)))) return true;
    return false;
  }

  /** The series key, or null when the destination is not scored (loopback, skipped class, inside the cluster). */
  function seriesKey(st: BeaconState, sig: Signal): { key: string; group: string; port: number } | null {
    const d = destOf(sig);
    if (!d.host || d.port === null) return null;
    const ip = d.ip ? parseIp(d.ip) : null;
    const cls = cString(sig, DEST.class) ?? (ip ? addressClass(ip) : null);
    if (cls === 'loopback' || (cls !== null && skip.has(cls))) return null;
    if (ip && internal(st, sig, ip) && !optedIn(sig, ip)) {
      st.internal++;
      return null;
    }
    const workload =
      cfg.group_by === 'image'
        ? (sig.imageRepository ?? cString(sig, IMAGE.repository) ?? sig.containerId ?? 'host')
        : (sig.containerId ?? 'host');
    const group = `${workload}|${exeOf(sig)}`;
    return { key: `${group}|${d.host}|${d.port}`, group, port: d.port };
  }

  /** Suspicious facts of the series' program and container within the window. */
  function suspicion(st: BeaconState, sig: Signal, now: bigint): string[] {
    const out: string[] = [];
    const where = unusualExeLocation(sig.proc.exepath);
    if (where) out.push(`exe_${where}`);
    if (isKernelThreadName(sig.proc.name) || (sig.proc.exepath !== null && isKernelThreadName(basename(sig.proc.exepath)))) out.push('kernel_thread_name');
    const marks = st.suspects.get(sig.containerId ?? 'host');
    if (marks) for (const [k, t] of marks) if (t + windowNs >= now) out.push(k);
    return [...new Set(out)];
  }

  const similar = (a: number, b: number): boolean => a > 0 && b > 0 && Math.abs(a - b) <= cfg.fanout_tolerance * Math.max(a, b);

  /** Other live series of the group on the same cadence. */
  function siblings(st: BeaconState, s: Series, now: bigint): Series[] {
    const g = st.groups.get(s.group);
    if (!g) return [];
    const out: Series[] = [];
    for (const k of g.keys) {
      if (k === s.key) continue;
      const o = st.series.get(k);
      if (!o || o.secs.length < 3 || !similar(o.interval, s.interval)) continue;
      if (o.lastNs + BigInt(Math.ceil(o.interval * 3)) * 1_000_000_000n < now) continue;
      out.push(o);
    }
    return out;
  }

  /**
   * A known series of the same program, port and cadence, seen within the window: the program
   * moved to another address of the same service (DNS rotation behind one name) and keeps its
   * provenance.
   */
  function rotatedFrom(st: BeaconState, s: Series): Series | null {
    const g = st.groups.get(s.group);
    if (!g) return null;
    for (const k of g.keys) {
      const o = k === s.key ? undefined : st.series.get(k);
      if (o && o.origin === 'known' && o.port === s.port && o.secs.length >= 3 && similar(o.interval, s.interval)) return o;
    }
    return null;
  }

  function finding(st: BeaconState, s: Series, r: SeriesScore, sig: Signal, now: bigint): Finding | null {
    const d = destOf(sig);
    const intel = cString(sig, DEST.intel);
    const sus = suspicion(st, sig, now);
    const rotated = s.origin === 'new' && rotatedFrom(st, s) !== null;
    const origin: Origin = rotated ? 'known' : (s.origin ?? 'unknown');
    const odd = d.port !== null && !std.has(d.port);
    let priority: Priority;
    if (origin === 'known') priority = cfg.known_priority;
    else {
      priority = cfg.priority;
      if (r.score >= cfg.high_score) priority = raise(priority, 1);
      if (odd) priority = raise(priority, 1);
    }
    if (sus.length > 0) priority = raise(priority, 1);
    if (intel) priority = 'Critical';
    const rank = rankOf(priority);
    const repeat = s.lastFindingNs !== null && rank <= s.lastRank && sig.timeNs - s.lastFindingNs < REPEAT_NS;
    if (repeat) return null;
    s.lastFindingNs = sig.timeNs;
    s.lastRank = Math.max(s.lastRank, rank);
    const total = s.cnts.reduce((a, b) => a + b, 0);
    const interval = r.ts.median;
    const evidence = [...(s.first && !s.recent.includes(s.first) ? [s.first] : []), ...s.recent].sort(byTime);
    const why = origin === 'known' ? 'a destination the image has had since its learning period' : origin === 'new' ? 'a destination new for the image after its learning period' : 'no egress baseline for the destination';
    const msg =
      `${exeOf(sig)} in ${whereOf(sig)} connects to ${d.host}:${d.port} every ~${Math.round(interval)}s ` +
      `(jitter ${Math.round(r.ts.mad)}s MAD, ${total} connections, beacon score ${r.score}); ${why}` +
      (odd && origin !== 'known' ? ', non-standard port' : '') +
      (sus.length ? `; suspicious: ${sus.join(', ')}` : '') +
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
        'beacon.origin': rotated ? 'known_rotated' : origin,
        'beacon.suspicious': sus.join(',') || null,
        'beacon.first_seen': s.secs[0] !== undefined ? new Date((s.secs[0] as number) * 1000).toISOString() : null,
        'beacon.nodes': s.nodes && s.nodes.size > 1 ? s.nodes.size : null,
        'dest.intel': intel,
      }),
      timeNs: sig.timeNs,
    };
  }

  function fanoutFinding(st: BeaconState, s: Series, sibs: readonly Series[], g: Group, sig: Signal): Finding | null {
    const first = g.fanoutNs === null;
    g.fanoutInterval = s.interval;
    g.fanoutNs = sig.timeNs;
    if (!first && s.lastFindingNs !== null) return null;
    s.lastFindingNs = sig.timeNs;
    const targets = [s, ...sibs];
    const sample = targets
      .slice(0, 6)
      .map((x) => x.key.slice(x.group.length + 1).replace(/\|(\d+)$/, ':$1'))
      .join(', ');
    return {
      detector: BEACON_DETECTOR_ID,
      rule: BEACON_FANOUT_RULE,
      priority: cfg.fanout_priority,
      score: 0.2,
      message: `${exeOf(sig)} in ${whereOf(sig)} polls ${targets.length} destinations every ~${Math.round(s.interval)}s (${sample}${targets.length > 6 ? ', …' : ''}): a scraper or health checker, not a beacon per target`,
      mitre: BEACON_MITRE,
      key: `${BEACON_DETECTOR_ID}|fanout|${s.group}`,
      evidence: [...(s.recent.length ? [s.recent[s.recent.length - 1] as Signal] : [])],
      fields: compact({ 'beacon.fanout_targets': targets.length, 'beacon.interval_s': s.interval, 'beacon.exe': exeOf(sig), 'beacon.sample': sample }),
      timeNs: sig.timeNs,
    };
  }

  function noteGroup(st: BeaconState, s: Series): void {
    let g = st.groups.touch(s.group);
    if (!g) {
      g = { keys: [], fanoutInterval: 0, fanoutNs: null };
      st.groups.set(s.group, g);
    }
    if (!g.keys.includes(s.key)) {
      g.keys.push(s.key);
      if (g.keys.length > MAX_GROUP_KEYS) g.keys = g.keys.filter((k) => st.series.get(k) !== undefined).slice(-MAX_GROUP_KEYS);
    }
  }

  return {
    id: BEACON_DETECTOR_ID,
    consumes: ['connect', ...SUSPECT_KINDS],
    init: () => {
      const st: BeaconState = {
        // A series leaving the map (LRU, sweep, budget) gives its points back to the total.
        series: new BoundedMap<string, Series>(cfg.max_series, (s) => (st.points -= s.secs.length)),
        groups: new BoundedMap<string, Group>(cfg.max_series),
        learned: new BoundedMap<string, bigint>(cfg.scope.max_learned_prefixes),
        suspects: new BoundedMap<string, Map<string, bigint>>(cfg.max_series),
        droppedPoints: 0,
        points: 0,
        lastSweepNs: 0n,
        scored: 0,
        internal: 0,
      };
      return st;
    },
    evictions: (st) => st.series.evicted + st.groups.evicted + st.learned.evicted + st.suspects.evicted + st.droppedPoints,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      const now = laterNs(nowNs, sig.timeNs);
      if (sig.kind !== 'connect') {
        const mark = suspectMark(sig);
        if (mark !== null) {
          const c = sig.containerId ?? 'host';
          let m = st.suspects.touch(c);
          if (!m) st.suspects.set(c, (m = new Map()));
          m.set(mark, sig.timeNs);
        }
        return none;
      }
      // periodic sweep of idle series (aged out, not counted as evictions)
      if (now - st.lastSweepNs > windowNs / 24n) {
        st.series.sweep((s) => s.lastNs < now - windowNs);
        st.groups.sweep((g) => g.keys.every((k) => st.series.get(k) === undefined));
        st.lastSweepNs = now;
      }
      if (sig.timeNs < now - windowNs) return none; // too old for the window
      learn(st, sig, sig.timeNs);
      const id = seriesKey(st, sig);
      if (id === null) return none;
      let s = st.series.touch(id.key);
      if (!s) {
        s = newSeries(id.key, id.group, id.port, originOf(sig), sig.timeNs);
        st.series.set(id.key, s);
      }
      s.origin ??= originOf(sig);
      noteGroup(st, s);
      const held = s.secs.length;
      prune(s, now);
      const sec = Number(sig.timeNs / 1_000_000_000n);
      place(s, sec, 1);
      if (pool) {
        pool.record(id.key, sec);
        noteNode(s, pool.node, sec);
      }
      if (sig.timeNs > s.lastNs) s.lastNs = sig.timeNs;
      const kept = retain(sig); // evidence only: no full alert per kept signal
      if (!s.first) s.first = kept;
      s.recent.push(kept);
      if (s.recent.length > RECENT) s.recent.shift();
      settle(st, s, held);
      if (s.secs.length < cfg.min_points) return none;
      if (s.scoredOnce && s.newSince < cfg.rescore_every) return none;
      let inWindow = 0;
      for (const c of s.buckets.values()) inWindow += c;
      if (inWindow >= cfg.strobe) return none;
      // Several connections in most seconds are a download burst, not a beat.
      if (median(s.cnts) >= BURST_PER_SECOND) return none;
      s.newSince = 0;
      s.scoredOnce = true;
      st.scored++;
      const nowSec = Number(now / 1_000_000_000n);
      const first = s.secs[0] as number;
      // (pooled: another node's latest second may lie a little ahead of this node's clock)
      const last = s.secs[s.secs.length - 1] as number;
      const r = scoreSeries(s.secs, { min: Math.max(nowSec - windowSec, first), max: Math.max(nowSec, last, first + 1) }, null, { weights }, s.cnts);
      if (!r || r.score < cfg.threshold) return none;
      // Fan-out: many destinations of one program on one cadence are a scraper, not beacons.
      if (!cString(sig, DEST.intel)) {
        const g = st.groups.get(s.group);
        if (g && g.fanoutNs !== null && g.fanoutNs + windowNs >= now && similar(g.fanoutInterval, s.interval)) {
          g.fanoutNs = sig.timeNs;
          return none;
        }
        const sibs = siblings(st, s, now);
        if (g && sibs.length + 1 >= cfg.fanout_min_targets) {
          if (!owns(s, s.group, nowSec)) return none;
          const f = fanoutFinding(st, s, sibs, g, sig);
          return f ? { state: st, findings: [f] } : none;
        }
      }
      if (!owns(s, s.key, nowSec)) return none;
      const f = finding(st, s, r, sig, now);
      return f ? { state: st, findings: [f] } : none;
    },
    remote(st, input, nowNs) {
      if (!pool) return;
      const nowSec = Number(nowNs / 1_000_000_000n);
      const oldest = nowSec - windowSec;
      for (const r of input) {
        const pts = r.points.filter((p) => p.sec >= oldest && p.sec <= nowSec + REMOTE_AHEAD_SEC && p.count > 0);
        st.droppedPoints += r.points.filter((p) => p.sec > nowSec + REMOTE_AHEAD_SEC).length;
        if (pts.length === 0) continue;
        const latestNs = BigInt((pts[pts.length - 1] as { sec: number }).sec) * 1_000_000_000n;
        let s = st.series.touch(r.key);
        if (!s) {
          const id = parseSeriesKey(r.key);
          if (!id) continue;
          s = newSeries(r.key, id.group, id.port, null, latestNs);
          st.series.set(r.key, s);
        }
        noteGroup(st, s);
        for (const [node, sec] of r.last) if (node !== pool.node) noteNode(s, node, sec);
        const held = s.secs.length;
        prune(s, nowNs);
        const seen = (s.remote ??= new Map());
        for (const p of pts) {
          const had = seen.get(p.sec) ?? 0;
          if (p.count <= had) continue;
          seen.set(p.sec, p.count);
          place(s, p.sec, p.count - had);
        }
        if (latestNs > s.lastNs) s.lastNs = latestNs;
        settle(st, s, held);
      }
    },
  };
}

/** What a non-connect signal says about its container, or null when nothing suspicious. */
function suspectMark(sig: Signal): string | null {
  switch (sig.kind) {
    case 'tmpfs_exec':
      return 'tmpfs_exec';
    case 'shell_socket':
      return 'shell_socket';
    case 'network_tool':
      return 'network_tool';
    case 'escape':
      return sig.subtype === 'proc_sys_write' ? null : 'escape';
    case 'proc_rename':
      return isDisguiseName(keyString(sig, 'new_name'), sig.proc.exepath) ? 'disguised_name' : null;
    default:
      return null;
  }
}

/** Registry entry (src/detect/registry.ts). */
export const beaconModule = detectorModule({ id: BEACON_DETECTOR_ID, settings: beaconSettingsSpec, quietInCi: true, create: createBeaconDetector });
