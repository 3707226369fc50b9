/**
 * What a kernel test needs around a scenario: the test's dockerd, a watcher of its containers
 * (metadata for container.*), the observer tracing the dockerd tree and the test process's new
 * children, and the Falco model over the result. Skips are reported as reasons, never thrown.
 *
 * The Falco reference data in ../shared (official rules, supported-fields list, recordings) is
 * optional here: without it the model runs our rules pack alone and types output fields with our
 * own table (see `modelMode`); what that leaves unchecked is in docs/kernel-ci.md.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dockerSkipReason, type Dockerd } from '../dockerd.js';
import { compilerSkipReason } from '../emulate-image.js';
import { DockerWatcher, type ContainerDirectory } from '../falco-model/containers.js';
import { falcoAlerts, type ModelAlert } from '../falco-model/engine.js';
import { COMPANION_FIELD_TYPES, untypedOutputFields } from '../falco-model/field-types.js';
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

/** Why kernel tests cannot run here (observer, docker, compiler), or null. The reference data is not needed. */
export function kernelSkipReason(opts: { needDocker?: boolean } = {}): string | null {
  return observerSkipReason() ?? (opts.needDocker === false ? null : dockerSkipReason()) ?? compilerSkipReason();
}

/** Why the official 3.2.0 rules cannot be loaded next to ours here, or null when they can. */
export function officialRulesSkipReason(): string | null {
  return existsSync(OFFICIAL_RULES_040) ? null : `skipped: official rules not found (${OFFICIAL_RULES_040}; ../shared is absent, the model runs our pack alone)`;
}

/** Why tests that compare with a real Falco's output cannot run here (recordings, official rules, field list), or null. */
export function referenceSkipReason(): string | null {
  for (const f of [RECORDED_DIR, OFFICIAL_RULES_040, FIELDS_040]) if (!existsSync(f)) return `skipped: Falco reference data not found (${f}; ../shared/falco-reference)`;
  return null;
}

/**
 * What the model runs with on this machine: the official 3.2.0 rules before ours when ../shared has
 * them (else our pack alone), and the Falco 0.40 supported-fields list when present (else our own
 * table of the fields our pack uses, ../falco-model/field-types.ts).
 */
export function modelMode(): { readonly officialRules: boolean; readonly fieldTypes: 'Falco 0.40 list' | 'companion table'; readonly label: string } {
  const officialRules = existsSync(OFFICIAL_RULES_040);
  const fieldTypes = existsSync(FIELDS_040) ? 'Falco 0.40 list' : 'companion table';
  const label = officialRules ? `official 3.2.0 rules + our pack, field types: ${fieldTypes}` : `our pack alone (no official rules in ../shared), field types: ${fieldTypes}`;
  return { officialRules, fieldTypes, label };
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

/**
 * The alerts Falco 0.40 would print for the trace with `ours` (after the official 3.2.0 rules when
 * ../shared has them, see `modelMode`). Without the supported-fields list, every output field of
 * the loaded rules must have a type in our table, else this throws (a numeric field printed as a
 * string would pass unnoticed).
 */
export function runModel(trace: Trace, containers: ContainerDirectory | null, ours: string = OUR_RULES, opts: { matching?: 'first' | 'all'; onEvent?: (e: FalcoEvent) => void } = {}): ModelRun {
  const mode = modelMode();
  const rules = loadRules(mode.officialRules ? [OFFICIAL_RULES_040, ours] : [ours]);
  let fieldTypes: ReadonlyMap<string, string> = COMPANION_FIELD_TYPES;
  if (mode.fieldTypes === 'Falco 0.40 list') fieldTypes = loadFieldTypes(FIELDS_040);
  else {
    const untyped = untypedOutputFields(rules, fieldTypes);
    if (untyped.length > 0) throw new Error(`Falco model: no type for output field(s) ${untyped.join(', ')}: add them to test/support/falco-model/field-types.ts`);
  }
  const alerts = falcoAlerts(trace, { containers: containers ?? emptyDirectory }, { rules, hostname: hostname(), fieldTypes, matching: opts.matching ?? 'first' }, opts.onEvent);
  return { alerts, rules };
}

export function within(alerts: readonly ModelAlert[], m: Marks): ModelAlert[] {
  return alerts.filter((a) => a.timeNs >= m.from && a.timeNs < m.to);
}
