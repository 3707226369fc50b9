/**
 * The detectors a test case runs with. A case may carry the node's cluster facts (`cluster.json`
 * next to it: the `detect.cluster` config, the pod's environment, the node's interfaces) for
 * detectors that scope by cluster networks (the beacon detector scores only what leaves the
 * cluster). Without them the detectors start from no cluster facts at all (deterministic: never
 * the environment of the machine running the test).
 */
import { readFileSync } from 'node:fs';
import { discoverCluster, NO_ENV, type ClusterConfig, type InterfaceAddress } from '../detect/cluster.js';
import { buildDetectors, DETECTOR_MODULES } from '../detect/registry.js';
import type { LoadedRules } from '../detect/rules/types.js';
import type { Detector } from '../detect/types.js';
import { ConfigError, errorMessage } from '../errors.js';
import type { TestCase } from './load.js';

interface ClusterFile {
  readonly config: ClusterConfig;
  readonly env?: Readonly<Record<string, string>>;
  readonly interfaces?: readonly InterfaceAddress[];
}

export function caseDetectors(rules: LoadedRules, c: TestCase): Detector<unknown>[] {
  if (c.clusterFile === null) return buildDetectors(rules, DETECTOR_MODULES, NO_ENV);
  let raw: ClusterFile;
  try {
    raw = JSON.parse(readFileSync(c.clusterFile, 'utf8')) as ClusterFile;
  } catch (err) {
    throw new ConfigError([`${c.clusterFile}: cannot read the cluster facts: ${errorMessage(err)}`]);
  }
  if (raw === null || typeof raw !== 'object' || raw.config === null || typeof raw.config !== 'object') throw new ConfigError([`${c.clusterFile}: must be {"config": {...detect.cluster}, "env": {...}, "interfaces": [...]}`]);
  return buildDetectors(rules, DETECTOR_MODULES, { cluster: discoverCluster({ config: raw.config, env: raw.env ?? {}, interfaces: raw.interfaces ?? [] }) });
}
