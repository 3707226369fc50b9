/** The detection engine with every shipped detector and the built-in rules (as the daemon runs it). */
import type { Clock } from '../src/clock.js';
import { DetectionEngine } from '../src/detect/engine.js';
import { buildDetectors } from '../src/detect/registry.js';
import { loadRulesFile } from '../src/detect/rules/load.js';
import type { Logger } from '../src/logger.js';
import type { Metrics } from '../src/metrics.js';

export function benchEngine(deps: { logger: Logger; metrics: Metrics; clock: Clock }): DetectionEngine {
  const rules = loadRulesFile(null);
  return new DetectionEngine({ rules, detectors: buildDetectors(rules), ...deps });
}
