/**
 * Contracts between stages. Sources → Intake → (enrich → detect → route) → Sinks.
 */
import type { Alert, EnrichValue } from '../alert.js';
import type { Component } from '../component.js';

/**
 * Where sources hand alerts. `submit` resolves once the alert is *kept* (in memory, or on disk
 * with the spool): only then may a source acknowledge it (HTTP 200) or advance (gRPC request,
 * file offset). It rejects with QueueFullError (push back: HTTP 503 + Retry-After) or StoppedError.
 */
export interface Intake {
  /**
   * `source`: the JSON text the alert was made from by `alertFromJson(parse(source))` alone
   * (a receiver's request body): the spool keeps it as the alert's payload instead of
   * serialising the alert again. Leave it out for alerts built any other way.
   */
  submit(alert: Alert, source?: string): Promise<void>;
  /**
   * Optional synchronous form of `submit` for receivers that answer per alert: `true` when the
   * alert is kept already (acknowledge now, before the pipeline runs), a refusal thrown at once,
   * or the promise `submit` returns when keeping it needs a wait (the spool's commit).
   */
  submitNow?(alert: Alert, source?: string): true | Promise<void>;
  /** True while new alerts would be refused; polling sources pause while it is set. */
  readonly full: boolean;
  /** Resolves when `full` turns false (or at once if it is false). */
  whenNotFull(): Promise<void>;
}

/**
 * The pipeline's side of the intake: what the processing loop takes alerts from. Implemented by
 * MemoryIntake and by the durable spool (src/store/spool.ts).
 */
export interface PipelineIntake {
  /** Next alert, or null once closed (and, for the memory intake, drained). */
  take(): Promise<Alert | null>;
  /**
   * Optional synchronous `take`: the next alert when one is ready now, null when `take` would
   * answer null, undefined when `take` would have to wait (then call `take`).
   */
  takeNow?(): Alert | null | undefined;
  /** Alerts waiting to be taken (> 0 lets the pipeline fill its window without waiting). */
  readonly depth: number;
  /** Stop accepting; `take` returns null once nothing more will be handed out. */
  close(): void;
  /**
   * The pipeline is finished with an alert it took: emitted to every sink, or dropped by
   * routing / signal-only. The spool forgets rows no sink kept; the memory intake ignores it.
   */
  done(alert: Alert): void;
}

/**
 * An enricher looks things up and returns keys to add (without the `companion.` prefix).
 * It must honour `signal` (aborted when the per-alert budget runs out) and never throw for a
 * failed lookup: return `{ enrich_error: '<what failed>' }`-style keys instead, or throw and the
 * pipeline records `enrich_error` naming the enricher.
 */
export interface Enricher {
  readonly id: string;
  enrich(alert: Alert, signal: AbortSignal): Promise<Readonly<Record<string, EnrichValue>>>;
  /**
   * Optional fast path: the full answer when it needs no waiting (cache hit, nothing to look
   * up), else undefined, in which case `enrich` is called. It must have no side effect when it
   * returns undefined (the same alert then goes through `enrich`). When every enricher answers
   * here, the pipeline starts no budget timer for the alert.
   */
  enrichSync?(alert: Alert): Readonly<Record<string, EnrichValue>> | undefined;
}

/** The detection stage: synchronous, pure apart from its own bounded state. */
export interface DetectStage {
  /**
   * Returns the detections this alert completes (Falco-shaped alerts) and whether the alert
   * itself is forwarded (signal-only alerts can be configured not to be).
   */
  process(alert: Alert): { readonly forward: boolean; readonly detections: readonly Alert[] };
  /** Pending summaries (e.g. "repeated N times") to emit when the input ends or at shutdown. */
  flush?(): readonly Alert[];
}

/**
 * A sink takes responsibility for an alert. `write` resolves when the sink has queued it (it
 * may wait while the sink's own bounded queue is full: that is back-pressure) and rejects only
 * when the sink is stopped.
 */
export interface Sink extends Component {
  write(alert: Alert): Promise<void>;
  /** Alerts queued and not yet delivered or given up. */
  pending(): number;
}

/** A source is a component that submits to the intake. */
export type Source = Component;
