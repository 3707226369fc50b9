/** Alert builders for detection tests (Falco-shaped, as the shipped signal rules emit them), and scenario fixture readers. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { discoverCluster, NO_ENV, type ClusterConfig, type DetectorEnv, type InterfaceAddress } from '../../src/detect/cluster.js';
import { createAlert, formatTimeNs, type Alert, type FieldValue } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import type { DetectorSettingsSpec, LoadedRules } from '../../src/detect/rules/types.js';
import { createSocketFilterDetector, socketFilterSettingsSpec, SOCKET_FILTER_DETECTOR_ID, type SocketFilterSettings } from '../../src/detect/detectors/socket-filter.js';
import { createKnockDetector, knockSettingsSpec, KNOCK_DETECTOR_ID, type KnockSettings } from '../../src/detect/detectors/knock.js';
import type { Detector } from '../../src/detect/types.js';
import { BASE_NS, secNs } from '../support/falco-alerts.js';

/** The shared test epoch (test/support/falco-alerts.ts). */
export const T0 = BASE_NS;

export function alertAt(sec: number, rule: string, fields: Record<string, FieldValue>, tags: string[] = []): Alert {
  return createAlert({
    time: formatTimeNs(T0 + secNs(sec)),
    rule,
    priority: 'Notice',
    source: 'syscall',
    hostname: 'node-1',
    output: `${rule}`,
    tags,
    outputFields: { 'container.id': 'abc123def456', 'container.image.repository': 'docker.io/library/nginx', 'container.image.tag': '1.25', 'k8s.ns.name': 'web', 'k8s.pod.name': 'nginx-1', ...fields },
    origin: { kind: 'test', component: 'test' },
    receivedAtMs: 0,
  });
}

export const DETECTOR_SPECS: DetectorSettingsSpec[] = [
  { id: SOCKET_FILTER_DETECTOR_ID, settings: socketFilterSettingsSpec },
  { id: KNOCK_DETECTOR_ID, settings: knockSettingsSpec },
];

export function detectorsFrom(rules: LoadedRules): Detector<unknown>[] {
  return [
    createSocketFilterDetector(rules.detectors[SOCKET_FILTER_DETECTOR_ID] as unknown as SocketFilterSettings) as Detector<unknown>,
    createKnockDetector(rules.detectors[KNOCK_DETECTOR_ID] as unknown as KnockSettings) as Detector<unknown>,
  ];
}

export function engineWith(rules: LoadedRules = loadRulesFile(null, { detectors: DETECTOR_SPECS })): { engine: DetectionEngine; metrics: Metrics } {
  const metrics = new Metrics({ collectDefault: false });
  const engine = new DetectionEngine({ rules, detectors: detectorsFrom(rules), logger: silentLogger(), metrics, clock: new ManualClock(0) });
  return { engine, metrics };
}

/** The alert lines of a scenario folder (alerts.jsonl, or alerts.jsonl.gz for the long recordings). */
export function scenarioLines(folder: string): string[] {
  const plain = join(folder, 'alerts.jsonl');
  const text = existsSync(plain) ? readFileSync(plain, 'utf8') : gunzipSync(readFileSync(`${plain}.gz`)).toString('utf8');
  return text.split('\n').filter((l) => l.trim() !== '');
}

/** The node a scenario was recorded on (cluster.json: detect.cluster, environment, interfaces), else none. */
export function scenarioEnv(folder: string): DetectorEnv {
  const path = join(folder, 'cluster.json');
  if (!existsSync(path)) return NO_ENV;
  const c = JSON.parse(readFileSync(path, 'utf8')) as { config: ClusterConfig; env?: Record<string, string>; interfaces?: InterfaceAddress[] };
  return { cluster: discoverCluster({ config: c.config, env: c.env ?? {}, interfaces: c.interfaces ?? [] }) };
}
