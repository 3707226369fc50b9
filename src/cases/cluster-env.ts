/**
 * The detectors a test case runs with. A case may carry the node's cluster facts (`cluster:`,
 * `cluster.json` in the older layout: the detect.cluster config, the pod's environment, the node's
 * interfaces) for detectors that scope by cluster networks. This build's detectors take no such
 * environment, so such a case is an error here (a run without the facts would judge different
 * traffic), never a silently different pass.
 */
import { buildDetectors } from '../detect/registry.js';
import type { LoadedRules } from '../detect/rules/types.js';
import type { Detector } from '../detect/types.js';
import { ConfigError } from '../errors.js';
import type { TestCase } from './load.js';

export function caseDetectors(rules: LoadedRules, c: TestCase): Detector<unknown>[] {
  if (c.clusterFile !== null) throw new ConfigError([`${c.clusterFile}: cluster facts need detectors that take the cluster environment (src/detect/cluster.ts), which this build does not have`]);
  return buildDetectors(rules);
}
