/**
 * Every shipped detector: id, settings schema (validated in the rules file's `detectors:` section)
 * and factory. The wiring builds the engine from this list:
 *
 *   const rules = loadRulesFile(path, { detectors: DETECTOR_MODULES });
 *   const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules), logger, metrics, clock });
 *   // on reload: engine.setRules(next, buildDetectors(next))  (state kept per detector id)
 */
import type { ObjectSpec } from '../config/dsl.js';
import type { Detector } from './types.js';
import type { LoadedRules } from './rules-file.js';
import { BEACON_DETECTOR_ID, beaconSettingsSpec, createBeaconDetector } from './detectors/beacon.js';
import { ESCAPE_DETECTOR_ID, escapeSettingsSpec, createEscapeDetector } from './detectors/escape.js';
import { FIRST_SEEN_EGRESS_DETECTOR_ID, firstSeenEgressSettingsSpec, createFirstSeenEgressDetector } from './detectors/first-seen-egress.js';
import { K8S_SPREAD_DETECTOR_ID, k8sSpreadSettingsSpec, createK8sSpreadDetector } from './detectors/k8s-spread.js';
import { UNEXPECTED_IMAGE_DETECTOR_ID, unexpectedImageSettingsSpec, createUnexpectedImageDetector } from './detectors/unexpected-image.js';
import { SOCKET_FILTER_DETECTOR_ID, socketFilterSettingsSpec, createSocketFilterDetector } from './detectors/socket-filter.js';
import { KNOCK_DETECTOR_ID, knockSettingsSpec, createKnockDetector } from './detectors/knock.js';

export interface DetectorModule {
  readonly id: string;
  readonly settings: ObjectSpec;
  /** Build the detector from its validated settings (rules.detectors[id]). */
  readonly create: (settings: Readonly<Record<string, unknown>>) => Detector<unknown>;
}

const mod = <S>(id: string, settings: ObjectSpec, create: (s: Partial<S>) => Detector<unknown>): DetectorModule => ({
  id,
  settings,
  create: (s) => create(s as Partial<S>),
});

export const DETECTOR_MODULES: readonly DetectorModule[] = [
  mod(SOCKET_FILTER_DETECTOR_ID, socketFilterSettingsSpec, (s) => createSocketFilterDetector(s) as Detector<unknown>),
  mod(KNOCK_DETECTOR_ID, knockSettingsSpec, (s) => createKnockDetector(s) as Detector<unknown>),
  mod(BEACON_DETECTOR_ID, beaconSettingsSpec, (s) => createBeaconDetector(s) as Detector<unknown>),
  mod(FIRST_SEEN_EGRESS_DETECTOR_ID, firstSeenEgressSettingsSpec, (s) => createFirstSeenEgressDetector(s) as Detector<unknown>),
  mod(ESCAPE_DETECTOR_ID, escapeSettingsSpec, (s) => createEscapeDetector(s) as Detector<unknown>),
  mod(UNEXPECTED_IMAGE_DETECTOR_ID, unexpectedImageSettingsSpec, (s) => createUnexpectedImageDetector(s) as Detector<unknown>),
  mod(K8S_SPREAD_DETECTOR_ID, k8sSpreadSettingsSpec, (s) => createK8sSpreadDetector(s) as Detector<unknown>),
];

/** Detectors for loaded rules: every registered module, built from its validated settings (disabled ones too; the engine skips them). */
export function buildDetectors(rules: LoadedRules, modules: readonly DetectorModule[] = DETECTOR_MODULES): Detector<unknown>[] {
  return modules.map((m) => m.create(rules.detectors[m.id] ?? {}));
}
