/**
 * Every shipped detector, in the order the engine runs them. A new detector is one file under
 * detectors/ exporting a {@link DetectorModule} (id, settings schema, whether CI silences it by
 * default, factory) plus one line here; the rules file's known detector ids, the default
 * `suppress.ci.detectors` and the wiring all come from this list:
 *
 *   const rules = loadRulesFile(path);
 *   const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules), logger, metrics, clock });
 *   // on reload: engine.setRules(next, buildDetectors(next))  (state kept per detector id)
 */
import { NO_ENV, type DetectorEnv } from './cluster.js';
import type { LoadedRules } from './rules/types.js';
import type { Detector, DetectorModule } from './types.js';
import { beaconModule } from './detectors/beacon.js';
import { escapeModule } from './detectors/escape.js';
import { firstSeenEgressModule } from './detectors/first-seen-egress.js';
import { k8sSpreadModule } from './detectors/k8s-spread.js';
import { knockModule } from './detectors/knock.js';
import { resourceModule } from './detectors/resource.js';
import { socketFilterModule } from './detectors/socket-filter.js';
import { unexpectedImageModule } from './detectors/unexpected-image.js';

export const DETECTOR_MODULES: readonly DetectorModule[] = [
  socketFilterModule,
  knockModule,
  beaconModule,
  firstSeenEgressModule,
  escapeModule,
  unexpectedImageModule,
  k8sSpreadModule,
  resourceModule,
];

/** Ids of the shipped detectors (the rules file may name them in settings and suppression). */
export const DETECTOR_IDS: readonly string[] = DETECTOR_MODULES.map((m) => m.id);

/** Detectors CI/CD windows and workloads silence when the rules file does not say (`quietInCi`). */
export const CI_QUIET_DETECTOR_IDS: readonly string[] = DETECTOR_MODULES.filter((m) => m.quietInCi).map((m) => m.id);

/**
 * Detectors for loaded rules: every registered module, built from its validated settings (disabled
 * ones too; the engine skips them) and the node/cluster facts (src/detect/cluster.ts).
 */
export function buildDetectors(rules: LoadedRules, modules: readonly DetectorModule[] = DETECTOR_MODULES, env: DetectorEnv = NO_ENV): Detector<unknown>[] {
  return modules.map((m) => m.create(rules.detectors[m.id] ?? {}, env));
}
