/**
 * Detection state survives restarts (issue #13 item 4): the detectors' states (armed processes,
 * beacon series, escape and spread chains, ...), the incidents of the notify policy and the
 * learning-period starts are checkpointed to the state database (src/store/detect-state.ts) every
 * `detect.checkpoint_interval` (wall clock; only the parts stepped since the last checkpoint) and at
 * a graceful stop (after the pipeline drained), and restored at start, before the first alert.
 *
 * A part whose stored version differs from the detector's `stateVersion`, or whose bytes do not
 * decode or fit, is not restored: that detector starts fresh, with a warning naming it and
 * `detect_state_restores_total{detector,result="fresh_version"|"fresh_corrupt"}`; the others are
 * restored. After a crash (SIGKILL, OOM) the last periodic checkpoint is restored: what the
 * detectors saw after it is lost to them (the alerts themselves are not: the spool keeps them).
 *
 * The periodic checkpoint encodes one part (detector) at a time, on the event loop, in slices of
 * at most {@link SLICE_MS} (plus the entry in hand: src/detect/codec.ts `encodeStateSliced`) with a
 * turn of the event loop between them, so HTTP acks, the spool and the ops endpoints never wait
 * longer than a slice. The part is held unchanged meanwhile (DetectionEngine.hold): the pipeline
 * waits before its next alert until the part is encoded (alerts are still received, acknowledged
 * and spooled), so each part is saved exactly as it was when its encoding started. Then one
 * write. The encoding (all slices) and the write are `detect_checkpoint_seconds`, the bytes per
 * part `detector_state_bytes{detector}` (docs/benchmarks.md: full budgets). The checkpoint at stop
 * encodes each part in one go (the pipeline has drained).
 */
import type { Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import { DetectStateStore } from '../store/detect-state.js';
import { decodeState, encodeState, encodeStateSliced } from './codec.js';
import { ENGINE_STATE_ID, NOTIFY_LABEL, type DetectionEngine, type StatePart } from './engine.js';

export const CHECKPOINT_ID = 'detect/checkpoint';
/** Longest stretch the periodic checkpoint encodes before it lets alerts in again (ms). */
export const SLICE_MS = 10;

export interface CheckpointOptions {
  readonly engine: DetectionEngine;
  /** The state database (opened on first use). */
  readonly db: () => Db;
  /** Periodic checkpoints (wall clock); 0: only at stop. */
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Slice length of the periodic checkpoint's encoding (default {@link SLICE_MS}; tests: 0, a slice per entry). */
  readonly sliceMs?: number;
}

export interface CheckpointResult {
  readonly parts: number;
  readonly bytes: number;
  readonly ms: number;
}

export interface RestoreSummary {
  readonly restored: string[];
  readonly fresh: { id: string; reason: 'version' | 'corrupt' }[];
}

interface Encoded {
  readonly id: string;
  readonly version: number;
  readonly state: Buffer;
}

/** The metric label of a part (the engine's part counts under the incidents' label). */
const labelOf = (id: string): string => (id === ENGINE_STATE_ID ? NOTIFY_LABEL : id);

export class DetectCheckpointer implements Component {
  readonly id = CHECKPOINT_ID;
  private store: DetectStateStore | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** A periodic checkpoint in progress (its parts are encoded one at a time, in slices). */
  private inFlight: Promise<void> | null = null;
  private lastOkMs: number | null = null;
  private lastError: string | null = null;
  private stopped = false;
  private readonly log: Logger;
  private readonly failLog: RateLimitedLog;
  private readonly m;

  constructor(private readonly o: CheckpointOptions) {
    this.log = o.logger.child({ component: CHECKPOINT_ID });
    this.failLog = rateLimited(this.log, { intervalMs: 600_000, level: 'error', now: () => o.clock.monotonic() });
    const mm = o.metrics;
    this.m = {
      checkpoints: mm.counter('detect_checkpoints_total', 'Detection state checkpoints, by result (ok, error)', ['result']),
      seconds: mm.histogram('detect_checkpoint_seconds', 'Encoding (in slices, between alerts) and writing one detection state checkpoint', [], [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
      bytes: mm.gauge('detector_state_bytes', 'Size of a detector state in its last checkpoint (detector="engine/notify": incidents and learning-period starts)', ['detector']),
      restores: mm.counter('detect_state_restores_total', 'Detection state parts at start, by detector and result (restored, fresh_version, fresh_corrupt)', ['detector', 'result']),
    };
  }

  private db(): DetectStateStore {
    return (this.store ??= new DetectStateStore(this.o.db()));
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.restore();
    if (this.o.intervalMs > 0) {
      this.timer = setInterval(() => this.savePeriodic(), this.o.intervalMs);
      this.timer.unref();
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
    const r = this.save();
    if (r) this.log.info({ status: 'saved', parts: r.parts, bytes: r.bytes, ms: r.ms }, 'detection state saved for the next start');
  }

  health(): ComponentHealth {
    if (this.lastError !== null) return { ready: true, detail: `last checkpoint failed: ${this.lastError}` };
    return { ready: true, detail: this.lastOkMs === null ? 'no checkpoint yet' : `last checkpoint ${Math.round((this.o.clock.now() - this.lastOkMs) / 1000)}s ago` };
  }

  /** Restore every stored part the engine knows (before the first alert). Never throws. */
  restore(): RestoreSummary {
    const summary: RestoreSummary = { restored: [], fresh: [] };
    let rows;
    try {
      rows = this.db().load();
    } catch (err) {
      this.o.metrics.errors.inc({ component: CHECKPOINT_ID, code: errorCode(err) });
      this.log.error({ error: errorMessage(err) }, 'cannot read the detection state: every detector starts fresh');
      return summary;
    }
    const ageS: Record<string, number> = {};
    for (const row of rows) {
      let result;
      try {
        result = this.o.engine.restorePart(row.id, row.version, decodeState(row.state));
      } catch (err) {
        summary.fresh.push({ id: row.id, reason: 'corrupt' });
        this.m.restores.inc({ detector: labelOf(row.id), result: 'fresh_corrupt' });
        this.log.warn({ stage: row.id, error: errorMessage(err) }, `detection state of ${row.id} is corrupt or does not fit this build: it starts fresh`);
        this.forget(row.id);
        continue;
      }
      if (result === 'unknown') continue; // a detector no longer built (kept: it may come back)
      if (result === 'version') {
        summary.fresh.push({ id: row.id, reason: 'version' });
        this.m.restores.inc({ detector: labelOf(row.id), result: 'fresh_version' });
        this.log.warn({ stage: row.id, stored_version: row.version }, `detection state of ${row.id} was written for another state version: it starts fresh`);
        this.forget(row.id);
        continue;
      }
      summary.restored.push(row.id);
      this.m.restores.inc({ detector: labelOf(row.id), result: 'restored' });
      this.m.bytes.set({ detector: labelOf(row.id) }, row.state.length);
      ageS[row.id] = Math.round((this.o.clock.now() - row.savedAtMs) / 1000);
    }
    if (rows.length === 0) this.log.info('no detection state to restore: detectors start fresh');
    else if (summary.restored.length > 0) this.log.info({ status: 'restored', parts: summary.restored, age_s: ageS }, 'detection state restored');
    return summary;
  }

  private forget(id: string): void {
    try {
      this.db().delete(id);
    } catch {
      // overwritten by the next checkpoint anyway
    }
  }

  /**
   * Checkpoint the parts changed since the last one (all of them with `all`), at once (at stop,
   * in tests). Never throws: a failure is logged and counted, and the parts stay due.
   */
  save(all = false): CheckpointResult | null {
    const encoded: Encoded[] = [];
    let busyMs = 0;
    for (const p of this.o.engine.checkpointParts(all)) {
      const e = this.encode(p);
      busyMs += e.ms;
      if (e.part) encoded.push(e.part);
    }
    return this.write(encoded, busyMs);
  }

  /**
   * The periodic checkpoint: each part held (unchanged: the pipeline waits before its next alert,
   * while alerts are still received and acknowledged) and encoded in slices of at most SLICE_MS
   * with a turn of the event loop between them, then released; then one write. A part is marked
   * saved when its encoding starts: it is held until the end, so a step after that makes it due
   * again.
   */
  private savePeriodic(): void {
    if (this.inFlight || this.stopped) return;
    this.inFlight = (async () => {
      const encoded: Encoded[] = [];
      let busyMs = 0;
      for (const { id } of this.o.engine.checkpointParts()) {
        if (this.stopped) break; // stop() saves what is left
        const e = await this.encodeHeld(id);
        busyMs += e.ms;
        if (e.part) encoded.push(e.part);
        await turn(); // the pipeline takes the alerts that waited before the next part is held
      }
      this.write(encoded, busyMs);
    })().finally(() => {
      this.inFlight = null;
    });
  }

  /**
   * One part, held and encoded in slices. The engine may need it released at once (an alert the
   * pipeline did not hold back, a reload): then the rest is encoded in that call, as it is when
   * stop() comes meanwhile. Null part: the encoding failed (counted, logged; the part stays due).
   */
  private async encodeHeld(id: string): Promise<{ part: Encoded | null; ms: number }> {
    const engine = this.o.engine;
    const job = { steps: null as Generator<void, Buffer, void> | null, version: 0, done: false, part: null as Encoded | null, ms: 0 };
    /** One slice (all that is left with `all`); the part is released when its encoding ends. */
    const advance = (all: boolean): void => {
      if (job.done || !job.steps) return;
      const t0 = this.o.clock.monotonic();
      try {
        let r = job.steps.next();
        while (all && !r.done) r = job.steps.next();
        if (r.done) {
          job.part = { id, version: job.version, state: r.value };
          job.done = true;
        }
      } catch (err) {
        engine.markSaved([id], false);
        this.encodeFailed(id, err);
        job.done = true;
      }
      job.ms += this.o.clock.monotonic() - t0;
      if (job.done) engine.release(id);
    };
    const p = engine.hold(id, () => advance(true));
    if (!p) return { part: null, ms: 0 };
    job.version = p.version;
    engine.markSaved([id]);
    job.steps = encodeStateSliced(p.state, this.o.sliceMs ?? SLICE_MS);
    advance(this.stopped);
    while (!job.done) {
      await turn();
      advance(this.stopped);
    }
    return { part: job.part, ms: job.ms };
  }

  private encode(p: StatePart): { part: Encoded | null; ms: number } {
    const t0 = this.o.clock.monotonic();
    try {
      const part = { id: p.id, version: p.version, state: encodeState(p.state) };
      this.o.engine.markSaved([p.id]);
      return { part, ms: this.o.clock.monotonic() - t0 };
    } catch (err) {
      // A detector whose state breaks the codec contract: the others are still saved.
      this.encodeFailed(p.id, err);
      return { part: null, ms: this.o.clock.monotonic() - t0 };
    }
  }

  private encodeFailed(id: string, err: unknown): void {
    this.o.metrics.errors.inc({ component: CHECKPOINT_ID, code: errorCode(err) });
    this.failLog({ stage: id, error: errorMessage(err) }, `cannot encode the state of ${id}: not checkpointed`);
  }

  private write(encoded: readonly Encoded[], busyMs: number): CheckpointResult | null {
    if (encoded.length === 0) return { parts: 0, bytes: 0, ms: busyMs };
    const t0 = this.o.clock.monotonic();
    try {
      this.db().save(encoded, this.o.clock.now());
    } catch (err) {
      this.o.engine.markSaved(
        encoded.map((e) => e.id),
        false,
      );
      this.lastError = errorMessage(err);
      this.m.checkpoints.inc({ result: 'error' });
      this.o.metrics.errors.inc({ component: CHECKPOINT_ID, code: errorCode(err) });
      this.failLog({ error: errorMessage(err) }, 'detection state checkpoint failed (retried at the next one)');
      return null;
    }
    let bytes = 0;
    for (const e of encoded) {
      bytes += e.state.length;
      this.m.bytes.set({ detector: labelOf(e.id) }, e.state.length);
    }
    const ms = busyMs + this.o.clock.monotonic() - t0;
    this.m.seconds.observe(ms / 1000);
    this.m.checkpoints.inc({ result: 'ok' });
    this.lastOkMs = this.o.clock.now();
    this.lastError = null;
    this.log.debug({ parts: encoded.length, bytes, ms }, 'detection state checkpointed');
    return { parts: encoded.length, bytes, ms };
  }
}

const turn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
