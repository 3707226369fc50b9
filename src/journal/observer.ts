/**
 * The engine observer contract (phase B contract 1; the engine declares the same interface in
 * src/detect/types.ts as `DetectionObserver` and calls `observers` from DetectionEngineOptions).
 * Declared here structurally so the journal does not depend on when the hook lands: an object of
 * this type is a `DetectionObserver`.
 */
import type { Alert } from '../alert.js';
import type { Finding, Signal } from '../detect/types.js';

export type SignalOutcome = 'consumed' | 'allowlist' | 'ci_window' | 'ci_workload' | 'learning';

export interface EngineObserver {
  /** Every (signal, detector) pair the engine routed, and what happened to it. */
  signal?(sig: Signal, detector: string, outcome: SignalOutcome): void;
  /** Every finding a detector produced, with the alert emitted for it (null: folded by the notify policy) and its incident. */
  finding?(f: Finding, emitted: Alert | null, incident: string): void;
}
