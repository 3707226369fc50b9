/**
 * The detection stage: alert → signals (compiled mapping) → suppression (allowlists, CI windows and
 * workloads, learning periods; every suppression counted) → detectors (pure state machines, one
 * bounded state each) → dedup / aggregation (one detection per key per window, repeats reported as
 * "repeated N times") → Falco-shaped detection alerts.
 *
 * All windows run on event time (alert.timeNs); the injected clock only stamps receive times.
 */
import { priorityRank, type Alert } from '../alert.js';
import type { Clock } from '../clock.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import { findingToAlert } from './finding-to-alert.js';
import { compileMapping, SIGNAL_RULE_PREFIX, type Mapping } from './mapping.js';
import { cidrContains, compileGlob, compileGlobs, domainMatches, parseIp } from './match.js';
import { inCiWindow, type AllowEntry, type CiWorkload, type LoadedRules } from './rules-file.js';
import type { Detector, Finding, Signal } from './types.js';

export interface DetectionEngineOptions {
  readonly rules: LoadedRules;
  readonly detectors: readonly Detector<unknown>[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Config `detect.forward_signal_alerts`: false forces signal-only alerts not to be forwarded. */
  readonly forwardSignalAlerts?: boolean;
}

interface Slot {
  det: Detector<unknown>;
  state: unknown;
  evictionsSeen: number;
  /** First event time this detector saw (learning periods). */
  firstNs: bigint | null;
}

type Inc = { inc(value?: number): void };

interface DedupEntry {
  readonly key: string;
  readonly detector: string;
  readonly windowEndNs: bigint;
  rank: number;
  count: number;
  last: Finding | null;
}

type Matcher = (s: string) => boolean;

/** Glob lists compiled to one matcher each (null: the list is empty, no condition). */
interface CompiledAllow {
  readonly index: number;
  readonly entry: AllowEntry;
  readonly images: Matcher | null;
  readonly namespaces: Matcher | null;
  readonly labels: [string, Matcher][];
  readonly exes: Matcher | null;
  readonly ancestors: Matcher | null;
}

interface CompiledWorkload {
  readonly namespaces: Matcher | null;
  readonly labels: [string, Matcher][];
  readonly images: Matcher | null;
}

export type SuppressReason = 'allowlist' | 'ci_window' | 'ci_workload' | 'learning';

const ID = 'detect/engine';

export class DetectionEngine implements DetectStage {
  readonly id = ID;
  private rules: LoadedRules;
  private mapping: Mapping;
  private allow: CompiledAllow[] = [];
  /** Allow entries applicable to a detector and a signal kind (built lazily per rules load). */
  private allowBy = new Map<string, Map<string, CompiledAllow[]>>();
  private ciDetectors = new Set<string>();
  private ciWorkloads: CompiledWorkload[] = [];
  private readonly slots = new Map<string, Slot>();
  /** Enabled slots consuming each signal kind, in slot order (rebuilt with the rules or detectors). */
  private byKind = new Map<string, Slot[]>();
  private readonly dedup = new Map<string, DedupEntry>();
  /** Window end of the first dedup entry (where `sweep` would stop at once); null when empty. */
  private sweepAtNs: bigint | null = null;
  private dedupWindowNs = 0n;
  private maxNs = 0n;
  /** Per-signal facts the suppression matchers derive (image candidates, ancestors, pod labels), for the signal in hand. */
  private memo: SigMemo = new SigMemo(null);
  /** prom-client children per label value (the label objects built once, not per call). */
  private readonly signalsBy = new Map<string, Inc>();
  private readonly suppressedBy = new Map<string, Inc>();
  private readonly log: Logger;
  private readonly m;

  constructor(private readonly opts: DetectionEngineOptions) {
    this.log = opts.logger.child({ component: ID });
    const mm = opts.metrics;
    this.m = {
      signals: mm.counter('signals_total', 'Signals the detection engine mapped from alerts, by kind', ['kind']),
      suppressed: mm.counter('suppressed_total', 'Signals or findings suppressed, by detector and reason (allowlist, ci_window, ci_workload, learning)', ['detector', 'reason']),
      evictions: mm.counter('detector_evictions_total', 'Detector state entries evicted to respect bounds', ['detector']),
      detections: mm.counter('detections_total', 'Detections emitted, by detector and priority', ['detector', 'priority']),
      deduplicated: mm.counter('detections_deduplicated_total', 'Detections folded into an earlier one of the same key within the dedup window', ['detector']),
    };
    this.rules = opts.rules;
    this.mapping = compileMapping(opts.rules.signals);
    this.compileSuppress();
    for (const d of opts.detectors) this.slots.set(d.id, { det: d, state: d.init(), evictionsSeen: 0, firstNs: null });
    this.route();
  }

  /** Which enabled slots consume which kind; the dedup window in ns. */
  private route(): void {
    this.byKind = new Map();
    for (const slot of this.slots.values()) {
      if (this.rules.detectors[slot.det.id]?.enabled === false) continue;
      for (const k of new Set(slot.det.consumes)) {
        let arr = this.byKind.get(k);
        if (!arr) this.byKind.set(k, (arr = []));
        arr.push(slot);
      }
    }
    this.dedupWindowNs = BigInt(this.rules.output.dedupWindowMs) * 1_000_000n;
  }

  private signalCounter(kind: string): Inc {
    let c = this.signalsBy.get(kind);
    if (!c) this.signalsBy.set(kind, (c = this.m.signals.labels({ kind })));
    return c;
  }

  private suppressedCounter(detector: string, reason: SuppressReason): Inc {
    const k = `${detector}|${reason}`;
    let c = this.suppressedBy.get(k);
    if (!c) this.suppressedBy.set(k, (c = this.m.suppressed.labels({ detector, reason })));
    return c;
  }

  /** Replace the rules (reload). Detectors given replace those of the same id, keeping their state. */
  setRules(rules: LoadedRules, detectors?: readonly Detector<unknown>[]): void {
    this.rules = rules;
    this.mapping = compileMapping(rules.signals);
    this.compileSuppress();
    if (detectors) {
      const ids = new Set(detectors.map((d) => d.id));
      for (const id of [...this.slots.keys()]) if (!ids.has(id)) this.slots.delete(id);
      for (const d of detectors) {
        const slot = this.slots.get(d.id);
        if (slot) slot.det = d;
        else this.slots.set(d.id, { det: d, state: d.init(), evictionsSeen: 0, firstNs: null });
      }
    }
    this.route();
    this.log.info({ signals: rules.signals.length, detectors: [...this.slots.keys()] }, 'detection rules in force');
  }

  get currentRules(): LoadedRules {
    return this.rules;
  }

  /** Map, suppress, detect, dedup. Never throws for bad input. */
  process(alert: Alert): { readonly forward: boolean; readonly detections: readonly Alert[] } {
    const forwardSignals = this.rules.output.forwardSignalAlerts && this.opts.forwardSignalAlerts !== false;
    const forward = forwardSignals || !alert.rule.startsWith(SIGNAL_RULE_PREFIX);
    if (alert.origin.kind === 'detector') return { forward: true, detections: [] };
    if (alert.timeNs > this.maxNs) this.maxNs = alert.timeNs;
    const out: Alert[] = this.sweepAtNs !== null && this.maxNs >= this.sweepAtNs ? this.sweep(this.maxNs) : [];
    let signals: Signal[];
    try {
      signals = this.mapping.mapAlert(alert);
    } catch (err) {
      this.opts.metrics.errors.inc({ component: ID, code: errorCode(err) });
      this.log.warn({ rule: alert.rule, error: errorMessage(err) }, 'signal mapping failed');
      return { forward, detections: out };
    }
    for (const sig of signals) {
      this.signalCounter(sig.kind).inc();
      const slots = this.byKind.get(sig.kind);
      if (!slots) continue;
      for (const slot of slots) {
        const id = slot.det.id;
        const reason = this.suppressedSignal(sig, id);
        if (reason) {
          this.suppressedCounter(id, reason).inc();
          continue;
        }
        if (slot.firstNs === null) slot.firstNs = sig.timeNs;
        let findings: readonly Finding[];
        try {
          const r = slot.det.step(slot.state, sig, this.maxNs);
          slot.state = r.state;
          findings = r.findings;
        } catch (err) {
          this.opts.metrics.errors.inc({ component: `detect/${id}`, code: errorCode(err) });
          this.log.error({ stage: id, rule: alert.rule, error: errorMessage(err) }, 'detector failed on a signal; signal skipped');
          continue;
        }
        const ev = slot.det.evictions(slot.state);
        if (ev > slot.evictionsSeen) {
          this.m.evictions.inc({ detector: id }, ev - slot.evictionsSeen);
          slot.evictionsSeen = ev;
        }
        if (findings.length === 0) continue;
        for (const f of findings) {
          const learn = this.rules.suppress.learning[id];
          if (learn !== undefined && learn > 0 && slot.firstNs !== null && f.timeNs < slot.firstNs + BigInt(learn) * 1_000_000n) {
            this.suppressedCounter(id, 'learning').inc();
            continue;
          }
          const a = this.dedupe(f);
          if (a) out.push(a);
        }
      }
    }
    return { forward, detections: out };
  }

  /** Close every dedup window now (end of a replay, shutdown): summaries of pending repeats. */
  flush(): Alert[] {
    const out: Alert[] = [];
    for (const e of this.dedup.values()) if (e.count > 0 && e.last) out.push(this.emit(e.last, e.count));
    this.dedup.clear();
    this.sweepAtNs = null;
    return out;
  }

  /** Close dedup windows that ended before event time `nowNs` (called on every alert). */
  sweep(nowNs: bigint): Alert[] {
    const out: Alert[] = [];
    for (const [k, e] of this.dedup) {
      if (e.windowEndNs > nowNs) break; // insertion order = window order (one window length)
      this.dedup.delete(k);
      if (e.count > 0 && e.last) out.push(this.emit(e.last, e.count));
    }
    this.sweepAtNs = this.headEndNs();
    return out;
  }

  /** Window end of the first (oldest-inserted) dedup entry: the loop above stops there, so no sweep is due before it. */
  private headEndNs(): bigint | null {
    const first = this.dedup.values().next();
    return first.done ? null : first.value.windowEndNs;
  }

  private dedupe(f: Finding): Alert | null {
    const windowNs = this.dedupWindowNs;
    const rank = priorityRank(f.priority);
    const e = this.dedup.get(f.key);
    if (!e || f.timeNs >= e.windowEndNs) {
      let repeated = 0;
      if (e) {
        this.dedup.delete(f.key);
        repeated = e.count;
      }
      if (this.dedup.size >= this.rules.output.maxDedupKeys) {
        const oldest = this.dedup.keys().next();
        if (!oldest.done) {
          this.dedup.delete(oldest.value);
          this.m.evictions.inc({ detector: 'engine/dedup' });
        }
      }
      const windowEndNs = f.timeNs + windowNs;
      this.dedup.set(f.key, { key: f.key, detector: f.detector, windowEndNs, rank, count: 0, last: null });
      this.sweepAtNs = this.headEndNs();
      return this.emit(f, repeated);
    }
    if (rank < e.rank) {
      // More severe than what was sent: escalate now, folding the repeats so far.
      e.rank = rank;
      const repeated = e.count;
      e.count = 0;
      e.last = null;
      return this.emit(f, repeated);
    }
    e.count++;
    e.last = f;
    this.m.deduplicated.inc({ detector: f.detector });
    return null;
  }

  private emit(f: Finding, repeated: number): Alert {
    this.m.detections.inc({ detector: f.detector, priority: f.priority });
    const a = findingToAlert(f, { repeated, windowMs: this.rules.output.dedupWindowMs, receivedAtMs: this.opts.clock.now() });
    this.log.info({ rule: a.rule, priority: a.priority, stage: f.detector, score: f.score, repeated }, 'detection');
    return a;
  }

  // -------------------------------------------------------------------------------------------
  // Suppression

  private compileSuppress(): void {
    const globs = (xs: readonly string[]): Matcher | null => (xs.length ? compileGlobs(xs) : null);
    const labels = (o: Readonly<Record<string, string>>): [string, Matcher][] => Object.entries(o).map(([k, v]) => [k, compileGlob(v)]);
    this.allow = this.rules.suppress.allow.map((entry, index) => ({
      index,
      entry,
      images: globs(entry.images),
      namespaces: globs(entry.namespaces),
      labels: labels(entry.podLabels),
      exes: globs(entry.exes),
      ancestors: globs(entry.ancestors),
    }));
    this.allowBy = new Map();
    this.ciDetectors = new Set(this.rules.suppress.ci.detectors);
    this.ciWorkloads = this.rules.suppress.ci.workloads.map((w: CiWorkload) => ({ namespaces: globs(w.namespaces), labels: labels(w.podLabels), images: globs(w.images) }));
  }

  /** Why a signal is suppressed for a detector, or null. */
  suppressedSignal(sig: Signal, detector: string): SuppressReason | null {
    let byKind = this.allowBy.get(detector);
    if (!byKind) this.allowBy.set(detector, (byKind = new Map()));
    let entries = byKind.get(sig.kind);
    if (!entries) {
      entries = this.allow.filter((a) => (!a.entry.detectors || a.entry.detectors.includes(detector)) && (!a.entry.kinds || a.entry.kinds.includes(sig.kind)));
      byKind.set(sig.kind, entries);
    }
    const ci = this.ciDetectors.has(detector);
    if (entries.length === 0 && !ci) return null;
    const memo = this.memo.sig === sig ? this.memo : (this.memo = new SigMemo(sig));
    for (const a of entries) {
      const e = a.entry;
      // Entries shared by several detectors are matched once per signal.
      let hit = memo.allow[a.index];
      if (hit === undefined) memo.allow[a.index] = hit = allowMatches(a, sig, memo);
      if (hit) {
        this.log.debug({ stage: detector, rule: sig.rule, allow: e.name }, 'signal suppressed by allowlist');
        return 'allowlist';
      }
    }
    if (ci) {
      if (this.rules.suppress.ci.windows.some((w) => inCiWindow(w, sig.timeNs))) return 'ci_window';
      memo.ciWorkload ??= this.ciWorkloads.some((w) => workloadMatches(w, sig, memo));
      if (memo.ciWorkload) return 'ci_workload';
    }
    return null;
  }
}

/** What the matchers derive from one signal, computed at most once per signal. */
class SigMemo {
  images: string[] | undefined;
  ancestors: string[] | undefined;
  labels: Map<string, string | null> | undefined;
  ciWorkload: boolean | undefined;
  readonly allow: (boolean | undefined)[] = [];
  constructor(readonly sig: Signal | null) {}
}

function memoLabel(memo: SigMemo, sig: Signal, key: string): string | null {
  const m = (memo.labels ??= new Map());
  let v = m.get(key);
  if (v === undefined) m.set(key, (v = podLabel(sig, key)));
  return v;
}

function podLabel(sig: Signal, key: string): string | null {
  const f = sig.alert.outputFields;
  const direct = f?.[`k8s.pod.label[${key}]`] ?? f?.[`k8s.pod.label.${key}`];
  if (typeof direct === 'string' && direct !== '<NA>') return direct;
  const all = f?.['k8s.pod.labels'] ?? sig.alert.companion['k8s.pod.labels'];
  if (typeof all === 'string') {
    // `foo1:bar1,foo2:bar2` (Falco) or `[foo1:bar1, foo2:bar2]` / `k=v`
    for (const part of all.replace(/^\[|\]$/g, '').split(',')) {
      const m = /^\s*([^:=]+)[:=](.*)$/.exec(part);
      if (m && (m[1] as string).trim() === key) return (m[2] as string).trim();
    }
  }
  return null;
}

const ANCESTOR_KEYS = ['proc.pname', 'proc.pexepath', 'proc.pexe', ...[1, 2, 3, 4, 5, 6, 7, 8, 9].flatMap((i) => [`proc.aname[${i}]`, `proc.aexepath[${i}]`])];
function ancestorsOf(sig: Signal): string[] {
  const f = sig.alert.outputFields;
  const out: string[] = [];
  const add = (v: unknown): void => {
    if (typeof v === 'string' && v !== '' && v !== '<NA>') out.push(v);
  };
  if (!f) return out;
  for (const k of ANCESTOR_KEYS) add(f[k]);
  return out;
}

function imageCandidates(sig: Signal): string[] {
  const repo = sig.imageRepository;
  if (!repo) return [];
  return sig.imageTag ? [repo, `${repo}:${sig.imageTag}`] : [repo];
}

function allowMatches(a: CompiledAllow, sig: Signal, memo: SigMemo): boolean {
  if (a.images) {
    const m = a.images;
    if (!(memo.images ??= imageCandidates(sig)).some((x) => m(x))) return false;
  }
  if (a.namespaces && !(sig.namespace !== null && a.namespaces(sig.namespace))) return false;
  for (const [k, m] of a.labels) {
    const v = memoLabel(memo, sig, k);
    if (v === null || !m(v)) return false;
  }
  if (a.exes) {
    const exe = sig.proc.exepath ?? sig.proc.name;
    if (exe === null || !(a.exes(exe) || (sig.proc.name !== null && a.exes(sig.proc.name)))) return false;
  }
  if (a.ancestors) {
    const m = a.ancestors;
    if (!(memo.ancestors ??= ancestorsOf(sig)).some((x) => m(x))) return false;
  }
  if (a.entry.destCidrs.length) {
    const ip = sig.net.remoteIp ? parseIp(sig.net.remoteIp) : null;
    if (!ip || !a.entry.destCidrs.some((c) => cidrContains(c, ip))) return false;
  }
  if (a.entry.destDomains.length) {
    const d = sig.net.remoteDomain;
    if (!d || !a.entry.destDomains.some((s) => domainMatches(s, d))) return false;
  }
  return true;
}

function workloadMatches(w: CompiledWorkload, sig: Signal, memo: SigMemo): boolean {
  if (w.namespaces && !(sig.namespace !== null && w.namespaces(sig.namespace))) return false;
  for (const [k, m] of w.labels) {
    const v = memoLabel(memo, sig, k);
    if (v === null || !m(v)) return false;
  }
  if (w.images) {
    const m = w.images;
    if (!(memo.images ??= imageCandidates(sig)).some((x) => m(x))) return false;
  }
  return true;
}
