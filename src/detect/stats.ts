/**
 * Signal statistics: an engine observer (contract `DetectionObserver`) that keeps, per hour of
 * event time, what every detector saw and what became of it, in the state database
 * (src/store/signal-stats.ts), for `falco-companion tune` and `explain`.
 *
 * Off the hot path: `signal` / `finding` only push onto a bounded queue (full: dropped and counted,
 * per hour, so `tune` can say its numbers are short). A drain on the next macrotask folds the queue
 * into in-memory groups; a timer (and stop) writes the changed groups in one transaction.
 *
 * Bounded everywhere:
 * - a group (hour, detector, kind, rule, outcome; for findings hour, detector, rule, priority,
 *   outcome) keeps the `maxTuples` most frequent tuples; a new tuple in a full group evicts the
 *   least frequent (least recently seen among equals) into the group's overflow count, so a flood
 *   of unique tuples cannot push out the heavy hitters and every signal stays counted;
 * - at most `maxRulesPerHour` Falco rules per hour get their own groups, the rest share `(other)`;
 * - groups in memory: the ones touched since the last flush plus the current hours, reloaded from
 *   the database when met again (after a restart too);
 * - on disk: `retention` of event time and `max_rows` rows, the oldest hours deleted first.
 *
 * A failing database turns the statistics off (logged, counted); it never reaches the engine.
 */
import { formatTimeNs, serializeAlert, type Alert } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import { bucketOfMs, HOUR_MS, SignalStatsStore, type FindingGroupKey, type SignalGroupKey, type StatEntry, type StoredGroup } from '../store/signal-stats.js';
import { dimsKey, signalDims } from './stats-dims.js';
import type { DetectionObserver, Finding, Signal, SignalOutcome } from './types.js';

export const STATS_ID = 'detect/stats';

export interface SignalStatsOptions {
  /** The state database, opened on first use (a throw disables the statistics). */
  readonly db: () => Db;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Event time kept, ms (older hours deleted). */
  readonly retentionMs: number;
  /** Rows kept at most; the oldest hours go first. */
  readonly maxRows: number;
  /** Tuples per group (default 24). */
  readonly maxTuples?: number;
  /** Observations waiting for the drain (default 20 000). */
  readonly maxQueue?: number;
  /** Flush cadence, wall clock (default 5 s). */
  readonly flushIntervalMs?: number;
  /** Falco rules per hour with groups of their own (default 200). */
  readonly maxRulesPerHour?: number;
}

/** Rule name shared by the rules beyond the per-hour cap. */
export const OTHER_RULES = '(other rules)';
/** Distinct evidence signals kept per finding key. */
const MAX_EVIDENCE = 16;
/** Groups held in memory before a flush is forced (a fast replay crosses many hours between timer ticks). */
const MAX_GROUPS_IN_MEMORY = 4096;
/** Example texts are clipped to this. */
const MAX_EXAMPLE = 600;

/** A finding waiting for the drain (findings are rare; routed signals use parallel arrays). */
interface FindingObs {
  readonly f: Finding;
  readonly emitted: boolean;
  readonly incident: string;
  /** Position among the queued signals when it was observed (drained in order). */
  readonly at: number;
}

/** What the drain derives once per signal (one signal is observed once per detector it was routed to). */
interface SigMemo {
  readonly ms: number;
  /** Groups of this signal's hour, kind and rule, by detector then outcome. */
  readonly groups: Map<string, Map<string, Group<SignalGroupKey>>>;
  readonly bucket: number;
  readonly rule: string;
  readonly dims: string;
  readonly ip: string | null;
  /** The example text, made when a group first needs it. */
  example: string | null;
}

/** A group in memory: its entries (tuple key → entry; '' is the overflow), dirty since the last flush. */
interface Group<K> {
  readonly key: K;
  readonly entries: StoredGroup;
  dirty: boolean;
}

const nsToMs = (ns: bigint): number => Number(ns / 1_000_000n);

/** One evidence signal as kept with a finding: [rule, kind, dims, ip]. */
export type EvidenceTuple = readonly [string, string, string, string | null];

/** A compact example of a signal: when, which rule, what Falco said (clipped). */
function signalExample(a: Alert): string {
  const text = serializeAlert(a, { includeCompanion: false });
  if (text.length <= MAX_EXAMPLE) return text;
  return JSON.stringify({ time: formatTimeNs(a.timeNs), rule: a.rule, priority: a.priority, output: a.output.slice(0, MAX_EXAMPLE - 200) });
}

export class SignalStats implements DetectionObserver, Component {
  readonly id = STATS_ID;
  private readonly maxTuples: number;
  private readonly maxQueue: number;
  private readonly flushIntervalMs: number;
  private readonly maxRulesPerHour: number;
  private qSig: Signal[] = [];
  private qDet: string[] = [];
  private qOut: SignalOutcome[] = [];
  private qFind: FindingObs[] = [];
  private drainScheduled = false;
  private store: SignalStatsStore | null = null;
  private failed: string | null = null;
  private readonly signals = new Map<string, Group<SignalGroupKey>>();
  /** Hour, kind and rule → detector → outcome → group (the same groups as `signals`, reached without building a key string per observation). */
  private readonly signalIndex = new Map<string, Map<string, Map<string, Group<SignalGroupKey>>>>();
  private readonly findings = new Map<string, Group<FindingGroupKey>>();
  /** Rules with groups of their own, per hour (loaded from the database on first use). */
  private readonly rulesByHour = new Map<number, Set<string>>();
  private readonly drops = new Map<number, number>();
  private newestBucket = -1;
  private prunedBelow = -1;
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;
  private readonly m;

  constructor(private readonly opts: SignalStatsOptions) {
    this.maxTuples = Math.max(1, opts.maxTuples ?? 24);
    this.maxQueue = Math.max(1, opts.maxQueue ?? 20_000);
    this.flushIntervalMs = opts.flushIntervalMs ?? 5000;
    this.maxRulesPerHour = Math.max(1, opts.maxRulesPerHour ?? 200);
    this.log = opts.logger.child({ component: STATS_ID });
    const mm = opts.metrics;
    this.m = {
      observedSignals: mm.counter('signal_stats_observed_total', 'Observations (routed signals and findings) folded into the signal statistics', ['type']).labels({ type: 'signal' }),
      observedFindings: mm.counter('signal_stats_observed_total', 'Observations (routed signals and findings) folded into the signal statistics', ['type']).labels({ type: 'finding' }),
      dropped: mm.counter('signal_stats_dropped_total', 'Observations dropped because the statistics queue was full'),
      overflow: mm.counter('signal_stats_overflow_total', 'Tuples evicted from a full statistics group into its overflow count'),
      writes: mm.counter('signal_stats_writes_total', 'Statistics flushes written to the state database'),
    };
  }

  // --- DetectionObserver: O(1), never throws -------------------------------------------------

  signal(sig: Signal, detector: string, outcome: SignalOutcome): void {
    if (this.failed !== null) return;
    if (this.full(sig.timeNs)) return;
    this.qSig.push(sig);
    this.qDet.push(detector);
    this.qOut.push(outcome);
    this.schedule();
  }

  finding(f: Finding, emitted: Alert | null, incident: string): void {
    if (this.failed !== null) return;
    if (this.full(f.timeNs)) return;
    this.qFind.push({ f, emitted: emitted !== null, incident, at: this.qSig.length });
    this.schedule();
  }

  /** True (dropped and counted) when the queue is full. */
  private full(timeNs: bigint): boolean {
    if (this.qSig.length + this.qFind.length < this.maxQueue) return false;
    const b = bucketOfMs(nsToMs(timeNs));
    this.drops.set(b, (this.drops.get(b) ?? 0) + 1);
    this.m.dropped.inc();
    return true;
  }

  private schedule(): void {
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(() => this.drain());
    }
  }

  // --- Component --------------------------------------------------------------------------------

  async start(): Promise<void> {
    if (this.timer) return;
    this.timer = setInterval(() => this.flush(), this.flushIntervalMs);
    this.timer.unref();
  }

  async stop(_deadlineMs: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.flush();
  }

  health(): ComponentHealth {
    return this.failed !== null ? { ready: true, detail: `statistics off: ${this.failed}` } : { ready: true };
  }

  // --- Aggregation ------------------------------------------------------------------------------

  /** Fold the queue into the groups (runs on the macrotask after a push; flush runs it too). */
  drain(): void {
    this.drainScheduled = false;
    const sigs = this.qSig;
    const dets = this.qDet;
    const outs = this.qOut;
    const finds = this.qFind;
    if (sigs.length === 0 && finds.length === 0) return;
    this.qSig = [];
    this.qDet = [];
    this.qOut = [];
    this.qFind = [];
    const store = this.open();
    if (!store) return;
    try {
      let fi = 0;
      let memoSig: Signal | null = null;
      let memo: SigMemo | null = null;
      for (let i = 0; i < sigs.length; i++) {
        while (fi < finds.length && (finds[fi] as FindingObs).at <= i) this.addFinding(store, finds[fi++] as FindingObs);
        const sig = sigs[i] as Signal;
        if (sig !== memoSig || memo === null) {
          memoSig = sig;
          memo = this.memoOf(store, sig);
        }
        this.addSignal(store, memo, sig, dets[i] as string, outs[i] as SignalOutcome);
      }
      while (fi < finds.length) this.addFinding(store, finds[fi++] as FindingObs);
      this.m.observedSignals.inc(sigs.length);
      if (finds.length > 0) this.m.observedFindings.inc(finds.length);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (this.signals.size + this.findings.size > MAX_GROUPS_IN_MEMORY) this.flush();
  }

  private memoOf(store: SignalStatsStore, sig: Signal): SigMemo {
    const ms = nsToMs(sig.timeNs);
    const bucket = bucketOfMs(ms);
    this.see(bucket);
    const rule = this.ruleOf(store, bucket, sig.rule);
    const ik = `${bucket}\u0000${sig.kind}\u0000${rule}`;
    let groups = this.signalIndex.get(ik);
    if (!groups) this.signalIndex.set(ik, (groups = new Map()));
    const d = signalDims(sig);
    return { ms, groups, bucket, rule, dims: dimsKey(d.dims), ip: d.ip, example: null };
  }

  private open(): SignalStatsStore | null {
    if (this.failed !== null) return null;
    if (this.store) return this.store;
    try {
      this.store = new SignalStatsStore(this.opts.db());
      return this.store;
    } catch (err) {
      this.fail(err);
      return null;
    }
  }

  private fail(err: unknown): void {
    this.failed = errorMessage(err);
    this.qSig = [];
    this.qDet = [];
    this.qOut = [];
    this.qFind = [];
    this.signals.clear();
    this.signalIndex.clear();
    this.findings.clear();
    this.opts.metrics.errors.inc({ component: STATS_ID, code: errorCode(err) });
    this.log.error({ error: this.failed }, 'signal statistics turned off: the state database failed (detection is not affected)');
  }

  private ruleOf(store: SignalStatsStore, bucket: number, rule: string): string {
    let set = this.rulesByHour.get(bucket);
    if (!set) this.rulesByHour.set(bucket, (set = new Set(store.rulesOfBucket(bucket))));
    if (set.has(rule)) return rule;
    if (set.size >= this.maxRulesPerHour) return OTHER_RULES;
    set.add(rule);
    return rule;
  }

  private see(bucket: number): void {
    if (bucket > this.newestBucket) this.newestBucket = bucket;
  }

  private addSignal(store: SignalStatsStore, memo: SigMemo, sig: Signal, detector: string, outcome: SignalOutcome): void {
    let byOutcome = memo.groups.get(detector);
    if (!byOutcome) memo.groups.set(detector, (byOutcome = new Map()));
    let g = byOutcome.get(outcome);
    if (!g) {
      const key: SignalGroupKey = { bucket: memo.bucket, detector, kind: sig.kind, rule: memo.rule, outcome };
      g = { key, entries: store.loadSignalGroup(key), dirty: false };
      byOutcome.set(outcome, g);
      this.signals.set(`${memo.bucket}\u0000${detector}\u0000${sig.kind}\u0000${memo.rule}\u0000${outcome}`, g);
    }
    const { ms, ip } = memo;
    const e = g.entries.get(memo.dims);
    if (e) {
      e.count++;
      if (ms < e.firstMs) e.firstMs = ms;
      if (ms > e.lastMs) e.lastMs = ms;
      if (e.ip !== ip && e.ip !== '*') e.ip = e.ip === null && ip === null ? null : '*';
    } else {
      this.insert(g.entries, memo.dims, { count: 1, firstMs: ms, lastMs: ms, ip, example: (memo.example ??= signalExample(sig.alert)), evidence: null });
    }
    g.dirty = true;
  }

  private addFinding(store: SignalStatsStore, o: FindingObs): void {
    const { f, emitted, incident } = o;
    const ms = nsToMs(f.timeNs);
    const bucket = bucketOfMs(ms);
    this.see(bucket);
    const outcome = emitted ? 'emitted' : 'folded';
    const key: FindingGroupKey = { bucket, detector: f.detector, rule: f.rule, priority: f.priority, outcome };
    const gk = `${bucket}\u0000${f.detector}\u0000${f.rule}\u0000${f.priority}\u0000${outcome}`;
    let g = this.findings.get(gk);
    if (!g) this.findings.set(gk, (g = { key, entries: store.loadFindingGroup(key), dirty: false }));
    const e = g.entries.get(f.key);
    const evidence = mergeEvidence(e?.evidence ?? null, f.evidence);
    if (e) {
      e.count++;
      if (ms < e.firstMs) e.firstMs = ms;
      if (ms > e.lastMs) e.lastMs = ms;
      e.evidence = evidence;
    } else {
      const example = JSON.stringify({ time: formatTimeNs(f.timeNs), message: f.message.slice(0, MAX_EXAMPLE - 100), incident });
      this.insert(g.entries, f.key, { count: 1, firstMs: ms, lastMs: ms, ip: null, example, evidence });
    }
    g.dirty = true;
  }

  /** Insert a new tuple; a full group first evicts its least frequent tuple into the overflow. */
  private insert(entries: StoredGroup, key: string, e: StatEntry): void {
    if (entries.size - (entries.has('') ? 1 : 0) >= this.maxTuples) {
      let victim: string | null = null;
      let min: StatEntry | null = null;
      for (const [k, x] of entries) {
        if (k === '') continue;
        if (min === null || x.count < min.count || (x.count === min.count && x.lastMs < min.lastMs)) {
          min = x;
          victim = k;
        }
      }
      if (victim !== null && min !== null) {
        entries.delete(victim);
        const o = entries.get('');
        if (o) {
          o.count += min.count;
          o.firstMs = Math.min(o.firstMs, min.firstMs);
          o.lastMs = Math.max(o.lastMs, min.lastMs);
        } else entries.set('', { count: min.count, firstMs: min.firstMs, lastMs: min.lastMs, ip: null, example: null, evidence: null });
        this.m.overflow.inc();
      }
    }
    entries.set(key, e);
  }

  /** Write the changed groups (one transaction), prune, and forget groups of past hours. */
  flush(): void {
    this.drain();
    const store = this.failed === null ? this.store : null;
    if (!store) return;
    const sig = [...this.signals.values()].filter((g) => g.dirty);
    const fin = [...this.findings.values()].filter((g) => g.dirty);
    if (sig.length === 0 && fin.length === 0 && this.drops.size === 0) return;
    try {
      store.write(
        sig.map((g) => [g.key, g.entries] as const),
        fin.map((g) => [g.key, g.entries] as const),
        this.drops,
      );
      this.drops.clear();
      this.m.writes.inc();
      for (const g of [...sig, ...fin]) g.dirty = false;
      // Keep the groups of the newest two hours in memory; older ones reload when met again.
      const keep = this.newestBucket - 1;
      for (const [k, g] of this.signals) if (g.key.bucket < keep) this.signals.delete(k);
      for (const k of this.signalIndex.keys()) if (Number(k.slice(0, k.indexOf('\u0000'))) < keep) this.signalIndex.delete(k);
      for (const [k, g] of this.findings) if (g.key.bucket < keep) this.findings.delete(k);
      for (const b of this.rulesByHour.keys()) if (b < keep) this.rulesByHour.delete(b);
      this.prune(store);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Drop hours older than the retention, then the oldest hours while over `maxRows` (checked once per hour of event time). */
  private prune(store: SignalStatsStore): void {
    const below = this.newestBucket - Math.ceil(this.opts.retentionMs / HOUR_MS) + 1;
    if (below <= this.prunedBelow) return;
    this.prunedBelow = below;
    store.prune(below);
    const db = store.db;
    const rows = (): number => (db.prepare('SELECT (SELECT COUNT(*) FROM signal_stats) + (SELECT COUNT(*) FROM finding_stats) AS n').get() as { n: number }).n;
    let n = rows();
    while (n > this.opts.maxRows) {
      const oldest = (db.prepare('SELECT MIN(bucket) AS b FROM signal_stats').get() as { b: number | null }).b;
      if (oldest === null || oldest >= this.newestBucket) break;
      store.prune(oldest + 1);
      this.log.warn({ rows: n, max_rows: this.opts.maxRows }, 'signal statistics over max_rows: oldest hour deleted');
      n = rows();
    }
  }
}

/** Evidence tuples of a finding merged into what a key already had (distinct, capped). */
function mergeEvidence(prev: string | null, evidence: readonly Signal[]): string {
  let list: EvidenceTuple[] = [];
  if (prev) {
    try {
      list = JSON.parse(prev) as EvidenceTuple[];
    } catch {
      list = [];
    }
  }
  const seen = new Set(list.map((t) => `${t[0]}\u0000${t[1]}\u0000${t[2]}`));
  for (const s of evidence) {
    if (list.length >= MAX_EVIDENCE) break;
    const { dims, ip } = signalDims(s);
    const dk = dimsKey(dims);
    const k = `${s.rule}\u0000${s.kind}\u0000${dk}`;
    if (seen.has(k)) continue;
    seen.add(k);
    list.push([s.rule, s.kind, dk, ip]);
  }
  return JSON.stringify(list);
}
