/**
 * The detection journal (component `store/journal`): keeps one record per detection in the state
 * database (src/journal/store.ts) for the report page and command (src/report/), `tune` and
 * `explain`.
 *
 * Two hooks feed it:
 * - {@link Journal.observer}, an engine observer: the engine hands every finding with the alert it
 *   emitted for it (or null when the notify policy folded it) and its incident;
 * - {@link Journal.stage}, a wrapper around the detection stage: each detection the stage returns
 *   gets its `companion.alert_id` here (and `companion.report_url` when the page is served) and is
 *   matched with the finding the observer saw during the same call.
 *
 * Nothing is built or written on the alert path: a matched detection is queued (bounded; beyond
 * `journal.queue_size` new records are dropped and counted) and a timer writes the queue in one
 * transaction every `journal.flush_interval` (or at once past 256 waiting), then prunes by count
 * and age. A failed write is logged and counted, never thrown into the pipeline.
 */
import { withEnrichment, type Alert } from '../alert.js';
import type { Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Finding } from '../detect/types.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import { ALERT_ID_KEY, AlertIdGenerator, alertIdOf } from '../store/alert-id.js';
import type { Db } from '../store/db.js';
import type { EngineObserver } from './observer.js';
import { buildRecord, REPORT_URL_KEY } from './record.js';
import type { CaseRecorder } from './recorder.js';
import { JournalStore, type Fold } from './store.js';
import type { DetectionQuery, DetectionRecord, JournalReader } from './types.js';

export type JournalConfig = Config['journal'];

export interface JournalDeps {
  readonly config: JournalConfig;
  /** The state database (opened at start). */
  readonly db: () => Db;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** URL of a detection's report page; null (or absent) when the page is not served. */
  readonly reportUrl?: (id: string) => string | null;
  /** `--record DIR`: the raw alerts of each detection written as a test case. */
  readonly recorder?: CaseRecorder;
}

/** A finding the observer saw, waiting for the stage to return its alert. */
export interface Seen {
  readonly finding: Finding;
  /** The alert the engine emitted for it; null: folded by the notify policy. */
  readonly emitted: Alert | null;
  readonly incident: string | null;
  /** Seen by a detector tap (src/journal/tap.ts): the alert is not known yet; match on the finding. */
  readonly tapped?: boolean;
}

interface Queued {
  readonly alert: Alert;
  readonly finding: Finding | null;
  readonly incident: string | null;
  readonly atMs: number;
}

const ID = 'store/journal';
/** Findings the observer may hold between two stage calls (findings emitted outside a call). */
const MAX_SEEN = 1000;
/** Waiting records that make the writer run at once instead of at the next tick. */
const EAGER_BATCH = 256;

export class Journal implements Component {
  readonly id = ID;
  readonly observer: EngineObserver;
  private store: JournalStore | null = null;
  private seen: Seen[] = [];
  private queue: Queued[] = [];
  private folds = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private eager = false;
  private stopped = false;
  private lastError: string | null = null;
  private readonly ids: AlertIdGenerator;
  private readonly log: Logger;
  private readonly warn: RateLimitedLog;
  private readonly m;

  constructor(private readonly d: JournalDeps) {
    this.log = d.logger.child({ component: ID });
    this.warn = rateLimited(this.log, { intervalMs: 60_000, level: 'error', now: () => d.clock.now() });
    this.ids = new AlertIdGenerator(() => d.clock.now());
    const mm = d.metrics;
    this.m = {
      records: mm.counter('journal_records_total', 'Detection records written to the journal'),
      pruned: mm.counter<'reason'>('journal_pruned_total', 'Journal records deleted by retention (max_records, max_age)', ['reason']),
      dropped: (reason: string) => mm.discarded.inc({ component: ID, reason }),
      queue: mm.queueDepth.labels({ component: ID }),
    };
    const rec = d.recorder;
    this.observer = {
      finding: (f, emitted, incident) => {
        if (this.seen.length >= MAX_SEEN) {
          this.m.dropped('observer_overflow');
          return;
        }
        this.seen.push({ finding: f, emitted, incident });
      },
      ...(rec ? { signal: (sig, detector, outcome) => rec.signal(sig, detector, outcome) } : {}),
    };
  }

  /** Records are kept (journal.enabled); else the journal only feeds the recorder. */
  private get persist(): boolean {
    return this.d.config.enabled;
  }

  async start(): Promise<void> {
    if (this.persist) this.store ??= new JournalStore(this.d.db());
    this.stopped = false;
    return Promise.resolve();
  }

  /** Write what waits, then stop (idempotent). Call after the pipeline has drained. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopped = true;
    this.flush();
    await this.d.recorder?.drain(deadlineMs);
  }

  health(): ComponentHealth {
    if (this.lastError) return { ready: true, detail: `last write failed: ${this.lastError}` };
    return { ready: true, detail: `${this.queue.length} waiting` };
  }

  /** The detection stage with ids, report URLs and journal records added to its detections. */
  stage(inner: DetectStage): DetectStage {
    const rec = this.d.recorder;
    const wrapped: DetectStage = {
      process: (alert) => {
        rec?.seen(alert);
        const r = inner.process(alert);
        if (r.detections.length === 0 && this.seen.length === 0) return r;
        return { forward: r.forward, detections: this.take(r.detections) };
      },
    };
    if (inner.flush) {
      const flush = inner.flush.bind(inner);
      wrapped.flush = () => this.take(flush(), true);
    }
    return wrapped;
  }

  /** Give each detection its id (and URL), pair it with its finding, queue the record. */
  private take(detections: readonly Alert[], flushed = false): Alert[] {
    const seen = this.seen;
    this.seen = [];
    const used = new Set<Seen>();
    const out: Alert[] = [];
    for (const d of detections) {
      const s = matchFinding(seen, used, d);
      if (s) used.add(s);
      // The id (and the URL naming it) in one copy of the alert.
      const have = alertIdOf(d);
      const id = have ?? this.ids.next();
      const url = this.d.reportUrl?.(id) ?? null;
      const a = have !== null && url === null ? d : withEnrichment(d, url === null ? { [ALERT_ID_KEY]: id } : { [ALERT_ID_KEY]: id, [REPORT_URL_KEY]: url });
      if (this.persist) this.enqueue({ alert: a, finding: s?.finding ?? null, incident: s?.incident || null, atMs: this.d.clock.now() });
      this.d.recorder?.detection(a, s?.finding ?? null, flushed);
      out.push(a);
    }
    for (const s of seen) {
      if (used.has(s)) continue;
      if (s.emitted === null && this.persist) this.folds.set(s.finding.key, (this.folds.get(s.finding.key) ?? 0) + 1);
      else this.m.dropped('unmatched'); // emitted, yet not among what the stage returned
    }
    if (this.folds.size > 0) this.schedule();
    return out;
  }

  private enqueue(q: Queued): void {
    if (this.queue.length >= this.d.config.queue_size) {
      this.m.dropped('queue_full');
      this.warn({ alert_id: alertIdOf(q.alert), rule: q.alert.rule }, 'journal queue full: detection record dropped (the detection is still forwarded)');
      return;
    }
    this.queue.push(q);
    this.m.queue.set(this.queue.length);
    if (this.queue.length >= EAGER_BATCH && !this.eager) {
      this.eager = true;
      setImmediate(() => {
        this.eager = false;
        this.flush();
      });
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.d.config.flush_interval);
    this.timer.unref();
  }

  /** Write the waiting records and folds now (one transaction), then prune. Never throws. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue;
    const folds: Fold[] = [...this.folds].map(([key, count]) => ({ key, count }));
    this.queue = [];
    this.folds = new Map();
    this.m.queue.set(0);
    if (batch.length === 0 && folds.length === 0) return;
    const c = this.d.config;
    try {
      if (!this.store) throw new Error('journal not started');
      const records = batch.map((q) => buildRecord({ alert: q.alert, finding: q.finding, incident: q.incident, recordedAtMs: q.atMs, maxEvidence: c.max_evidence }));
      const n = this.store.write(records, folds);
      this.m.records.inc(n);
      const p = this.store.prune(this.d.clock.now(), c.max_records, c.max_age);
      if (p.byCount > 0) this.m.pruned.inc({ reason: 'max_records' }, p.byCount);
      if (p.byAge > 0) this.m.pruned.inc({ reason: 'max_age' }, p.byAge);
      this.lastError = null;
    } catch (err) {
      this.lastError = errorMessage(err);
      this.d.metrics.errors.inc({ component: ID, code: errorCode(err) });
      if (batch.length > 0) this.d.metrics.discarded.inc({ component: ID, reason: 'write_failed' }, batch.length);
      this.warn({ error: this.lastError, records: batch.length }, 'writing detection records failed; records dropped');
    }
  }

  /** Reads, the records still waiting included (a page asked for right after the detection). */
  reader(): JournalReader {
    const waiting = (id: string): DetectionRecord | null => {
      const q = this.queue.find((x) => alertIdOf(x.alert) === id);
      return q ? buildRecord({ alert: q.alert, finding: q.finding, incident: q.incident, recordedAtMs: q.atMs, maxEvidence: this.d.config.max_evidence }) : null;
    };
    const store = (): JournalStore => {
      if (!this.store) throw new Error('journal not started');
      return this.store;
    };
    return {
      get: (id) => waiting(id) ?? store().get(id),
      byIncident: (incident, limit) => store().byIncident(incident, limit),
      last: (n) => store().last(n),
      byContainer: (c, limit) => store().byContainer(c, limit),
      list: (q?: DetectionQuery) => store().list(q),
      count: () => store().count(),
    };
  }
}

/**
 * The finding seen for a detection: the same alert object, else the same rule and event time (an
 * engine may wrap the alert after its observers saw it; a tap never saw the alert).
 */
export function matchFinding<S extends Seen>(seen: readonly S[], used: ReadonlySet<S>, d: Alert): S | null {
  for (const s of seen) if (s.emitted === d && !used.has(s)) return s;
  for (const s of seen) {
    if (used.has(s)) continue;
    const a = s.emitted ?? (s.tapped ? s.finding : null);
    if (a !== null && a.rule === d.rule && a.timeNs === d.timeNs) return s;
  }
  return null;
}
