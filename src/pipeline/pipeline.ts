/**
 * The processing loop: intake → enrich (parallel, budgeted, order kept) → detect → route → sinks.
 */
import { isEmptyRecord, withCompanionRecord, withEnrichment, type Alert, type EnrichValue } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { BatchedCount, Metrics } from '../metrics.js';
import { AlertIdGenerator } from '../store/alert-id.js';
import type { Router } from './router.js';
import type { DetectStage, Enricher, PipelineIntake, Sink } from './types.js';

/** Time an enricher gets after the budget's abort to hand back partial results. */
const GRACE_MS = 5;
/** Alerts handled back to back without waiting for anything before the loop lets I/O in (acks, timers). */
const YIELD_EVERY = 64;

export interface PipelineDeps {
  readonly intake: PipelineIntake;
  readonly enrichers: readonly Enricher[];
  readonly enrichBudgetMs: number;
  readonly detect: DetectStage | null;
  /**
   * Undefined when `detect` may take an alert now, else a promise to wait on first (a part of the
   * detection state is being checkpointed in slices and must not change meanwhile).
   */
  readonly detectReady?: () => Promise<void> | undefined;
  readonly router: Router;
  readonly sinks: readonly Sink[];
  readonly concurrency: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Called for every alert after it was handed to all sinks (tests, demo output, metrics). */
  readonly onForwarded?: (a: Alert) => void;
}

export class Pipeline implements Component {
  readonly id = 'pipeline';
  private running: Promise<void> | null = null;
  private readonly enrichLatency;
  private processed = 0;
  /** Detections get their `companion.alert_id` when emitted. */
  private readonly ids = new AlertIdGenerator();

  private readonly receivedCount: BatchedCount;
  private readonly sentCount: BatchedCount;
  private readonly signalOnly: BatchedCount;

  constructor(private readonly d: PipelineDeps) {
    // Counted per alert: batched, added at scrape.
    this.receivedCount = d.metrics.batched(d.metrics.received, { component: 'pipeline' });
    this.sentCount = d.metrics.batched(d.metrics.sent, { component: 'pipeline' });
    this.signalOnly = d.metrics.batched(d.metrics.discarded, { component: 'detect', reason: 'signal_only' });
    this.enrichLatency = d.metrics.histogram('enrich_duration_seconds', 'Time spent enriching one alert that waited for a lookup (cache misses, reverse DNS); alerts answered from caches are not observed', [], [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
  }

  health(): ComponentHealth {
    return { ready: true, detail: `${this.processed} processed` };
  }

  async start(): Promise<void> {
    this.running ??= this.loop();
  }

  /** Closes the intake, then drains what it still holds into the sinks within the deadline. */
  async stop(deadlineMs: number): Promise<void> {
    this.d.intake.close();
    if (!this.running) return;
    const left = Math.max(0, deadlineMs - Date.now());
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise<void>((r) => (t = setTimeout(r, left)))]);
    clearTimeout(t);
  }

  /**
   * Take, enrich (a window of `concurrency` alerts, order kept), detect, route, emit. Every step
   * that can answer at once (an intake with alerts waiting, enrichers answering from cache, no
   * sink that makes it wait) is taken without a promise; the loop lets I/O in every
   * {@link YIELD_EVERY} alerts it handled without waiting.
   */
  private async loop(): Promise<void> {
    const window: (Alert | Promise<Alert>)[] = [];
    const { intake, concurrency } = this.d;
    let run = 0;
    for (;;) {
      // Fill the window without waiting when alerts are queued; wait only when it is empty.
      while (window.length < concurrency && (window.length === 0 || intake.depth > 0)) {
        let a = intake.takeNow ? intake.takeNow() : undefined;
        if (a === undefined) {
          a = await intake.take();
          run = 0;
        }
        if (a === null) break;
        window.push(this.enrich(a));
      }
      const head = window.shift();
      if (head === undefined) {
        // closed and drained: emit what the detectors still hold (dedup summaries)
        await this.flushDetections();
        return;
      }
      let alert: Alert;
      if (head instanceof Promise) {
        alert = await head;
        run = 0;
      } else alert = head;
      const held = this.d.detectReady?.();
      if (held !== undefined) {
        await held;
        run = 0;
      }
      const after = this.afterEnrich(alert);
      if (after !== undefined) {
        await after;
        run = 0;
      } else if (++run >= YIELD_EVERY) {
        run = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    }
  }

  private async flushDetections(): Promise<void> {
    let pending: readonly Alert[] = [];
    try {
      pending = this.d.detect?.flush?.() ?? [];
    } catch (err) {
      this.d.metrics.errors.inc({ component: 'detect', code: errorCode(err) });
      this.d.logger.error({ component: 'detect', error: err }, 'flushing detections failed');
    }
    for (const det of pending) await this.emit(this.ids.ensure(det));
  }

  /** The enriched alert: at once when every enricher answers from cache, else a promise. */
  private enrich(a: Alert): Alert | Promise<Alert> {
    const { enrichers } = this.d;
    if (enrichers.length === 0) return a;
    // Fast path: enrichers that answer from cache, without a timer or an AbortController. The
    // first non-empty answer is kept as it is; a second one starts the new companion record
    // (the alert's keys first), so no intermediate object is built.
    let one: Readonly<Record<string, EnrichValue>> | null = null;
    let rec: Record<string, EnrichValue> | null = null;
    let failed: string[] | null = null;
    let slow: Enricher[] | null = null;
    for (const e of enrichers) {
      let res: Readonly<Record<string, EnrichValue>> | undefined;
      try {
        res = e.enrichSync?.(a);
      } catch (err) {
        (failed ??= []).push(`${e.id}: ${errorMessage(err)}`.slice(0, 120));
        this.d.metrics.errors.inc({ component: e.id, code: errorCode(err) });
        continue;
      }
      if (res === undefined) (slow ??= []).push(e);
      else if (isEmptyRecord(res)) continue;
      else if (rec !== null) Object.assign(rec, res);
      else if (one === null) one = res;
      else rec = Object.assign({ ...a.companion }, one, res);
    }
    if (slow === null && failed === null) {
      if (rec !== null) return withCompanionRecord(a, rec);
      return one === null ? a : withEnrichment(a, one);
    }
    const add: Record<string, EnrichValue> = {};
    if (rec !== null) Object.assign(add, rec);
    else if (one !== null) Object.assign(add, one);
    const errs = failed ?? [];
    if (slow === null) return withErrors(a, add, errs);
    return this.enrichWaiting(a, slow, add, errs);
  }

  /** Enrichers that must wait (only these alerts are timed: the cache-answered path takes microseconds). */
  private async enrichWaiting(a: Alert, slow: readonly Enricher[], add: Record<string, EnrichValue>, errs: string[]): Promise<Alert> {
    const start = performance.now();
    await this.enrichSlow(a, slow, this.d.enrichBudgetMs, add, errs);
    this.enrichLatency.observe((performance.now() - start) / 1000);
    return withErrors(a, add, errs);
  }

  /** The budgeted path for enrichers that must wait (lookups): results go into `add`. */
  private async enrichSlow(a: Alert, enrichers: readonly Enricher[], enrichBudgetMs: number, add: Record<string, EnrichValue>, failed: string[]): Promise<void> {
    // The signal aborts at the budget; enrichers then return what they know. One that does not
    // answer within a short grace after that is cut off and named in enrich_error.
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), enrichBudgetMs);
    let hardTimer: NodeJS.Timeout | undefined;
    const hardDeadline = new Promise<never>((_, rej) => {
      hardTimer = setTimeout(() => rej(new Error('budget exceeded')), enrichBudgetMs + GRACE_MS);
    });
    hardDeadline.catch(() => undefined);
    await Promise.all(
      enrichers.map(async (e) => {
        try {
          const res = await Promise.race([e.enrich(a, ac.signal), hardDeadline]);
          Object.assign(add, res);
        } catch (err) {
          failed.push(`${e.id}: ${errorMessage(err)}`.slice(0, 120));
          this.d.metrics.errors.inc({ component: e.id, code: ac.signal.aborted ? 'E_BUDGET' : errorCode(err) });
        }
      }),
    );
    clearTimeout(timer);
    clearTimeout(hardTimer);
  }

  /** Detect, route, emit; a promise only when a sink made it wait. */
  private afterEnrich(alert: Alert): Promise<void> | undefined {
    this.processed++;
    this.receivedCount.inc();
    let forward = true;
    let detections: readonly Alert[] = [];
    if (this.d.detect) {
      try {
        const r = this.d.detect.process(alert);
        forward = r.forward;
        detections = r.detections;
      } catch (err) {
        // A detector bug must never lose the alert: forward it and count the error.
        this.d.metrics.errors.inc({ component: 'detect', code: errorCode(err) });
        this.d.logger.error({ component: 'detect', rule: alert.rule, error: err }, 'detection stage failed; alert forwarded unchanged');
      }
    }
    if (this.d.sinks.length > 0) return this.emitAll(alert, forward, detections);
    if (forward) this.pass(alert);
    else this.signalOnly.inc();
    for (const det of detections) this.pass(this.ids.ensure(det));
    // Emitted (or dropped): the intake may forget the alert (the spool deletes rows no sink kept).
    this.d.intake.done(alert);
    return undefined;
  }

  /** afterEnrich with sinks, which may make the pipeline wait (their bounded queues). */
  private async emitAll(alert: Alert, forward: boolean, detections: readonly Alert[]): Promise<void> {
    if (forward) await this.emit(alert);
    else this.signalOnly.inc();
    for (const det of detections) await this.emit(this.ids.ensure(det));
    this.d.intake.done(alert);
  }

  /** Routing without sinks: counted and reported as forwarded. */
  private pass(a: Alert): void {
    if (!this.d.router.pass(a)) return;
    this.sentCount.inc();
    this.d.onForwarded?.(a);
  }

  private async emit(a: Alert): Promise<void> {
    if (!this.d.router.pass(a)) return;
    this.sentCount.inc();
    for (const s of this.d.sinks) {
      try {
        await s.write(a);
      } catch (err) {
        this.d.metrics.errors.inc({ component: s.id, code: errorCode(err) });
        this.d.logger.warn({ component: this.id, sink: s.id, rule: a.rule, error: err }, 'sink refused alert');
      }
    }
    this.d.onForwarded?.(a);
  }
}

/** `add` with the enrichers' failures folded into `enrich_error`, on the alert. */
function withErrors(a: Alert, add: Record<string, EnrichValue>, errs: readonly string[]): Alert {
  if (errs.length > 0) {
    const prev = typeof add['enrich_error'] === 'string' ? [add['enrich_error']] : [];
    add['enrich_error'] = [...prev, ...errs].join('; ').slice(0, 400);
  }
  return withEnrichment(a, add);
}
