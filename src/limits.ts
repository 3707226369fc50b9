/**
 * Limits on everything an attacker can inflate, in one place (docs/security-parsers.md).
 *
 * Edge limits ({@link limitAlertJson}) run on a parsed alert right after JSON parsing and before
 * `alertFromJson`, in every source (http, file/stdin/replay, gRPC). A workload controls only the
 * *values* Falco prints (command lines, file names, arguments, environment): a value over its
 * limit is cut and the alert kept, marked `companion.truncated`, so padding a command line can
 * never make an alert disappear. The *shape* (how many fields, key names, tags, nesting) comes
 * from Falco's rules and the sender: a document nested deeper than `max_json_depth` is no Falco
 * alert and is rejected (HTTP 400 `too_deep`, a skipped line); too many fields or tags are cut
 * (the first ones kept) and too long keys dropped, both marked, because a Falco rule with a very
 * large output must still reach Falcosidekick.
 *
 * {@link SignalFairShare}: per-container token buckets on event time in the detection engine, so
 * a container flooding signals cannot starve other containers' detector state (drops of signals
 * counted; the alert itself is always forwarded).
 *
 * Every limit has a default (config section `limits`), a counter (`input_limited_total`,
 * `signals_dropped_total`) and a rate-limited log line.
 */
import { InvalidAlertError, withEnrichment, type Alert } from './alert.js';
import { LosslessNumber, MAX_DEPTH, stringify, type JsonObject, type JsonValue } from './json/lossless.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from './log-limit.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface InputLimits {
  /** output_fields entries kept (the first ones); also the most top-level keys besides Falco's own. */
  readonly maxFields: number;
  /** Longest output_fields key or top-level key (longer: the entry is dropped); longest tag (longer: the tag is cut). */
  readonly maxKeyLength: number;
  /** Longest string value in output_fields or among the other top-level keys, and longest rule name, source or hostname (UTF-16 code units); cut beyond. */
  readonly maxValueLength: number;
  /** Longest `output` text; cut beyond. */
  readonly maxOutputLength: number;
  /** Tags kept (the first ones). */
  readonly maxTags: number;
  /** Deepest nesting of the JSON document (the alert object is depth 1, output_fields and tags 2); deeper: rejected. */
  readonly maxJsonDepth: number;
}

/**
 * Defaults, far above what Falco sends: Falco reads at most 4 KiB of a process's arguments or
 * environment and prints flat output_fields (depth 2) with a few dozen keys; its own rules carry
 * fewer than 20 tags.
 */
export const DEFAULT_INPUT_LIMITS: InputLimits = Object.freeze({
  maxFields: 512,
  maxKeyLength: 256,
  maxValueLength: 16_384,
  maxOutputLength: 65_536,
  maxTags: 64,
  maxJsonDepth: 16,
});

/** The hard ceiling of `max_json_depth` (the lossless JSON parser's own bound). */
export const MAX_JSON_DEPTH_CEILING = MAX_DEPTH;

/** The config section `limits` (src/config/sections/limits.ts), snake_case. */
export interface LimitsConfig {
  readonly max_fields: number;
  readonly max_key_length: number;
  readonly max_value_length: number;
  readonly max_output_length: number;
  readonly max_tags: number;
  readonly max_json_depth: number;
}

export function inputLimits(c: LimitsConfig): InputLimits {
  return Object.freeze({
    maxFields: c.max_fields,
    maxKeyLength: c.max_key_length,
    maxValueLength: c.max_value_length,
    maxOutputLength: c.max_output_length,
    maxTags: c.max_tags,
    maxJsonDepth: Math.min(c.max_json_depth, MAX_JSON_DEPTH_CEILING),
  });
}

/** Which limit acted (metric label `limit`). */
export type LimitName = 'fields' | 'key_length' | 'value_length' | 'output_length' | 'tags' | 'json_depth' | 'line_length';

/** One thing a limit changed: `key` is the field, top-level key or `output` / `tags` concerned. */
export interface Cut {
  readonly limit: LimitName;
  readonly key: string;
  /** How many entries were dropped (fields, tags, keys) or code units cut (values). */
  readonly count: number;
}

export type LimitOutcome =
  /** `cuts` empty: `value` is the input itself, untouched. */
  | { readonly ok: true; readonly value: JsonValue; readonly cuts: readonly Cut[] }
  | { readonly ok: false; readonly limit: 'json_depth'; readonly reason: string };

/** The `companion.*` key naming what was cut. */
export const TRUNCATED_KEY = 'truncated';

/** Appended to a cut string value (counted in its length budget: a cut value is exactly the limit long). */
export const CUT_MARK = '…';

const NAMES = ['rule', 'source', 'hostname'] as const;

/** Falco's own top-level keys (anything else is an "extra" key, passed through). */
const KNOWN = new Set(['time', 'rule', 'priority', 'source', 'hostname', 'output', 'tags', 'output_fields']);

/**
 * Apply the limits to one parsed alert document. Never throws; never mutates `v` (a changed
 * document is a shallow copy of the parts that changed). Values other than an object pass
 * (alertFromJson rejects them) once their depth is checked.
 */
export function limitAlertJson(v: JsonValue, l: InputLimits): LimitOutcome {
  const depth = depthOver(v, l.maxJsonDepth);
  if (depth !== null) {
    return { ok: false, limit: 'json_depth', reason: `JSON nested deeper than ${l.maxJsonDepth} levels (limits.max_json_depth); a Falco alert is 2 levels deep` };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof LosslessNumber) return { ok: true, value: v, cuts: [] };
  const o = v as JsonObject;
  let cuts: Cut[] | null = null;
  let out: Record<string, JsonValue> | null = null;
  const put = (k: string, x: JsonValue): void => {
    out ??= copy(o);
    setOwn(out, k, x);
  };

  const output = o['output'];
  if (typeof output === 'string' && output.length > l.maxOutputLength) {
    put('output', cutString(output, l.maxOutputLength));
    (cuts ??= []).push({ limit: 'output_length', key: 'output', count: output.length - l.maxOutputLength });
  }

  // The rule name, source and hostname come from Falco, but a hostile sender could make them huge.
  for (const k of NAMES) {
    const x = o[k];
    if (typeof x === 'string' && x.length > l.maxValueLength) {
      put(k, cutString(x, l.maxValueLength));
      (cuts ??= []).push({ limit: 'value_length', key: k, count: x.length - l.maxValueLength });
    }
  }

  const tags = o['tags'];
  if (Array.isArray(tags)) {
    const t = limitTags(tags as readonly JsonValue[], l);
    if (t.cuts.length > 0) {
      put('tags', t.value);
      (cuts ??= []).push(...t.cuts);
    }
  }

  const fields = o['output_fields'];
  if (fields !== null && typeof fields === 'object' && !Array.isArray(fields) && !(fields instanceof LosslessNumber)) {
    const f = limitRecord(fields as JsonObject, l, null);
    if (f.cuts.length > 0) {
      put('output_fields', f.value);
      (cuts ??= []).push(...f.cuts);
    }
  }

  // Other top-level keys (Falco's `uuid`, a sender's own): the same bounds as output_fields.
  let extras = 0;
  for (const k in o) if (!KNOWN.has(k)) extras++;
  if (extras > 0) {
    const e = limitRecord(o, l, KNOWN);
    if (e.cuts.length > 0) {
      const base = (out ?? o) as JsonObject;
      const next: Record<string, JsonValue> = {};
      for (const k in base) if (KNOWN.has(k)) setOwn(next, k, base[k] as JsonValue);
      for (const k in e.value) setOwn(next, k, (e.value as JsonObject)[k] as JsonValue);
      out = next;
      (cuts ??= []).push(...e.cuts);
    }
  }
  return cuts === null ? { ok: true, value: v, cuts: [] } : { ok: true, value: out ?? o, cuts };
}

/** Tags: at most maxTags, each at most maxKeyLength. */
function limitTags(tags: readonly JsonValue[], l: InputLimits): { value: JsonValue[]; cuts: Cut[] } {
  const cuts: Cut[] = [];
  let long = 0;
  const kept = tags.length > l.maxTags ? tags.slice(0, l.maxTags) : tags;
  const value = kept.map((t) => {
    if (typeof t === 'string' && t.length > l.maxKeyLength) {
      long++;
      return cutString(t, l.maxKeyLength);
    }
    return t;
  });
  if (tags.length > l.maxTags) cuts.push({ limit: 'tags', key: 'tags', count: tags.length - l.maxTags });
  if (long > 0) cuts.push({ limit: 'key_length', key: 'tags', count: long });
  return { value, cuts };
}

/**
 * A flat record (output_fields, or the top level without `skip` keys): at most maxFields entries,
 * keys at most maxKeyLength (longer: dropped), string values at most maxValueLength (cut).
 */
function limitRecord(r: JsonObject, l: InputLimits, skip: ReadonlySet<string> | null): { value: JsonObject; cuts: Cut[] } {
  // output_fields (skip null): a nested value becomes its JSON text in the Alert (alertFromJson), so that text is what is bounded.
  const flat = skip === null;
  const tooLong = (x: JsonValue | undefined): string | null => {
    if (typeof x === 'string') return x.length > l.maxValueLength ? x : null;
    // (a number literal of megabytes of digits is kept as its cut text)
    if (x instanceof LosslessNumber) return x.raw.length > l.maxValueLength ? x.raw : null;
    if (!flat || x === null || typeof x !== 'object') return null;
    const t = stringify(x);
    return t.length > l.maxValueLength ? t : null;
  };
  let n = 0;
  let changed = false;
  for (const k in r) {
    if (skip?.has(k)) continue;
    n++;
    if (n > l.maxFields || k.length > l.maxKeyLength || tooLong(r[k]) !== null) {
      changed = true;
      break;
    }
  }
  if (!changed) return { value: r, cuts: [] };
  const out: Record<string, JsonValue> = {};
  const cuts: Cut[] = [];
  let kept = 0;
  let over = 0;
  let longKeys = 0;
  for (const k in r) {
    if (skip?.has(k)) continue;
    if (k.length > l.maxKeyLength) {
      longKeys++;
      continue;
    }
    if (kept >= l.maxFields) {
      over++;
      continue;
    }
    kept++;
    const x = r[k] as JsonValue;
    const long = tooLong(x);
    if (long !== null) {
      setOwn(out, k, cutString(long, l.maxValueLength));
      cuts.push({ limit: 'value_length', key: k, count: long.length - l.maxValueLength });
    } else setOwn(out, k, x);
  }
  if (over > 0) cuts.push({ limit: 'fields', key: skip ? 'top-level keys' : 'output_fields', count: over });
  if (longKeys > 0) cuts.push({ limit: 'key_length', key: skip ? 'top-level keys' : 'output_fields', count: longKeys });
  return { value: out, cuts };
}

/** The first `max` code units ending in {@link CUT_MARK}, never splitting a surrogate pair. */
export function cutString(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = Math.max(0, max - CUT_MARK.length);
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--; // a high surrogate whose pair would be cut off
  return s.slice(0, end) + CUT_MARK;
}

/** Nesting deeper than `max` (iterative: a hostile document cannot exhaust the stack here)? Returns the depth reached, or null. */
function depthOver(v: JsonValue, max: number): number | null {
  if (v === null || typeof v !== 'object' || v instanceof LosslessNumber) return null;
  const stack: { readonly v: JsonValue; readonly d: number }[] = [{ v, d: 1 }];
  while (stack.length > 0) {
    const top = stack.pop() as { v: JsonValue; d: number };
    if (top.d > max) return top.d;
    const x = top.v;
    if (Array.isArray(x)) {
      for (const y of x as readonly JsonValue[]) if (y !== null && typeof y === 'object' && !(y instanceof LosslessNumber)) stack.push({ v: y, d: top.d + 1 });
    } else {
      const o = x as JsonObject;
      for (const k in o) {
        const y = o[k];
        if (y !== null && typeof y === 'object' && !(y instanceof LosslessNumber)) stack.push({ v: y as JsonValue, d: top.d + 1 });
      }
    }
  }
  return null;
}

function copy(o: JsonObject): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const k in o) setOwn(out, k, o[k] as JsonValue);
  return out;
}

/** Assign as an own data property (a `__proto__` key from untrusted JSON stays a key). */
function setOwn(o: Record<string, JsonValue>, k: string, v: JsonValue): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** `companion.truncated` text: what was cut, e.g. `proc.cmdline,output,output_fields+88,tags+3` (under 512 characters). */
export function truncatedText(cuts: readonly Cut[]): string {
  const parts = cuts.map((c) => (c.limit === 'value_length' || c.limit === 'output_length' ? c.key || '""' : c.limit === 'key_length' ? `${c.key}:long_keys+${c.count}` : `${c.key}+${c.count}`));
  const text = [...new Set(parts)].join(',');
  return text.length <= 500 ? text : cutString(text, 500);
}

/** The alert marked with what the limits cut (unchanged when nothing was). */
export function markTruncated(a: Alert, cuts: readonly Cut[]): Alert {
  if (cuts.length === 0) return a;
  return withEnrichment(a, { [TRUNCATED_KEY]: truncatedText(cuts) });
}

// ---------------------------------------------------------------------------------------------
// Counting and logging what the limits did

export type LimitAction = 'truncated' | 'rejected';

/** Counts (`input_limited_total{component,limit,action}`) and logs (rate-limited) what the limits did at one source. */
export class LimitReporter {
  private readonly counter;
  private readonly log: RateLimitedLog;

  constructor(
    readonly component: string,
    logger: Logger,
    metrics: Metrics,
    opts: { readonly intervalMs?: number; readonly now?: () => number } = {},
  ) {
    this.counter = metrics.counter('input_limited_total', 'Alerts an input limit changed (truncated, marked companion.truncated) or refused (rejected), by component and limit (docs/security-parsers.md)', ['component', 'limit', 'action']);
    this.log = rateLimited(logger, { intervalMs: opts.intervalMs ?? 10_000, ...(opts.now ? { now: opts.now } : {}), onSuppressed: countSuppressed(metrics, component) });
  }

  /** The alert was kept with these cuts. Logs the rule, the limits and the keys, never the values. */
  truncated(cuts: readonly Cut[], rule: string | null): void {
    if (cuts.length === 0) return;
    const seen = new Set<LimitName>();
    for (const c of cuts) {
      if (seen.has(c.limit)) continue;
      seen.add(c.limit);
      this.counter.inc({ component: this.component, limit: c.limit, action: 'truncated' });
    }
    this.log({ rule, truncated: truncatedText(cuts), limits: [...seen] }, 'alert over an input limit: truncated and forwarded (companion.truncated)');
  }

  /** The input was refused (HTTP 400, skipped line, skipped message). */
  rejected(limit: LimitName, reason: string): void {
    this.counter.inc({ component: this.component, limit, action: 'rejected' });
    this.log({ limit, reason }, 'input over a limit rejected');
  }
}


// ---------------------------------------------------------------------------------------------
// Fair share of the detectors between containers

export interface FairShareSettings {
  /** Signals per second of event time each container feeds the detectors (sustained); 0: no limit. */
  readonly ratePerSecond: number;
  /** Signals a container may send at once above the rate (the bucket size). */
  readonly burst: number;
  /** Containers tracked at most (least recently seen evicted first, counted). */
  readonly maxContainers?: number;
}

/** What the fair share reads of a signal (src/detect/types.ts Signal). */
export interface FairShareSignal {
  readonly kind: string;
  readonly subtype: string | null;
  readonly timeNs: bigint;
  readonly containerId: string | null;
}

interface Bucket {
  tokens: number;
  lastNs: bigint;
  /** The event-time second `kinds` is about. */
  second: bigint;
  /** Kinds (kind/subtype) admitted over the rate in `second`. */
  kinds: Set<string> | null;
  dropped: number;
}

const NS_PER_S = 1_000_000_000n;
const DEFAULT_MAX_CONTAINERS = 10_000;
/** The defaults of `limits.container_signals_per_second` / `limits.container_signal_burst`. */
export const DEFAULT_FAIR_SHARE: FairShareSettings = Object.freeze({ ratePerSecond: 100, burst: 1000 });

/** Metric label of the fair share's evictions in detector_evictions_total. */
export const FAIR_SHARE_LABEL = 'engine/fair_share';

/**
 * Per-container token buckets on event time, in front of the detectors: a container (the host
 * counts as one) that sends signals faster than `ratePerSecond` beyond its `burst` has the rest
 * dropped, so its flood cannot evict other containers' detector state (every detector's state is
 * bounded with LRU eviction) nor take their share of the engine. Over the rate, the first signal
 * of each kind in each event-time second still passes, so a flood of one kind (connections) never
 * hides a different kind (a socket filter, an escape) from the same container. Dropped signals
 * are counted (`signals_dropped_total{kind,reason="container_rate"}`) and logged (rate-limited);
 * the alert they came from is forwarded as always.
 */
export class SignalFairShare {
  private readonly buckets = new Map<string, Bucket>();
  private readonly rate: number;
  private readonly burst: number;
  private readonly max: number;
  private readonly dropped;
  private readonly evictions;
  private readonly log: RateLimitedLog;

  constructor(s: FairShareSettings, metrics: Metrics, logger: Logger, now: () => number = Date.now) {
    this.rate = s.ratePerSecond;
    this.burst = Math.max(1, s.burst);
    this.max = Math.max(1, s.maxContainers ?? DEFAULT_MAX_CONTAINERS);
    this.dropped = metrics.counter('signals_dropped_total', 'Signals not handed to the detectors, by kind and reason (container_rate: the container exceeded limits.container_signals_per_second; its alerts are still forwarded)', ['kind', 'reason']);
    this.evictions = metrics.counter('detector_evictions_total', 'Detector state entries (and incidents: detector="engine/notify") evicted to respect bounds', ['detector']).labels({ detector: FAIR_SHARE_LABEL });
    this.log = rateLimited(logger, { intervalMs: 10_000, now, onSuppressed: countSuppressed(metrics, 'detect/engine') });
  }

  /** Containers tracked now. */
  get size(): number {
    return this.buckets.size;
  }

  /** The signals (of one alert) the detectors may take; the input array when all pass. */
  admit<S extends FairShareSignal>(signals: readonly S[]): readonly S[] {
    if (this.rate <= 0 || signals.length === 0) return signals;
    let out: S[] | null = null;
    for (let i = 0; i < signals.length; i++) {
      const sig = signals[i] as S;
      if (this.take(sig)) {
        if (out) out.push(sig);
      } else {
        out ??= signals.slice(0, i);
      }
    }
    return out ?? signals;
  }

  private take(sig: FairShareSignal): boolean {
    const key = sig.containerId ?? 'host';
    let b = this.buckets.get(key);
    if (b) {
      // Least recently seen first in the map's order (only a cheap re-insert when not already last).
      this.buckets.delete(key);
      this.buckets.set(key, b);
      if (sig.timeNs > b.lastNs) {
        b.tokens = Math.min(this.burst, b.tokens + (Number(sig.timeNs - b.lastNs) / 1e9) * this.rate);
        b.lastNs = sig.timeNs;
      }
    } else {
      b = { tokens: this.burst, lastNs: sig.timeNs, second: -1n, kinds: null, dropped: 0 };
      this.buckets.set(key, b);
      while (this.buckets.size > this.max) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
        this.evictions.inc();
      }
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return true;
    }
    const second = sig.timeNs / NS_PER_S;
    if (second !== b.second || b.kinds === null) {
      b.second = second;
      b.kinds = new Set();
    }
    const kind = sig.subtype === null ? sig.kind : `${sig.kind}/${sig.subtype}`;
    if (!b.kinds.has(kind)) {
      b.kinds.add(kind);
      return true;
    }
    b.dropped++;
    this.dropped.inc({ kind: sig.kind, reason: 'container_rate' });
    if (this.log({ container_id: key, kind: sig.kind, dropped: b.dropped, rate: this.rate, burst: this.burst }, 'container over its signal rate: signals dropped (its alerts are still forwarded)')) b.dropped = 0;
    return false;
  }
}

/** An input refused by a limit where the caller expects an InvalidAlertError (gRPC conversion, JSON lines). */
export class InputLimitError extends InvalidAlertError {
  constructor(
    readonly limit: LimitName,
    reason: string,
  ) {
    super(reason);
    this.name = 'InputLimitError';
  }
}
