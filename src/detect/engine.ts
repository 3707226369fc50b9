/**
 * The detection stage: alert → signals (compiled mapping) → suppression (src/detect/suppress.ts:
 * allowlists, CI windows and workloads, learning periods; every suppression counted) → detectors
 * (deterministic state machines on event time; the engine owns one bounded state per detector,
 * which `step` mutates in place) → incidents and the notify policy (src/detect/notify.ts: one
 * detection when an incident opens, again when it gets worse or a new technique appears, else at
 * most once per `output.renotify` with the folded count) → Falco-shaped detection alerts.
 *
 * All windows run on event time (alert.timeNs); the injected clock only stamps receive times and
 * detection ids. The state (detectors', incidents, learning-period starts) is handed to the
 * checkpoints (src/detect/checkpoint.ts) through {@link DetectionEngine.checkpointParts} and
 * {@link DetectionEngine.restorePart}.
 */
import { priorityRank, type Alert } from '../alert.js';
import type { Clock } from '../clock.js';
import type { ClusterSeries } from '../cluster/types.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import type { Counter } from 'prom-client';
import type { DetectStage } from '../pipeline/types.js';
import { SignalFairShare, type FairShareSettings } from '../limits.js';
import { AlertIdGenerator } from '../store/alert-id.js';
import { EventClock, type ClockTick } from './event-clock.js';
import { restoreInto, stateEntries } from './codec.js';
import { findingToAlert } from './finding-to-alert.js';
import { compileMapping, SIGNAL_RULE_PREFIX, type Mapping } from './mapping.js';
import { Notifier, type NotifyDecision, type NotifySettings, type NotifyState } from './notify.js';
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
  /** Watchers of every routed signal and every finding (journal, statistics); errors are caught and counted. */
  readonly observers?: readonly DetectionObserver[];
  /** Per-container signal rate in front of the detectors (src/limits.ts SignalFairShare); absent: none. */
  readonly fairShare?: FairShareSettings;
  /** Other nodes' pooled beacon points (src/cluster/series.ts), fed to the detectors between steps; absent: this node only. */
  readonly remote?: Pick<ClusterSeries, 'drain'>;
}

interface Slot {
  det: Detector<unknown>;
  state: unknown;
  evictionsSeen: number;
  /** First event time this detector saw (learning periods). */
  firstNs: bigint | null;
  /** Stepped since the last checkpoint. */
  dirty: boolean;
}

type Inc = { inc(value?: number): void };

/** Id of the engine's own part of a checkpoint (incidents, learning-period starts). */
export const ENGINE_STATE_ID = 'engine';
/** Version of the engine part's shape. */
export const ENGINE_STATE_VERSION = 1;
/** Metric label of the incidents' bounded memory. */
export const NOTIFY_LABEL = 'engine/notify';

/** The engine's own state, as checkpointed. */
export interface EngineMemory {
  readonly maxNs: bigint;
  /** Detector id → first event time it saw (learning periods). */
  readonly first: Map<string, bigint>;
  readonly notify: NotifyState;
}

/** One part of a checkpoint: a detector's state or the engine's memory. */
export interface StatePart {
  readonly id: string;
  readonly version: number;
  readonly state: unknown;
}

export type RestoreResult = 'restored' | 'version' | 'unknown';

const ID = 'detect/engine';
/** Pooled series taken from the cluster store per alert (src/cluster/series.ts). */
const REMOTE_PER_ALERT = 64;

function notifySettings(rules: LoadedRules): NotifySettings {
  return { renotifyMs: rules.output.renotifyMs, incidentIdleMs: rules.output.incidentIdleMs, maxIncidents: rules.output.maxIncidents };
}

export class DetectionEngine implements DetectStage {
  readonly id = ID;
  // Set by `compile` (constructor and setRules).
  private rules!: LoadedRules;
  private mapping!: Mapping;
  private suppression!: Suppression;
  private readonly slots = new Map<string, Slot>();
  /** Enabled slots consuming each signal kind, in slot order (rebuilt with the rules or detectors). */
  private byKind = new Map<string, Slot[]>();
  private readonly notifier: Notifier;
  private notifyEvictionsSeen = 0;
  /** The incidents or a learning-period start changed since the last checkpoint. */
  private memoryDirty = false;
  /** The part being encoded across event-loop turns (src/detect/checkpoint.ts), unchanged until released. */
  private held: { readonly id: string; readonly finish: () => void; readonly released: Promise<void>; readonly release: () => void } | null = null;
  /** The detection clock (event time; one alert cannot move it far: src/detect/event-clock.ts). */
  private readonly eventClock = new EventClock();
  private maxNs = 0n;
  private readonly ids: AlertIdGenerator;
  /** prom-client children per label value (the label objects built once, not per call). */
  private readonly signalsBy = new Map<string, Inc>();
  private readonly suppressedBy = new Map<string, Inc>();
  private readonly findingsBy = new Map<string, Inc>();
  private readonly foldedBy = new Map<string, Inc>();
  private readonly log: Logger;
  /** Observer failures are logged at most once a minute (every one is counted). */
  private readonly observerLog: RateLimitedLog;
  /** Fair share of the detectors between containers (null: off). */
  private readonly fair: SignalFairShare | null;
  private readonly m;

  constructor(private readonly opts: DetectionEngineOptions) {
    this.log = opts.logger.child({ component: ID });
    const mm = opts.metrics;
    this.m = {
      signals: mm.counter('signals_total', 'Signals the detection engine mapped from alerts, by kind', ['kind']),
      suppressed: mm.counter('suppressed_total', 'Signals or findings suppressed, by detector and reason (allowlist, ci_window, ci_workload, learning)', ['detector', 'reason']),
      evictions: mm.counter('detector_evictions_total', 'Detector state entries (and incidents: detector="engine/notify") evicted to respect bounds', ['detector']),
      findings: mm.counter('detector_findings_total', 'Findings detectors produced (before learning-period suppression and the notify policy), by detector', ['detector']),
      detections: mm.counter('detections_total', 'Detections emitted, by detector and priority', ['detector', 'priority']),
      folded: mm.counter('detections_folded_total', 'Findings folded into an open incident by the notify policy (reported as "repeated N times" on its next detection), by detector', ['detector']),
      observerErrors: mm.counter('detect_observer_errors_total', 'Errors thrown by detection observers (journal, statistics), caught by the engine', ['hook']),
      clock: mm.counter('detect_clock_events_total', 'Alerts whose event time lay more than an hour from the detection clock (outlier_ahead / outlier_behind: the clock stayed), and clock jumps after 3 agreeing ones (jump_ahead / jump_behind)', ['event']),
    };
    const sizes = (): { id: string; entries: number }[] => this.stateSizes();
    mm.gauge('detector_state_entries', 'Entries a detector state holds at its top level (maps, sets, lists); detector="engine/notify": open incidents', ['detector'], function () {
      this.reset();
      for (const s of sizes()) this.set({ detector: s.id }, s.entries);
    });
    this.observerLog = rateLimited(this.log, { intervalMs: 60_000, now: () => opts.clock.monotonic(), onSuppressed: countSuppressed(mm, ID) });
    this.ids = new AlertIdGenerator(() => opts.clock.now());
    this.fair = opts.fairShare && opts.fairShare.ratePerSecond > 0 ? new SignalFairShare(opts.fairShare, mm, this.log, () => opts.clock.monotonic()) : null;
    this.notifier = new Notifier(notifySettings(opts.rules));
    this.compile(opts.rules);
    for (const d of opts.detectors) this.slots.set(d.id, { det: d, state: d.init(), evictionsSeen: 0, firstNs: null, dirty: true });
    this.route();
  }

  /** Which enabled slots consume which kind. */
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
  }

  // Per-signal and per-finding counts are batched (added at scrape, src/metrics.ts).
  private signalCounter(kind: string): Inc {
    let c = this.signalsBy.get(kind);
    if (!c) this.signalsBy.set(kind, (c = this.opts.metrics.batched(this.m.signals, { kind })));
    return c;
  }

  private suppressedCounter(detector: string, reason: SuppressReason): Inc {
    const k = `${detector}|${reason}`;
    let c = this.suppressedBy.get(k);
    if (!c) this.suppressedBy.set(k, (c = this.opts.metrics.batched(this.m.suppressed, { detector, reason })));
    return c;
  }

  /** A batched child of a counter labelled by detector (findings, folds). */
  private byDetector(counter: Counter<'detector'>, cache: Map<string, Inc>, detector: string): Inc {
    let c = cache.get(detector);
    if (!c) cache.set(detector, (c = this.opts.metrics.batched(counter, { detector })));
    return c;
  }

  /** Replace the rules (reload). Detectors given replace those of the same id, keeping their state. */
  setRules(rules: LoadedRules, detectors?: readonly Detector<unknown>[]): void {
    if (this.held) this.finishHold();
    this.compile(rules);
    this.notifier.configure(notifySettings(rules));
    if (detectors) {
      const ids = new Set(detectors.map((d) => d.id));
      for (const id of [...this.slots.keys()]) if (!ids.has(id)) this.slots.delete(id);
      for (const d of detectors) {
        const slot = this.slots.get(d.id);
        if (slot) slot.det = d;
        else this.slots.set(d.id, { det: d, state: d.init(), evictionsSeen: 0, firstNs: null, dirty: true });
      }
    }
    this.route();
    this.log.info({ signals: rules.signals.length, detectors: [...this.slots.keys()] }, 'detection rules in force');
  }

  /** Map, suppress, detect, notify. Never throws for bad input. */
  process(alert: Alert): { readonly forward: boolean; readonly detections: readonly Alert[] } {
    if (this.held) this.finishHold();
    const forwardSignals = this.rules.output.forwardSignalAlerts && this.opts.forwardSignalAlerts !== false;
    const forward = forwardSignals || !alert.rule.startsWith(SIGNAL_RULE_PREFIX);
    if (alert.origin.kind === 'detector') return { forward: true, detections: [] };
    const tick = this.eventClock.observe(alert.timeNs);
    if (tick !== 'in') this.clockTick(tick, alert);
    this.maxNs = this.eventClock.now;
    if (this.opts.remote) this.feedRemote(this.opts.remote);
    let signals: readonly Signal[];
    try {
      signals = this.mapping.mapAlert(alert);
    } catch (err) {
      this.opts.metrics.errors.inc({ component: ID, code: errorCode(err) });
      this.log.warn({ rule: alert.rule, error: errorMessage(err) }, 'signal mapping failed');
      return { forward, detections: [] };
    }
    // Fair share: a container over its signal rate has the excess dropped (counted); the alert is still forwarded.
    if (this.fair !== null) signals = this.fair.admit(signals);
    let found: Finding[] | null = null;
    for (const sig of signals) {
      this.signalCounter(sig.kind).inc();
      const slots = this.byKind.get(sig.kind);
      if (!slots) continue;
      for (const slot of slots) {
        const id = slot.det.id;
        const reason = this.suppression.signal(sig, id);
        if (reason) {
          this.suppressedCounter(id, reason).inc();
          this.observeSignal(sig, id, reason);
          continue;
        }
        if (slot.firstNs === null) {
          slot.firstNs = sig.timeNs;
          this.memoryDirty = true;
        }
        this.observeSignal(sig, id, this.suppression.learning(id, slot.firstNs, sig.timeNs) ? 'learning' : 'consumed');
        slot.dirty = true;
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
        for (const f of findings) {
          this.byDetector(this.m.findings, this.findingsBy, id).inc();
          if (this.suppression.learning(id, slot.firstNs, f.timeNs)) {
            this.suppressedCounter(id, 'learning').inc();
            continue;
          }
          (found ??= []).push(f);
        }
      }
    }
    if (found === null) return { forward, detections: [] };
    return { forward, detections: this.notify(found) };
  }

  /**
   * The notify policy over the findings of one alert: most severe first, so the pieces of one
   * chain completed by the same alert (several arms, several keys) become one detection.
   */
  private notify(found: Finding[]): Alert[] {
    if (found.length > 1) found.sort((a, b) => priorityRank(a.priority) - priorityRank(b.priority));
    const out: Alert[] = [];
    this.memoryDirty = true;
    for (const f of found) {
      const d = this.notifier.decide(f, this.maxNs);
      let a: Alert | null = null;
      if (d.reason === null) this.byDetector(this.m.folded, this.foldedBy, f.detector).inc();
      else out.push((a = this.emit(f, d)));
      this.observeFinding(f, a, d.incident);
    }
    const ev = this.notifier.evicted;
    if (ev > this.notifyEvictionsSeen) {
      this.m.evictions.inc({ detector: NOTIFY_LABEL }, ev - this.notifyEvictionsSeen);
      this.notifyEvictionsSeen = ev;
    }
    return out;
  }

  private emit(f: Finding, d: NotifyDecision): Alert {
    this.m.detections.inc({ detector: f.detector, priority: f.priority });
    const a = this.ids.ensure(
      findingToAlert(f, {
        incident: d.incident,
        update: d.reason === 'new' ? null : d.reason,
        repeated: d.repeated,
        repeatedSinceNs: d.sinceNs,
        receivedAtMs: this.opts.clock.now(),
      }),
    );
    this.log.info({ rule: a.rule, priority: a.priority, stage: f.detector, score: f.score, incident: d.incident, update: d.reason, repeated: d.repeated, alert_id: a.companion['alert_id'] }, 'detection');
    return a;
  }

  private observeSignal(sig: Signal, detector: string, outcome: SignalOutcome): void {
    const obs = this.opts.observers;
    if (!obs) return;
    for (const o of obs) {
      if (!o.signal) continue;
      try {
        o.signal(sig, detector, outcome);
      } catch (err) {
        this.observerFailed('signal', err);
      }
    }
  }

  private observeFinding(f: Finding, emitted: Alert | null, incident: string): void {
    const obs = this.opts.observers;
    if (!obs) return;
    for (const o of obs) {
      if (!o.finding) continue;
      try {
        o.finding(f, emitted, incident);
      } catch (err) {
        this.observerFailed('finding', err);
      }
    }
  }

  private observerFailed(hook: 'signal' | 'finding', err: unknown): void {
    this.m.observerErrors.inc({ hook });
    this.observerLog({ stage: hook, error: errorMessage(err) }, 'detection observer failed (ignored; counted in detect_observer_errors_total)');
  }

  // -------------------------------------------------------------------------------------------
  // State for checkpoints (src/detect/checkpoint.ts)

  /**
   * The parts of the state to checkpoint: those changed since the last {@link markSaved} (every
   * part with `all`). The states are the live objects: encode them before the next `process`.
   */
  checkpointParts(all = false): StatePart[] {
    const parts: StatePart[] = [];
    for (const slot of this.slots.values()) if (all || slot.dirty) parts.push({ id: slot.det.id, version: slot.det.stateVersion ?? 1, state: slot.state });
    if (all || this.memoryDirty) parts.push({ id: ENGINE_STATE_ID, version: ENGINE_STATE_VERSION, state: this.memory() });
    return parts;
  }

  /** One part, as it is now (null: no such detector). */
  checkpointPart(id: string): StatePart | null {
    if (id === ENGINE_STATE_ID) return { id, version: ENGINE_STATE_VERSION, state: this.memory() };
    const slot = this.slots.get(id);
    return slot ? { id, version: slot.det.stateVersion ?? 1, state: slot.state } : null;
  }

  /** These parts are encoded (`saved` true: unchanged until their next step) or failed to be stored (false: due again). */
  markSaved(ids: readonly string[], saved = true): void {
    for (const id of ids) {
      if (id === ENGINE_STATE_ID) this.memoryDirty = !saved;
      else {
        const slot = this.slots.get(id);
        if (slot) slot.dirty = !saved;
      }
    }
  }

  /**
   * Hold one part unchanged while it is encoded across turns of the event loop: until
   * {@link release}, {@link ready} gives the pipeline a promise to wait on before its next alert.
   * Whatever changes the state meanwhile (process, setRules, restorePart: a caller that did not
   * wait) first calls `finish`, which must end the encoding at once and release. One part at a
   * time; null: no such part.
   */
  hold(id: string, finish: () => void): StatePart | null {
    if (this.held) this.finishHold();
    const p = this.checkpointPart(id);
    if (!p) return null;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    this.held = { id, finish, released, release };
    return p;
  }

  /** The held part may change again (no-op when it is not held). */
  release(id: string): void {
    const h = this.held;
    if (!h || h.id !== id) return;
    this.held = null;
    h.release();
  }

  /** Undefined when {@link process} may run now; else a promise resolved when the held part is released. */
  ready(): Promise<void> | undefined {
    return this.held?.released;
  }

  private finishHold(): void {
    const h = this.held;
    if (!h) return;
    try {
      h.finish();
    } finally {
      this.release(h.id); // whatever finish did, the state is not held past this point
    }
  }

  /** An event time far from the detection clock: counted; a jump is logged (rare: a clock step). */
  private clockTick(tick: Exclude<ClockTick, 'in'>, alert: Alert): void {
    this.m.clock.inc({ event: tick });
    if (tick === 'jump_ahead' || tick === 'jump_behind') {
      this.log.warn({ rule: alert.rule, event: tick, clock: this.eventClock.now.toString() }, 'detection clock jumped: the event times of the last alerts agree on a new time (a clock step on the node)');
    } else {
      this.observerLog({ rule: alert.rule, event: tick, clock: this.eventClock.now.toString(), time: alert.time }, 'alert time far from the detection clock: the clock stays (a wrong or forged time cannot end every window)');
    }
  }

  private memory(): EngineMemory {
    const first = new Map<string, bigint>();
    for (const [id, slot] of this.slots) if (slot.firstNs !== null) first.set(id, slot.firstNs);
    return { maxNs: this.maxNs, first, notify: this.notifier.state };
  }

  /**
   * Restore one checkpointed part (before the first alert): `version` must be the part's current
   * version (else `version`: the part starts fresh), an unknown id is ignored (`unknown`). The
   * decoded state is restored into a fresh `init()` state (src/detect/codec.ts `restoreInto`).
   * Throws when the decoded value does not fit (the caller starts that part fresh).
   */
  restorePart(id: string, version: number, decoded: unknown): RestoreResult {
    if (this.held) this.finishHold();
    if (id === ENGINE_STATE_ID) {
      if (version !== ENGINE_STATE_VERSION) return 'version';
      const mem = decoded as Partial<EngineMemory> | null;
      if (!mem || typeof mem !== 'object' || !(mem.first instanceof Map) || typeof mem.maxNs !== 'bigint' || !mem.notify) throw new TypeError('engine state: missing maxNs, first or notify');
      const notify = restoreInto(this.notifier.init(), mem.notify);
      this.notifier.restore(notify);
      this.notifyEvictionsSeen = this.notifier.evicted;
      this.eventClock.restore(mem.maxNs);
      this.maxNs = this.eventClock.now;
      for (const [detector, ns] of mem.first) {
        const slot = this.slots.get(detector);
        if (slot && typeof ns === 'bigint') slot.firstNs = ns;
      }
      this.memoryDirty = false;
      return 'restored';
    }
    const slot = this.slots.get(id);
    if (!slot) return 'unknown';
    if (version !== (slot.det.stateVersion ?? 1)) return 'version';
    slot.state = restoreInto(slot.det.init(), decoded);
    slot.evictionsSeen = slot.det.evictions(slot.state);
    slot.dirty = false;
    return 'restored';
  }

  /**
   * Other nodes' input (pooled beacon points) between steps: drained here, on the alert path, so
   * the detectors see it in order with their signals, on the detection clock (never before the
   * first alert: there is no clock yet). Bounded per alert; the rest waits in the store's inbox.
   */
  private feedRemote(remote: Pick<ClusterSeries, 'drain'>): void {
    if (this.maxNs === 0n) return;
    const input = remote.drain(REMOTE_PER_ALERT);
    if (input.length === 0) return;
    for (const slot of this.slots.values()) {
      if (!slot.det.remote || this.rules.detectors[slot.det.id]?.enabled === false) continue;
      try {
        slot.det.remote(slot.state, input, this.maxNs);
        slot.dirty = true;
      } catch (err) {
        this.opts.metrics.errors.inc({ component: `detect/${slot.det.id}`, code: errorCode(err) });
        this.log.error({ stage: slot.det.id, error: errorMessage(err) }, 'detector failed on other nodes\' input; input skipped');
      }
    }
  }

  /** Entries held per detector state and by the incidents (the state-size gauge). */
  stateSizes(): { id: string; entries: number }[] {
    const out: { id: string; entries: number }[] = [];
    for (const [id, slot] of this.slots) out.push({ id, entries: stateEntries(slot.state) });
    out.push({ id: NOTIFY_LABEL, entries: this.notifier.size });
    return out;
  }

  /** The mapping (with the pod labels the suppression selects on) and the suppression of these rules. */
  private compile(rules: LoadedRules): void {
    this.rules = rules;
    this.mapping = compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) });
    this.suppression = new Suppression(rules.suppress, (detector, sig, entry) => this.log.debug({ stage: detector, rule: sig.rule, allow: entry.name }, 'signal suppressed by allowlist'));
    for (const w of rules.warnings) this.log.warn(`${rules.file}: ${w}`);
  }
}
