/**
 * "Why did this (not) fire?" for one Falco alert (`falco-companion explain`): which entries of the
 * rules file map it to signals (with `file:line`), which suppressions and CI windows apply to each
 * (signal, detector) pair and why (which allow entry matched which field, with the real matcher of
 * src/detect/suppress.ts on one condition at a time), what each detector's state holds for the
 * signal's workload, and what the detectors would do with the alert now (a dry run of `step` on
 * that state, never written back).
 *
 * Detector state comes from a {@link DetectorStates} source: the checkpoint in the state directory
 * when one can be read, else fresh states (the answer is then "this alert alone would ...").
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { formatTimeNs, type Alert } from '../alert.js';
import { errorMessage } from '../errors.js';
import { formatCidr } from '../net/cidr.js';
import { BoundedMap } from './detectors/kit.js';
import { compileMapping } from './mapping.js';
import { DETECTOR_MODULES, buildDetectors } from './registry.js';
import { defaultRulesPath } from './rules/load.js';
import type { AllowEntry, CiWindow, LoadedRules, Predicate, SignalRule, WorkloadSelector } from './rules/types.js';
import { inCiWindow, podLabelKeys, Suppression, type SuppressReason } from './suppress.js';
import type { Detector, Finding, Signal } from './types.js';

// ---------------------------------------------------------------------------------------------
// Positions of the rules file's entries

export interface RulesPositions {
  readonly signals: readonly string[];
  readonly allow: readonly string[];
  readonly ciWorkloads: readonly string[];
  readonly ciWindows: readonly string[];
}

function positionsOf(file: string): { signals: string[]; allow: string[]; workloads: string[]; windows: string[]; extendsBuiltin: boolean } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return { signals: [], allow: [], workloads: [], windows: [], extendsBuiltin: false };
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  const at = (path: (string | number)[], n: number): string[] =>
    Array.from({ length: n }, (_, i) => {
      const node = doc.getIn([...path, i], true) as YamlNode | undefined;
      return node?.range ? `${file}:${lc.linePos(node.range[0]).line}` : `${file}: ${path.join('.')}[${i}]`;
    });
  const len = (path: string[]): number => {
    const v = doc.getIn(path) as { items?: unknown[] } | undefined;
    return Array.isArray(v?.items) ? v.items.length : 0;
  };
  return {
    signals: at(['signals'], len(['signals'])),
    allow: at(['suppress', 'allow'], len(['suppress', 'allow'])),
    workloads: at(['suppress', 'ci', 'workloads'], len(['suppress', 'ci', 'workloads'])),
    windows: at(['suppress', 'ci', 'windows'], len(['suppress', 'ci', 'windows'])),
    extendsBuiltin: doc.get('extends') === 'builtin',
  };
}

/** `file:line` of every signal entry, allow entry, CI workload and CI window of loaded rules (built-in ones first with `extends: builtin`, as the loader merges them). */
export function rulesPositions(rules: LoadedRules): RulesPositions {
  const own = positionsOf(rules.file);
  const builtin = own.extendsBuiltin && rules.file !== defaultRulesPath() ? positionsOf(defaultRulesPath()) : null;
  return {
    signals: [...(builtin?.signals ?? []), ...own.signals],
    allow: [...(builtin?.allow ?? []), ...own.allow],
    ciWorkloads: [...(builtin?.workloads ?? []), ...own.workloads],
    ciWindows: own.windows,
  };
}

// ---------------------------------------------------------------------------------------------
// Detector state

/** Decoded detector states (by detector id), from a checkpoint or fresh. */
export interface DetectorStates {
  /** Where the states come from, for the reader. */
  readonly description: string;
  /** True when they come from a checkpoint (false: fresh `init()` states). */
  readonly fromCheckpoint: boolean;
  get(detectorId: string): unknown;
}

/** What a detector's state holds for a signal: a few lines. */
export type StateInspector = (state: unknown, sig: Signal) => string[];

/**
 * Per-detector inspectors (a detector can register a precise one here); the generic one lists the
 * state entries keyed by (or holding) the signal's container id, `host` for host processes.
 */
export const STATE_INSPECTORS: Readonly<Record<string, StateInspector>> = {};

const MAX_STATE_LINES = 12;

function short(v: unknown, depth = 0): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'bigint') return v > 1_000_000_000_000_000n ? formatTimeNs(v).replace(/\.(\d{3})\d+Z$/, '.$1Z') : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v !== 'object') return String(v);
  if (isSignal(v)) return `${v.kind}${v.subtype ? `/${v.subtype}` : ''} at ${short(v.timeNs)} by ${v.proc.exepath ?? v.proc.name ?? '?'}[${v.proc.pid ?? '?'}]`;
  if (v instanceof BoundedMap) return `${v.size} entr${v.size === 1 ? 'y' : 'ies'}`;
  if (v instanceof Map) return `{${v.size} entr${v.size === 1 ? 'y' : 'ies'}}`;
  if (v instanceof Set) return `{${[...v].slice(0, 5).map((x) => short(x, depth + 1)).join(', ')}${v.size > 5 ? `, ... ${v.size} in all` : ''}}`;
  if (Array.isArray(v)) {
    // Kept signals are what a reader wants to see; other nested lists are counted.
    const shown = depth === 0 || v.every((x) => typeof x === 'object' && x !== null && isSignal(x)) ? v.slice(0, 3) : [];
    return shown.length === 0 && v.length > 0 ? `[${v.length} item(s)]` : `[${shown.map((x) => short(x, depth + 1)).join('; ')}${v.length > shown.length ? `; ... ${v.length} in all` : ''}]`;
  }
  if (depth > 1) return '{...}';
  return `{${Object.entries(v as Record<string, unknown>)
    .slice(0, 8)
    .map(([k, x]) => `${k}: ${short(x, depth + 1)}`)
    .join(', ')}}`;
}

function isSignal(v: object): v is Signal {
  return 'kind' in v && 'timeNs' in v && 'proc' in v && 'alert' in v;
}

/** Entries of the state that belong to the signal's workload: keys or kept signals naming its container. */
export function genericInspector(state: unknown, sig: Signal): string[] {
  const id = sig.containerId ?? 'host';
  const out: string[] = [];
  const holds = (v: unknown): boolean => {
    if (typeof v === 'string') return v.includes(id);
    if (typeof v !== 'object' || v === null) return false;
    if (isSignal(v)) return (v.containerId ?? 'host') === id;
    if (Array.isArray(v)) return v.some((x) => typeof x === 'object' && x !== null && isSignal(x) && (x.containerId ?? 'host') === id);
    const o = v as Record<string, unknown>;
    return ['container', 'containerId', 'key'].some((k) => typeof o[k] === 'string' && (o[k] as string).includes(id)) || (Array.isArray(o['signals']) && holds(o['signals']));
  };
  const visit = (v: unknown, path: string, depth: number): void => {
    if (out.length >= MAX_STATE_LINES || depth > 3 || typeof v !== 'object' || v === null || isSignal(v)) return;
    const entries: [string, unknown][] =
      v instanceof BoundedMap || v instanceof Map ? [...(v as Map<unknown, unknown>).entries()].map(([k, x]) => [String(k), x]) : Array.isArray(v) || v instanceof Set ? [] : Object.entries(v as Record<string, unknown>);
    for (const [k, x] of entries) {
      if (out.length >= MAX_STATE_LINES) break;
      const p = v instanceof BoundedMap || v instanceof Map ? `${path}[${JSON.stringify(k)}]` : path ? `${path}.${k}` : k;
      if ((v instanceof BoundedMap || v instanceof Map) && (k.includes(id) || holds(x))) out.push(`${p} = ${short(x)}`);
      else visit(x, p, depth + 1);
    }
  };
  visit(state, '', 0);
  if (out.length >= MAX_STATE_LINES) out.push(`... (more entries for ${id})`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The explanation

export interface ConditionCheck {
  /** `image`, `namespace`, `pod_labels.app`, `exe`, `ancestor`, `dest_cidr`, `dest_domain`. */
  readonly field: string;
  readonly want: string;
  /** What the signal has for it. */
  readonly have: string;
  readonly held: boolean;
}

export interface SuppressionCheck {
  readonly kind: 'allow' | 'ci_workload' | 'ci_window';
  readonly name: string;
  readonly where: string;
  readonly matched: boolean;
  readonly conditions: readonly ConditionCheck[];
}

export interface DetectorExplanation {
  readonly detector: string;
  readonly enabled: boolean;
  /** What the engine does with the pair: null = the detector gets the signal. */
  readonly suppressed: SuppressReason | null;
  /** The suppressions that apply to this detector and kind (matched or not, the matched first). */
  readonly checks: readonly SuppressionCheck[];
  /** Learning period of the detector (ms; 0 none). */
  readonly learningMs: number;
  readonly quietInCi: boolean;
  readonly state: readonly string[];
  /** What `step` returns for this signal on that state (the dry run). */
  readonly findings: readonly { readonly rule: string; readonly priority: string; readonly message: string }[];
  readonly error: string | null;
}

export interface SignalExplanation {
  readonly kind: string;
  readonly subtype: string | null;
  /** Entries that produced it (`signals[i]` with file:line). */
  readonly entries: readonly { readonly index: number; readonly name: string; readonly where: string }[];
  readonly facts: Readonly<Record<string, string>>;
  readonly detectors: readonly DetectorExplanation[];
}

export interface Explanation {
  readonly alert: { readonly time: string; readonly rule: string; readonly priority: string; readonly source: string | null; readonly container: string | null; readonly image: string | null; readonly namespace: string | null; readonly pod: string | null };
  readonly rulesFile: string;
  readonly stateFrom: string;
  readonly fromCheckpoint: boolean;
  readonly signals: readonly SignalExplanation[];
  /** Entries that name the alert's rule but did not map it (their predicates failed, or a duplicate). */
  readonly nearMisses: readonly { readonly index: number; readonly name: string; readonly where: string; readonly why: string }[];
  readonly forwarded: string;
}

const EMPTY_ALLOW: Omit<AllowEntry, 'name'> = { detectors: null, kinds: null, images: [], namespaces: [], podLabels: {}, exes: [], ancestors: [], destCidrs: [], destDomains: [] };

function only(entry: Partial<AllowEntry>): AllowEntry {
  return { name: 'explain', ...EMPTY_ALLOW, ...entry };
}

function allowed(entry: AllowEntry, sig: Signal, detector: string): boolean {
  return new Suppression({ allow: [entry], ci: { windows: [], workloads: [], detectors: [] }, learning: {} }).signal(sig, detector) === 'allowlist';
}

function workloadHeld(w: WorkloadSelector, sig: Signal, detector: string): boolean {
  return new Suppression({ allow: [], ci: { windows: [], workloads: [w], detectors: [detector] }, learning: {} }).signal(sig, detector) === 'ci_workload';
}

const imageText = (s: Signal): string => (s.imageRepository ? `${s.imageRepository}${s.imageTag ? `:${s.imageTag}` : ''}` : '(none)');
const labelsText = (s: Signal, k: string): string => (Object.hasOwn(s.podLabels, k) ? String(s.podLabels[k]) : '(none)');

/** Each condition of an allow entry held or not (the real matcher on that condition alone). */
function allowConditions(e: AllowEntry, sig: Signal, detector: string): ConditionCheck[] {
  const out: ConditionCheck[] = [];
  const add = (field: string, want: readonly string[], have: string, part: Partial<AllowEntry>): void => {
    if (want.length > 0) out.push({ field, want: want.join(', '), have, held: allowed(only(part), sig, detector) });
  };
  add('image', e.images, imageText(sig), { images: e.images });
  add('namespace', e.namespaces, sig.namespace ?? '(none)', { namespaces: e.namespaces });
  for (const [k, v] of Object.entries(e.podLabels)) add(`pod_labels.${k}`, [v], labelsText(sig, k), { podLabels: { [k]: v } });
  add('exe', e.exes, [sig.proc.exepath, sig.proc.name].filter((x) => x !== null).join(' / ') || '(none)', { exes: e.exes });
  add('ancestor', e.ancestors, sig.proc.ancestors.join(', ') || '(none)', { ancestors: e.ancestors });
  add('dest_cidr', e.destCidrs.map(formatCidr), sig.net.remoteIp ?? '(none)', { destCidrs: e.destCidrs });
  add('dest_domain', e.destDomains, sig.net.remoteDomain ?? '(none)', { destDomains: e.destDomains });
  return out;
}

function workloadConditions(w: WorkloadSelector, sig: Signal, detector: string): ConditionCheck[] {
  const out: ConditionCheck[] = [];
  const add = (field: string, want: readonly string[], have: string, part: Partial<WorkloadSelector>): void => {
    if (want.length > 0) out.push({ field, want: want.join(', '), have, held: workloadHeld({ images: [], namespaces: [], podLabels: {}, ...part }, sig, detector) });
  };
  add('image', w.images, imageText(sig), { images: w.images });
  add('namespace', w.namespaces, sig.namespace ?? '(none)', { namespaces: w.namespaces });
  for (const [k, v] of Object.entries(w.podLabels)) add(`pod_labels.${k}`, [v], labelsText(sig, k), { podLabels: { [k]: v } });
  return out;
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
const windowText = (w: CiWindow): string => `${w.days.map((d) => DAY_NAMES[d]).join(',')} ${hhmm(w.fromMin)}-${hhmm(w.toMin)} UTC`;

function factsOf(s: Signal): Record<string, string> {
  const f: Record<string, string> = {};
  const put = (k: string, v: string | number | null): void => {
    if (v !== null && v !== '') f[k] = String(v);
  };
  put('container', s.containerId ?? 'host');
  put('image', s.imageRepository ? imageText(s) : null);
  put('namespace', s.namespace);
  put('pod', s.pod);
  put('exe', s.proc.exepath ?? s.proc.name);
  put('pid', s.proc.pid);
  put('ancestors', s.proc.ancestors.join(' < '));
  put('remote', s.net.remoteIp !== null ? `${s.net.remoteDomain ? `${s.net.remoteDomain} ` : ''}${s.net.remoteIp}${s.net.remotePort !== null ? `:${s.net.remotePort}` : ''}` : null);
  for (const [k, v] of Object.entries(s.keys)) put(`key.${k}`, typeof v === 'object' && v !== null ? v.raw : (v as string | number | null));
  return f;
}

function predicateText(p: Predicate): string {
  switch (p.op) {
    case 'equals':
      return `${p.field} equals ${JSON.stringify(p.value)}`;
    case 'in':
    case 'startswith':
    case 'contains':
      return `${p.field} ${p.op} ${p.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'cidr':
      return `${p.field} in ${p.cidrs.map(formatCidr).join(', ')}`;
    case 'exists':
      return `${p.field} ${p.exists ? 'exists' : 'is absent'}`;
    default:
      return `${p.field} ${p.op} ${p.number}`;
  }
}

/** What an entry requires besides the rule name (tags, prefix, predicates). */
function conditionsText(e: SignalRule): string {
  const parts = [...(e.tags ? [`a tag in ${e.tags.join(', ')}`] : []), ...(e.rulePrefix !== null ? [`rule prefix ${JSON.stringify(e.rulePrefix)}`] : []), ...e.where.map(predicateText)];
  return parts.length ? parts.join(' and ') : 'its conditions';
}

export interface ExplainOptions {
  readonly rules: LoadedRules;
  readonly states: DetectorStates;
  /** Detectors to use (default: built from the rules, as the daemon does). */
  readonly detectors?: readonly Detector<unknown>[];
  /** detect.forward_signal_alerts of the config (false forces signal alerts not to be forwarded). */
  readonly forwardSignalAlerts?: boolean;
}

/** Explain one alert against rules and detector states. The states are stepped (dry run): pass a source whose states may change. */
export function explainAlert(alert: Alert, opts: ExplainOptions): Explanation {
  const { rules } = opts;
  const pos = rulesPositions(rules);
  const where = (list: readonly string[], i: number, what: string): string => list[i] ?? `${rules.file}: ${what}[${i}]`;
  const detectors = opts.detectors ?? buildDetectors(rules);
  const mapping = compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) });
  const signals = mapping.mapAlert(alert);

  // Which entries produced which signal, and near misses.
  const emittedBy = new Map<string, { index: number; name: string; where: string }[]>();
  const nearMisses: Explanation['nearMisses'][number][] = [];
  const seen = new Set<string>();
  rules.signals.forEach((entry, index) => {
    const names = entry.rules !== null && entry.rules.includes(alert.rule);
    const one = compileMapping([entry]).mapAlert(alert);
    const w = where(pos.signals, index, 'signals');
    if (one.length === 0) {
      if (names) nearMisses.push({ index, name: entry.name, where: w, why: `names this rule, but ${conditionsText(entry)} does not hold` });
      return;
    }
    const s = one[0] as Signal;
    const k = `${s.kind}\u0000${s.subtype ?? ''}`;
    if (seen.has(k)) {
      nearMisses.push({ index, name: entry.name, where: w, why: `matches, but an earlier entry already emitted ${s.kind}${s.subtype ? `/${s.subtype}` : ''} (one signal per kind and subtype)` });
      return;
    }
    seen.add(k);
    emittedBy.set(k, [{ index, name: entry.name, where: w }]);
  });

  const ciDetectors = new Set(rules.suppress.ci.detectors);
  const suppression = new Suppression(rules.suppress);
  const quiet = new Map(DETECTOR_MODULES.map((m) => [m.id, m.quietInCi]));
  const out: SignalExplanation[] = [];
  for (const sig of signals) {
    const dets: DetectorExplanation[] = [];
    for (const det of detectors) {
      if (!det.consumes.includes(sig.kind)) continue;
      const enabled = rules.detectors[det.id]?.enabled !== false;
      const checks: SuppressionCheck[] = [];
      rules.suppress.allow.forEach((e, i) => {
        if ((e.detectors && !e.detectors.includes(det.id)) || (e.kinds && !e.kinds.includes(sig.kind))) return;
        checks.push({ kind: 'allow', name: e.name, where: where(pos.allow, i, 'suppress.allow'), matched: allowed(e, sig, det.id), conditions: allowConditions(e, sig, det.id) });
      });
      if (ciDetectors.has(det.id)) {
        rules.suppress.ci.windows.forEach((w, i) => {
          checks.push({ kind: 'ci_window', name: windowText(w), where: where(pos.ciWindows, i, 'suppress.ci.windows'), matched: inCiWindow(w, sig.timeNs), conditions: [] });
        });
        rules.suppress.ci.workloads.forEach((w, i) => {
          checks.push({ kind: 'ci_workload', name: `ci.workloads[${i}]`, where: where(pos.ciWorkloads, i, 'suppress.ci.workloads'), matched: workloadHeld(w, sig, det.id), conditions: workloadConditions(w, sig, det.id) });
        });
      }
      checks.sort((a, b) => Number(b.matched) - Number(a.matched));
      const suppressed = enabled ? suppression.signal(sig, det.id) : null;
      let state: string[] = [];
      let findings: Finding[] = [];
      let error: string | null = null;
      if (enabled && suppressed === null) {
        try {
          const st = opts.states.get(det.id) ?? det.init();
          state = (STATE_INSPECTORS[det.id] ?? genericInspector)(st, sig);
          findings = [...det.step(st, sig, sig.timeNs).findings];
        } catch (err) {
          error = errorMessage(err);
        }
      }
      dets.push({
        detector: det.id,
        enabled,
        suppressed,
        checks,
        learningMs: rules.suppress.learning[det.id] ?? 0,
        quietInCi: ciDetectors.has(det.id) || (quiet.get(det.id) ?? false),
        state,
        findings: findings.map((f) => ({ rule: f.rule, priority: f.priority, message: f.message })),
        error,
      });
    }
    const k = `${sig.kind}\u0000${sig.subtype ?? ''}`;
    out.push({ kind: sig.kind, subtype: sig.subtype, entries: emittedBy.get(k) ?? [], facts: factsOf(sig), detectors: dets });
  }

  const f = alert.outputFields ?? {};
  const str = (k: string): string | null => {
    const v = f[k];
    return v === undefined || v === null || v === '<NA>' ? null : typeof v === 'object' ? v.raw : String(v);
  };
  const forwardSignals = rules.output.forwardSignalAlerts && opts.forwardSignalAlerts !== false;
  const isSignalRule = alert.rule.startsWith('Companion signal:');
  return {
    alert: { time: formatTimeNs(alert.timeNs), rule: alert.rule, priority: alert.priority, source: alert.source, container: str('container.id'), image: str('container.image.repository'), namespace: str('k8s.ns.name'), pod: str('k8s.pod.name') },
    rulesFile: rules.file,
    stateFrom: opts.states.description,
    fromCheckpoint: opts.states.fromCheckpoint,
    signals: out,
    nearMisses,
    forwarded: isSignalRule && !forwardSignals ? 'not forwarded (a signal-only alert and output.forward_signal_alerts / detect.forward_signal_alerts is false)' : 'forwarded to the sinks as it is',
  };
}

// ---------------------------------------------------------------------------------------------
// Where detector states come from

/** Fresh `init()` states: what the alert alone would do. */
export function freshStates(why: string): DetectorStates {
  return { description: why, fromCheckpoint: false, get: () => undefined };
}

/** One stored part of a detection-state checkpoint (table `detect_state`, written by the daemon). */
export interface CheckpointPart {
  readonly id: string;
  readonly savedAtMs: number;
  readonly state: Buffer;
}

/**
 * States from checkpoint parts: `decode(id, bytes)` gives a detector's state (the state codec plus
 * restoring into the detector's fresh state); a part that does not decode is fresh, said in the
 * description.
 */
export function checkpointStates(parts: readonly CheckpointPart[], decode: (id: string, bytes: Buffer) => unknown, source: string): DetectorStates {
  const states = new Map<string, unknown>();
  const bad: string[] = [];
  let newest = 0;
  for (const p of parts) {
    try {
      states.set(p.id, decode(p.id, p.state));
      newest = Math.max(newest, p.savedAtMs);
    } catch (err) {
      bad.push(`${p.id} (${errorMessage(err)})`);
    }
  }
  const when = newest > 0 ? ` saved ${new Date(newest).toISOString()}` : '';
  return {
    description: `checkpoint in ${source}${when}${bad.length ? `; fresh for ${bad.join(', ')}` : ''}`,
    fromCheckpoint: states.size > 0,
    get: (id) => states.get(id),
  };
}
