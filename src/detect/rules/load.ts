/**
 * Loading the companion rules file: read, validate against src/detect/rules/schema.ts (every
 * problem at once as `file:line:col: path: message`, thrown as a ConfigError), convert to
 * {@link LoadedRules}, freeze.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Infer } from '../../config/dsl.js';
import { checkSpec, formatProblems, parseYaml, type Problem } from '../../config/validate.js';
import { ConfigError, errorMessage } from '../../errors.js';
import { deepFreeze } from '../../json/lossless.js';
import { CI_QUIET_DETECTOR_IDS, DETECTOR_MODULES } from '../registry.js';
import { OUTPUT_DEFAULTS, rulesFileSpec, type allowSpec, type ciWindowSpec, type ciWorkloadSpec, type outputSpec, type predicateSpec, type signalSpec } from './schema.js';
import type { AllowEntry, DetectorSettingsBase, DetectorSettingsSpec, LoadedRules, Predicate, SignalRule, SuppressSettings } from './types.js';

/** The built-in default rules file (copied to dist by the build). */
export function defaultRulesPath(): string {
  return fileURLToPath(new URL('../defaults/companion-rules.yaml', import.meta.url));
}

export interface LoadRulesOptions {
  /**
   * Settings schemas of detectors besides the registry's (src/detect/registry.ts), or replacing
   * one of the same id. Every known detector's settings are validated and filled in.
   */
  readonly detectors?: readonly DetectorSettingsSpec[];
  /** YAML text instead of reading the file. */
  readonly text?: string;
}

/** Load and validate a rules file (null: the built-in defaults). Throws ConfigError listing every problem. */
export function loadRulesFile(path: string | null, opts: LoadRulesOptions = {}): LoadedRules {
  const file = path ?? defaultRulesPath();
  let text: string;
  try {
    text = opts.text ?? readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read: ${errorMessage(err)}`]);
  }
  const specs = new Map<string, DetectorSettingsSpec>(DETECTOR_MODULES.map((m) => [m.id, m]));
  for (const d of opts.detectors ?? []) specs.set(d.id, d);
  return parseRules(file, text, [...specs.values()], opts.detectors ?? []);
}

type SignalInput = Infer<typeof signalSpec>;
type PredicateInput = Infer<typeof predicateSpec>;
type AllowInput = Infer<ReturnType<typeof allowSpec>>;
interface RulesInput {
  readonly extends: string | null;
  readonly signals: readonly SignalInput[];
  readonly detectors: Readonly<Record<string, DetectorSettingsBase & Readonly<Record<string, unknown>>>>;
  readonly suppress: {
    readonly allow: readonly AllowInput[];
    readonly ci: { readonly windows: readonly Infer<typeof ciWindowSpec>[]; readonly workloads: readonly Infer<typeof ciWorkloadSpec>[]; readonly detectors: readonly string[] };
    readonly learning: Readonly<Record<string, number>>;
  };
  readonly output: Infer<typeof outputSpec>;
}

function parseRules(file: string, text: string, specs: readonly DetectorSettingsSpec[], extra: readonly DetectorSettingsSpec[]): LoadedRules {
  const y = parseYaml(file, text);
  if (y.broken) throw new ConfigError(formatProblems(y.problems));
  const problems: Problem[] = [...y.problems];
  const deprecations: Problem[] = [];
  const raw = checkSpec(file, y.lc, problems, rulesFileSpec(specs, CI_QUIET_DETECTOR_IDS), y.raw ?? {}, y.root, [], deprecations) as RulesInput | undefined;
  if (problems.length > 0 || !raw) throw new ConfigError(formatProblems(problems));
  const base = raw.extends !== null && file !== defaultRulesPath() ? loadRulesFile(null, { detectors: extra }) : null;
  const signals = raw.signals.map(toSignalRule);
  const warnings: string[] = formatProblems(deprecations);
  const suppress: SuppressSettings = {
    allow: raw.suppress.allow.map(toAllowEntry),
    ci: {
      windows: raw.suppress.ci.windows.map((w) => ({ days: w.days, fromMin: w.from, toMin: w.to })),
      workloads: raw.suppress.ci.workloads.map((w) => ({ namespaces: w.namespace, podLabels: w.pod_labels, images: w.image })),
      detectors: raw.suppress.ci.detectors,
    },
    learning: raw.suppress.learning,
  };
  return deepFreeze({
    file,
    signals: base ? [...base.signals, ...signals] : signals,
    detectors: raw.detectors,
    suppress: base
      ? { ...suppress, allow: [...base.suppress.allow, ...suppress.allow], ci: { ...suppress.ci, workloads: [...base.suppress.ci.workloads, ...suppress.ci.workloads] } }
      : suppress,
    output: outputSettings(raw.output, warnings),
    warnings,
  });
}

/** `15m`, `24h`, `90s`, `250ms`: a duration as a rules file would write it. */
function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The notify settings; the deprecated dedup keys stand in for their successors, with a warning each. */
function outputSettings(o: Infer<typeof outputSpec>, warnings: string[]): LoadedRules['output'] {
  let renotifyMs = o.renotify ?? OUTPUT_DEFAULTS.renotifyMs;
  let maxIncidents = o.max_incidents ?? OUTPUT_DEFAULTS.maxIncidents;
  if (o.dedup_window !== null) {
    if (o.renotify === null) renotifyMs = Math.max(60_000, o.dedup_window); // renotify's minimum
    warnings.push(
      `output.dedup_window is deprecated: detections follow the notify policy (one per incident, again when it gets worse or after output.renotify); use output.renotify${o.renotify === null ? ` (taken as renotify: ${durationText(renotifyMs)} for now)` : ' (set too: dedup_window ignored)'}`,
    );
  }
  if (o.max_dedup_keys !== null) {
    if (o.max_incidents === null) maxIncidents = o.max_dedup_keys;
    warnings.push(`output.max_dedup_keys is deprecated: use output.max_incidents${o.max_incidents === null ? ' (taken as max_incidents for now)' : ' (set too: max_dedup_keys ignored)'}`);
  }
  return { forwardSignalAlerts: o.forward_signal_alerts, renotifyMs, incidentIdleMs: o.incident_idle, maxIncidents };
}

function toPredicate(p: PredicateInput): Predicate {
  const field = p.field;
  if (p.equals !== null) return { field, op: 'equals', value: p.equals };
  if (p.in !== null) return { field, op: 'in', values: p.in };
  if (p.startswith !== null) return { field, op: 'startswith', values: p.startswith };
  if (p.contains !== null) return { field, op: 'contains', values: p.contains };
  if (p.cidr !== null) return { field, op: 'cidr', cidrs: p.cidr };
  if (p.gt !== null) return { field, op: 'gt', number: p.gt };
  if (p.gte !== null) return { field, op: 'gte', number: p.gte };
  if (p.lt !== null) return { field, op: 'lt', number: p.lt };
  if (p.lte !== null) return { field, op: 'lte', number: p.lte };
  return { field, op: 'exists', exists: p.exists ?? true };
}

function toSignalRule(s: SignalInput, i: number): SignalRule {
  const where = s.field !== null ? [toPredicate({ ...s, field: s.field }), ...s.where.map(toPredicate)] : s.where.map(toPredicate);
  const sf = s.emit.subtype_from;
  return {
    name: s.name ?? s.rule?.[0] ?? s.rule_prefix ?? `signals[${i}]`,
    rules: s.rule,
    rulePrefix: s.rule_prefix,
    tags: s.tags,
    where,
    kind: s.emit.kind,
    subtype: s.emit.subtype,
    subtypeFrom: sf ? { field: sf.field, map: sf.map, default: sf.default } : null,
    extract: s.extract,
  };
}

function toAllowEntry(e: AllowInput, i: number): AllowEntry {
  return {
    name: e.name ?? `allow[${i}]`,
    detectors: e.detectors,
    kinds: e.kinds,
    images: e.image,
    namespaces: e.namespace,
    podLabels: e.pod_labels,
    exes: e.exe,
    ancestors: e.ancestor,
    destCidrs: e.dest_cidr,
    destDomains: e.dest_domain,
  };
}
