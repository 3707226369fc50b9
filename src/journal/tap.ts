/**
 * A detector tap: the same detector, reporting every finding its `step` returns. For running the
 * engine where its observer hook is not available (the offline test runner builds its own engine
 * and needs each detection's finding for the report); the daemon uses the engine's observers.
 * A tapped finding may still be suppressed (learning) or folded by the engine: pair findings with
 * the detections the engine returned ({@link matchFinding} in ./journal.ts).
 */
import type { Detector, Finding } from '../detect/types.js';

export function tapDetector(d: Detector<unknown>, onFinding: (f: Finding) => void): Detector<unknown> {
  return {
    ...d,
    step(state, signal, nowNs) {
      const r = d.step(state, signal, nowNs);
      for (const f of r.findings) onFinding(f);
      return r;
    },
  };
}
