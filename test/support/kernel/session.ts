/**
 * What a kernel test needs around a scenario: the test's dockerd, a watcher of its containers
 * (metadata for container.*), the observer tracing the dockerd tree and the test process's new
 * children, and the Falco model over the result. Skips are reported as reasons, never thrown.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerSkipReason, type Dockerd } from '../dockerd.js';
import { compilerSkipReason } from '../emulate-image.js';
import { DockerWatcher, type ContainerDirectory } from '../falco-model/containers.js';
import { falcoAlerts, type ModelAlert } from '../falco-model/engine.js';
import { loadFieldTypes } from '../falco-model/render.mjs';
import { loadRules, type RuleSet } from '../falco-model/rules.js';
import type { FalcoEvent } from '../falco-model/sinsp.js';
import type { Trace } from './events.js';
import { observerSkipReason, startObserver, type Observer } from './observer.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const REF_DIR = join(ROOT, '..', 'shared', 'falco-reference');
export const RECORDED_DIR = join(REF_DIR, 'recorded');
export const OFFICIAL_RULES_040 = join(REF_DIR, 'falco_rules-3.2.0.yaml');
export const FIELDS_040 = join(REF_DIR, 'supported-fields-falco-0.40.0.txt');
export const OUR_RULES = join(ROOT, 'falco-rules', 'falco-companion_rules.yaml');

/** Why kernel tests cannot run here (observer, docker, compiler, reference data), or null. */
export function kernelSkipReason(opts: { needShared?: boolean; needDocker?: boolean } = {}): string | null {
  const r = observerSkipReason() ?? (opts.needDocker === false ? null : dockerSkipReason()) ?? compilerSkipReason();
  if (r) return r;
  if (opts.needShared !== false) {
    for (const f of [OFFICIAL_RULES_040, FIELDS_040]) if (!existsSync(f)) return `skipped: Falco reference data not found (${f}; ../shared/falco-reference)`;
  }
  return null;
}

export interface Marks {
  readonly from: bigint;
  readonly to: bigint;
}

/** Realtime ns now (comparable with model alert times). */
export function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

export interface TraceSession {
  readonly observer: Observer;
  readonly watcher: DockerWatcher | null;
  stop(): Promise<Trace>;
}

/** Start watching the dockerd (when given) and the observer over its tree and our new children. */
export async function startTraceSession(dockerd: Dockerd | null, maxSeconds = 600): Promise<TraceSession> {
  let watcher: DockerWatcher | null = null;
  if (dockerd) {
    watcher = new DockerWatcher(dockerd.socket);
    await watcher.start();
  }
  const observer = await startObserver({ roots: dockerd ? [dockerd.pid] : [], spawners: [process.pid], maxSeconds, maxEvents: 400_000 });
  return {
    observer,
    watcher,
    async stop() {
      const trace = await observer.stop();
      if (watcher) {
        await watcher.settle();
        watcher.stop();
      }
      return trace;
    },
  };
}

export interface ModelRun {
  readonly alerts: ModelAlert[];
  readonly rules: RuleSet;
}

const emptyDirectory: ContainerDirectory = { get: () => undefined };

/** The alerts Falco 0.40 would print for the trace, with the official 3.2.0 rules and `ours`. */
export function runModel(trace: Trace, containers: ContainerDirectory | null, ours: string = OUR_RULES, opts: { matching?: 'first' | 'all'; onEvent?: (e: FalcoEvent) => void } = {}): ModelRun {
  const rules = loadRules([OFFICIAL_RULES_040, ours]);
  const alerts = falcoAlerts(trace, { containers: containers ?? emptyDirectory }, { rules, hostname: hostname(), fieldTypes: loadFieldTypes(FIELDS_040), matching: opts.matching ?? 'first' }, opts.onEvent);
  return { alerts, rules };
}

export function within(alerts: readonly ModelAlert[], m: Marks): ModelAlert[] {
  return alerts.filter((a) => a.timeNs >= m.from && a.timeNs < m.to);
}
