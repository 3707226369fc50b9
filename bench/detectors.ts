/** The detection engine with every shipped detector and the built-in rules (as the daemon runs it). */
import type { Clock } from '../src/clock.js';
import { DetectionEngine } from '../src/detect/engine.js';
import { loadRulesFile, type DetectorSettingsSpec } from '../src/detect/rules-file.js';
import { createBeaconDetector, beaconSettingsSpec, BEACON_DETECTOR_ID } from '../src/detect/detectors/beacon.js';
import { createEscapeDetector, escapeSettingsSpec, ESCAPE_DETECTOR_ID } from '../src/detect/detectors/escape.js';
import { createFirstSeenEgressDetector, firstSeenEgressSettingsSpec, FIRST_SEEN_EGRESS_DETECTOR_ID } from '../src/detect/detectors/first-seen-egress.js';
import { createK8sSpreadDetector, k8sSpreadSettingsSpec, K8S_SPREAD_DETECTOR_ID } from '../src/detect/detectors/k8s-spread.js';
import { createKnockDetector, knockSettingsSpec, KNOCK_DETECTOR_ID } from '../src/detect/detectors/knock.js';
import { createSocketFilterDetector, socketFilterSettingsSpec, SOCKET_FILTER_DETECTOR_ID } from '../src/detect/detectors/socket-filter.js';
import { createUnexpectedImageDetector, unexpectedImageSettingsSpec, UNEXPECTED_IMAGE_DETECTOR_ID } from '../src/detect/detectors/unexpected-image.js';
import type { Detector } from '../src/detect/types.js';
import type { Logger } from '../src/logger.js';
import type { Metrics } from '../src/metrics.js';

type Factory = (s: never) => Detector<unknown>;

const ALL: readonly { spec: DetectorSettingsSpec; make: Factory }[] = [
  { spec: { id: SOCKET_FILTER_DETECTOR_ID, settings: socketFilterSettingsSpec }, make: createSocketFilterDetector as unknown as Factory },
  { spec: { id: KNOCK_DETECTOR_ID, settings: knockSettingsSpec }, make: createKnockDetector as unknown as Factory },
  { spec: { id: BEACON_DETECTOR_ID, settings: beaconSettingsSpec }, make: createBeaconDetector as unknown as Factory },
  { spec: { id: FIRST_SEEN_EGRESS_DETECTOR_ID, settings: firstSeenEgressSettingsSpec }, make: createFirstSeenEgressDetector as unknown as Factory },
  { spec: { id: ESCAPE_DETECTOR_ID, settings: escapeSettingsSpec }, make: createEscapeDetector as unknown as Factory },
  { spec: { id: UNEXPECTED_IMAGE_DETECTOR_ID, settings: unexpectedImageSettingsSpec }, make: createUnexpectedImageDetector as unknown as Factory },
  { spec: { id: K8S_SPREAD_DETECTOR_ID, settings: k8sSpreadSettingsSpec }, make: createK8sSpreadDetector as unknown as Factory },
];

export function benchEngine(deps: { logger: Logger; metrics: Metrics; clock: Clock }): DetectionEngine {
  const rules = loadRulesFile(null, { detectors: ALL.map((d) => d.spec) });
  const detectors = ALL.map((d) => d.make(rules.detectors[d.spec.id] as never));
  return new DetectionEngine({ rules, detectors, ...deps });
}
