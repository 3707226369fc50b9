/**
 * The detection stage: alert → signals (compiled mapping) → suppression (src/detect/suppress.ts:
 * allowlists, CI windows and workloads, learning periods; every suppression counted) → detectors
 * (deterministic state machines on event time; the engine owns one bounded state per detector,
 * which `step` mutates in place) → dedup / aggregation (one detection per key per window, repeats
 * reported as "repeated N times") → Falco-shaped detection alerts.
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
import type { LoadedRules } from './rules/types.js';
import { podLabelKeys, Suppression, type SuppressReason } from './suppress.js';
import type { DetectionObserver, Detector, Finding, Signal, SignalOutcome } from './types.js';

export interface DetectionEngineOptions {
  readonly rules: LoadedRules;
  readonly detectors: readonly Detector<unknown>[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Config `detect.forward_signal_alerts`: false forces signal-only alerts not to be forwarded. */
  readonly forwardSignalAlerts?: boolean;
  /** Observers of routed signals and findings (statistics, journal); cheap, never throwing. */
  readonly observers?: readonly DetectionObserver[];
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

const ID = 'detect/engine';

export class DetectionEngine implements DetectStage {
  readonly id = ID;
  // Set by `compile` (constructor and setRules).
  private rules!: LoadedRules;
  private mapping!: Mapping;
  private suppression!: Suppression;
  private readonly slots = new Map<string, Slot>();
  /** Enabled slots consuming each signal kind, in slot order (rebuilt with the rules or detectors). */
  private byKind = new Map<string, Slot[]>();
  private readonly dedup = new Map<string, DedupEntry>();
  /** Window end of the first dedup entry (where `sweep` would stop at once); null when empty. */
  private sweepAtNs: bigint | null = null;
  private dedupWindowNs = 0n;
  private maxNs = 0n;
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
    this.compile(opts.rules);
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
    this.compile(rules);
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
        const reason = this.suppression.signal(sig, id);
        this.observeSignal(sig, id, reason ?? 'consumed');
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
          if (this.suppression.learning(id, slot.firstNs, f.timeNs)) {
            this.suppressedCounter(id, 'learning').inc();
            continue;
          }
          const a = this.dedupe(f);
          this.observeFinding(f, a);
          if (a) out.push(a);
        }
      }
    }
    return { forward, detections: out };
  }

  private observeSignal(sig: Signal, detector: string, outcome: SignalOutcome): void {
    for (const o of this.opts.observers ?? []) {
      try {
        o.signal?.(sig, detector, outcome);
      } catch (err) {
        this.opts.metrics.errors.inc({ component: ID, code: errorCode(err) });
      }
    }
  }

  private observeFinding(f: Finding, emitted: Alert | null): void {
    for (const o of this.opts.observers ?? []) {
      try {
        o.finding?.(f, emitted, f.key);
      } catch (err) {
        this.opts.metrics.errors.inc({ component: ID, code: errorCode(err) });
      }
    }
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

  /** The mapping (with the pod labels the suppression selects on) and the suppression of these rules. */
  private compile(rules: LoadedRules): void {
    this.rules = rules;
    this.mapping = compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) });
    this.suppression = new Suppression(rules.suppress, (detector, sig, entry) => this.log.debug({ stage: detector, rule: sig.rule, allow: entry.name }, 'signal suppressed by allowlist'));
  }
}
