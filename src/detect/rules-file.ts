/**
 * The companion rules file (YAML) users configure detection with:
 *
 * - `signals:`   map Falco alerts to typed signals (rule name / prefix / tags / field predicates)
 * - `detectors:` per-detector settings, each detector declaring its own schema (src/config/dsl.ts)
 * - `suppress:`  allowlists, CI/CD windows and workloads, learning periods
 * - `output:`    forwarding of signal-only alerts, dedup window
 *
 * Every problem is reported at once as `file:line:col: message`. `RulesWatcher` reloads on an
 * explicit `reload()` (the CLI calls it on SIGHUP) and on file change (mtime polling); an invalid
 * new file keeps the old rules running.
 */
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LineCounter, isMap, isScalar, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { ConfigError, errorMessage } from '../errors.js';
import { bool, duration, int, obj, type ObjectSpec } from '../config/dsl.js';
import { checkSpec, type Problem } from '../config/validate.js';
import { SIGNAL_KINDS, ESCAPE_SUBTYPES, type SignalKind } from './types.js';
import { parseCidr, type Cidr } from './match.js';

// ---------------------------------------------------------------------------------------------
// Types of a loaded (validated, compiled-ready) rules file

export type PredicateOp = 'equals' | 'in' | 'startswith' | 'contains' | 'cidr' | 'gt' | 'gte' | 'lt' | 'lte' | 'exists';
export const PREDICATE_OPS: readonly PredicateOp[] = ['equals', 'in', 'startswith', 'contains', 'cidr', 'gt', 'gte', 'lt', 'lte', 'exists'];

export type Scalar = string | number | boolean;

export type Predicate =
  | { readonly field: string; readonly op: 'equals'; readonly value: Scalar }
  | { readonly field: string; readonly op: 'in' | 'startswith' | 'contains'; readonly values: readonly string[] }
  | { readonly field: string; readonly op: 'cidr'; readonly cidrs: readonly Cidr[] }
  | { readonly field: string; readonly op: 'gt' | 'gte' | 'lt' | 'lte'; readonly number: number }
  | { readonly field: string; readonly op: 'exists'; readonly exists: boolean };

export interface SubtypeFrom {
  readonly field: string;
  /** Field value → subtype; values not listed use `default` (null: the raw value). */
  readonly map: Readonly<Record<string, string>>;
  readonly default: string | null;
}

export interface SignalRule {
  /** Label for logs and docs (defaults to the first rule name or `signals[i]`). */
  readonly name: string;
  /** Exact Falco rule names (null: any). */
  readonly rules: readonly string[] | null;
  readonly rulePrefix: string | null;
  /** The alert must carry at least one of these tags (null: any). */
  readonly tags: readonly string[] | null;
  /** All must hold. */
  readonly where: readonly Predicate[];
  readonly kind: SignalKind;
  readonly subtype: string | null;
  readonly subtypeFrom: SubtypeFrom | null;
  /** Signal key → output field (or `companion.<key>`). */
  readonly extract: Readonly<Record<string, string>>;
  /** `file:line:col` of the entry. */
  readonly at: string;
}

export interface AllowEntry {
  readonly name: string;
  /** Detectors this applies to (null: all). */
  readonly detectors: readonly string[] | null;
  /** Signal kinds this applies to (null: all). */
  readonly kinds: readonly SignalKind[] | null;
  readonly images: readonly string[];
  readonly namespaces: readonly string[];
  readonly podLabels: Readonly<Record<string, string>>;
  readonly exes: readonly string[];
  /** Globs on ancestor names / executables (proc.pname, proc.aname[n], proc.pexepath, proc.aexepath[n]). */
  readonly ancestors: readonly string[];
  readonly destCidrs: readonly Cidr[];
  readonly destDomains: readonly string[];
}

export interface CiWindow {
  /** Days of week the window starts on, 0 = Sunday ... 6 = Saturday. */
  readonly days: readonly number[];
  /** Minutes after 00:00 UTC; `toMin <= fromMin` wraps past midnight. */
  readonly fromMin: number;
  readonly toMin: number;
  readonly text: string;
}

export interface CiWorkload {
  readonly namespaces: readonly string[];
  readonly podLabels: Readonly<Record<string, string>>;
  readonly images: readonly string[];
}

export interface CiSettings {
  readonly windows: readonly CiWindow[];
  readonly workloads: readonly CiWorkload[];
  /** Detectors CI windows/workloads silence. */
  readonly detectors: readonly string[];
}

export interface SuppressSettings {
  readonly allow: readonly AllowEntry[];
  readonly ci: CiSettings;
  /** Detector id → learning period in ms (findings suppressed until it has passed in event time). */
  readonly learning: Readonly<Record<string, number>>;
}

export interface OutputSettings {
  /** Forward alerts that only served as signals (companion signal rules). */
  readonly forwardSignalAlerts: boolean;
  readonly dedupWindowMs: number;
  readonly maxDedupKeys: number;
}

export interface DetectorSettingsBase {
  readonly enabled: boolean;
}

export interface LoadedRules {
  /** Where it came from (`(built-in defaults)` text is replaced by the defaults path). */
  readonly file: string;
  readonly signals: readonly SignalRule[];
  /** Detector id → validated settings (defaults filled in) for every registered detector. */
  readonly detectors: Readonly<Record<string, DetectorSettingsBase & Readonly<Record<string, unknown>>>>;
  readonly suppress: SuppressSettings;
  readonly output: OutputSettings;
}

/** A detector's settings schema; `enabled` is added to every one. */
export interface DetectorSettingsSpec {
  readonly id: string;
  readonly settings: ObjectSpec;
}

/**
 * Detector ids the project ships. The rules file may name them (settings, suppression) even when
 * the running engine has not registered them (settings of unregistered ones are ignored).
 */
export const KNOWN_DETECTOR_IDS = ['socket_filter', 'knock', 'beacon', 'first_seen_egress', 'escape_chain', 'unexpected_image', 'k8s_spread'] as const;

export const outputSpec = obj('Output of the detection engine.', {
  forward_signal_alerts: bool('Forward alerts of the companion signal rules (rule names starting with "Companion signal:") to the sinks. Detections and all other alerts are always forwarded.', true),
  dedup_window: duration('One detection per key per window; repeats are counted and reported as "repeated N times".', 600_000, { min: 1000 }),
  max_dedup_keys: int('Dedup keys kept; oldest evicted first (counted).', 10_000, { min: 10 }),
});

// ---------------------------------------------------------------------------------------------
// Loading

/** The built-in default rules file (copied to dist by the build). */
export function defaultRulesPath(): string {
  return fileURLToPath(new URL('./defaults/companion-rules.yaml', import.meta.url));
}

export interface LoadRulesOptions {
  /** Settings schemas of the detectors the engine runs (unknown ids in the file are errors). */
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
  return parseRules(file, text, opts.detectors ?? []);
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

class V {
  readonly problems: Problem[] = [];
  constructor(
    readonly file: string,
    readonly lc: LineCounter,
    readonly doc: Document,
  ) {}

  node(path: readonly (string | number)[]): YamlNode | null {
    if (path.length === 0) return (this.doc.contents as YamlNode | null) ?? null;
    const n = this.doc.getIn(path, true) as unknown;
    return n && typeof n === 'object' && 'range' in n ? (n as YamlNode) : null;
  }

  keyNode(path: readonly (string | number)[]): YamlNode | null {
    const parent = this.node(path.slice(0, -1));
    const last = path[path.length - 1];
    if (parent && isMap(parent)) {
      const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
      if (pair && isScalar(pair.key)) return pair.key as YamlNode;
    }
    return null;
  }

  at(path: readonly (string | number)[], key = false): string {
    for (let i = path.length; i >= 0; i--) {
      const p = path.slice(0, i);
      const n = (key && i === path.length ? this.keyNode(p) : null) ?? this.node(p);
      if (n?.range) {
        const { line, col } = this.lc.linePos(n.range[0]);
        return `${this.file}:${line}:${col}`;
      }
    }
    return `${this.file}:1:1`;
  }

  bad(path: readonly (string | number)[], msg: string, key = false): undefined {
    this.problems.push({ where: this.at(path, key), message: `${dotted(path)}: ${msg}` });
    return undefined;
  }

  keys(o: Record<string, unknown>, path: readonly (string | number)[], known: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!known.includes(k)) this.bad([...path, k], `unknown key; known keys: ${known.join(', ')}`, true);
    }
  }

  obj(v: unknown, path: readonly (string | number)[]): Record<string, unknown> | undefined {
    if (v === null || v === undefined) return {};
    if (typeof v !== 'object' || Array.isArray(v)) return this.bad(path, 'must be a mapping');
    return v as Record<string, unknown>;
  }

  str(v: unknown, path: readonly (string | number)[]): string | undefined {
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (typeof v !== 'string' || v === '') return this.bad(path, 'must be a non-empty string');
    return v;
  }

  /** A string or a list of strings. */
  strs(v: unknown, path: readonly (string | number)[]): string[] | undefined {
    if (v === null || v === undefined) return [];
    if (!Array.isArray(v)) {
      const s = this.str(v, path);
      return s === undefined ? undefined : [s];
    }
    const out: string[] = [];
    let ok = true;
    v.forEach((x, i) => {
      const s = this.str(x, [...path, i]);
      if (s === undefined) ok = false;
      else out.push(s);
    });
    return ok ? out : undefined;
  }

  labels(v: unknown, path: readonly (string | number)[]): Record<string, string> | undefined {
    const o = this.obj(v, path);
    if (!o) return undefined;
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(o)) {
      if (x === null || typeof x === 'object') this.bad([...path, k], 'must be a string (label value; `*` globs allowed)');
      else out[k] = String(x);
    }
    return out;
  }

  cidrs(v: unknown, path: readonly (string | number)[]): Cidr[] | undefined {
    const list = this.strs(v, path);
    if (!list) return undefined;
    const out: Cidr[] = [];
    list.forEach((s, i) => {
      const c = parseCidr(s);
      if (!c) this.bad(Array.isArray(v) ? [...path, i] : path, `${JSON.stringify(s)} is not an IPv4/IPv6 address or CIDR`);
      else out.push(c);
    });
    return out;
  }
}

function dotted(path: readonly (string | number)[]): string {
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : p)).join('.').replace(/\.\[/g, '[') || '(root)';
}

function parseRules(file: string, text: string, detectorSpecs: readonly DetectorSettingsSpec[]): LoadedRules {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const parseProblems: string[] = [];
  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = e.linePos?.[0] ?? (e.pos?.[0] !== undefined ? lc.linePos(e.pos[0]) : undefined);
    parseProblems.push(`${pos ? `${file}:${pos.line}:${pos.col}` : file}: ${e.message.split('\n')[0] ?? e.message}`);
  }
  if (doc.errors.length > 0) throw new ConfigError(parseProblems);
  const v = new V(file, lc, doc);
  const raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  const root = v.obj(raw, []) ?? {};
  v.keys(root, [], ['version', 'extends', 'signals', 'detectors', 'suppress', 'output']);
  let base: LoadedRules | null = null;
  if (root['extends'] !== undefined && root['extends'] !== null) {
    if (root['extends'] !== 'builtin') v.bad(['extends'], 'only `extends: builtin` is supported (include the built-in signals and allowlists)');
    else if (file !== defaultRulesPath()) base = loadRulesFile(null, { detectors: detectorSpecs });
  }
  if (root['version'] !== undefined && root['version'] !== 1) v.bad(['version'], 'only version 1 is supported');

  const detectorIds = detectorSpecs.map((d) => d.id);
  const signals = parseSignals(v, root['signals']);
  const detectors = parseDetectors(v, root['detectors'], detectorSpecs);
  const suppress = parseSuppress(v, root['suppress'], detectorIds);
  const outRaw = checkSpec(file, lc, v.problems, outputSpec, root['output'] ?? {}, v.node(['output']), ['output']) as
    | { forward_signal_alerts: boolean; dedup_window: number; max_dedup_keys: number }
    | undefined;

  const problems = [...parseProblems, ...v.problems.map((p) => `${p.where}: ${p.message}`)];
  if (problems.length > 0 || !outRaw) throw new ConfigError(problems);
  return deepFreeze({
    file,
    signals: base ? [...base.signals, ...signals] : signals,
    detectors,
    suppress: base
      ? { ...suppress, allow: [...base.suppress.allow, ...suppress.allow], ci: { ...suppress.ci, workloads: [...base.suppress.ci.workloads, ...suppress.ci.workloads] } }
      : suppress,
    output: { forwardSignalAlerts: outRaw.forward_signal_alerts, dedupWindowMs: outRaw.dedup_window, maxDedupKeys: outRaw.max_dedup_keys },
  });
}

function parseSignals(v: V, raw: unknown): SignalRule[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    v.bad(['signals'], 'must be a list of mapping entries');
    return [];
  }
  const out: SignalRule[] = [];
  raw.forEach((item, i) => {
    const path = ['signals', i];
    const o = v.obj(item, path);
    if (!o) return;
    v.keys(o, path, ['name', 'rule', 'rule_prefix', 'tags', 'where', 'field', ...PREDICATE_OPS, 'emit', 'extract']);
    const rules = o['rule'] === undefined ? null : (v.strs(o['rule'], [...path, 'rule']) ?? null);
    const rulePrefix = o['rule_prefix'] === undefined ? null : (v.str(o['rule_prefix'], [...path, 'rule_prefix']) ?? null);
    const tags = o['tags'] === undefined ? null : (v.strs(o['tags'], [...path, 'tags']) ?? null);
    const where: Predicate[] = [];
    if (o['field'] !== undefined) {
      const inline: Record<string, unknown> = {};
      for (const k of ['field', ...PREDICATE_OPS]) if (o[k] !== undefined) inline[k] = o[k];
      const p = parsePredicate(v, inline, path);
      if (p) where.push(p);
    } else if (PREDICATE_OPS.some((k) => o[k] !== undefined)) {
      v.bad(path, 'a predicate operator needs a `field`');
    }
    if (o['where'] !== undefined) {
      if (!Array.isArray(o['where'])) v.bad([...path, 'where'], 'must be a list of predicates ({field, equals|in|startswith|contains|cidr|gt|gte|lt|lte|exists})');
      else
        o['where'].forEach((w, j) => {
          const pp = [...path, 'where', j];
          const wo = v.obj(w, pp);
          if (!wo) return;
          v.keys(wo, pp, ['field', ...PREDICATE_OPS]);
          const p = parsePredicate(v, wo, pp);
          if (p) where.push(p);
        });
    }
    if (rules === null && rulePrefix === null && tags === null && where.length === 0) {
      v.bad(path, 'matches every alert: give `rule`, `rule_prefix`, `tags` or a field predicate');
    }
    const emitPath = [...path, 'emit'];
    const emit = o['emit'] === undefined ? v.bad(path, '`emit: {kind: ...}` is required') : v.obj(o['emit'], emitPath);
    let kind: SignalKind | undefined;
    let subtype: string | null = null;
    let subtypeFrom: SubtypeFrom | null = null;
    if (emit) {
      v.keys(emit, emitPath, ['kind', 'subtype', 'subtype_from']);
      const k = emit['kind'];
      if (typeof k !== 'string' || !(SIGNAL_KINDS as readonly string[]).includes(k)) {
        v.bad([...emitPath, 'kind'], `must be one of ${SIGNAL_KINDS.join(', ')}; got ${JSON.stringify(k)}`);
      } else kind = k as SignalKind;
      if (emit['subtype'] !== undefined && emit['subtype'] !== null) subtype = v.str(emit['subtype'], [...emitPath, 'subtype']) ?? null;
      if (emit['subtype_from'] !== undefined) {
        const sp = [...emitPath, 'subtype_from'];
        const so = v.obj(emit['subtype_from'], sp);
        if (so) {
          v.keys(so, sp, ['field', 'map', 'default']);
          const field = v.str(so['field'], [...sp, 'field']);
          const map = v.labels(so['map'] ?? {}, [...sp, 'map']);
          const def = so['default'] === undefined || so['default'] === null ? null : (v.str(so['default'], [...sp, 'default']) ?? null);
          if (field && map) subtypeFrom = { field, map, default: def };
        }
      }
      if (kind === 'escape') {
        const check = (s: string | null, p: (string | number)[]): void => {
          if (s !== null && !(ESCAPE_SUBTYPES as readonly string[]).includes(s)) v.bad(p, `escape subtype must be one of ${ESCAPE_SUBTYPES.join(', ')}; got ${JSON.stringify(s)}`);
        };
        check(subtype, [...emitPath, 'subtype']);
        if (subtypeFrom) {
          for (const [mk, mv] of Object.entries(subtypeFrom.map)) check(mv, [...emitPath, 'subtype_from', 'map', mk]);
          check(subtypeFrom.default, [...emitPath, 'subtype_from', 'default']);
        }
        if (subtype === null && subtypeFrom === null) v.bad(emitPath, 'an escape signal needs `subtype` or `subtype_from`');
      }
    }
    const extract = o['extract'] === undefined ? {} : v.labels(o['extract'], [...path, 'extract']);
    const name = typeof o['name'] === 'string' ? o['name'] : (rules?.[0] ?? rulePrefix ?? `signals[${i}]`);
    if (kind && extract) {
      out.push({ name, rules, rulePrefix, tags, where, kind, subtype, subtypeFrom, extract, at: v.at(path) });
    }
  });
  return out;
}

function parsePredicate(v: V, o: Record<string, unknown>, path: readonly (string | number)[]): Predicate | undefined {
  const field = v.str(o['field'], [...path, 'field']);
  const ops = PREDICATE_OPS.filter((k) => o[k] !== undefined);
  if (ops.length !== 1) return v.bad(path, `give exactly one of ${PREDICATE_OPS.join(', ')} with \`field\`${ops.length > 1 ? ` (got ${ops.join(', ')})` : ''}`);
  const op = ops[0] as PredicateOp;
  const val = o[op];
  const p = [...path, op];
  if (!field) return undefined;
  switch (op) {
    case 'equals':
      if (typeof val !== 'string' && typeof val !== 'number' && typeof val !== 'boolean') return v.bad(p, 'must be a string, number or boolean');
      return { field, op, value: val };
    case 'in':
    case 'startswith':
    case 'contains': {
      const values = op === 'in' && Array.isArray(val) ? val.map((x) => (x === null || typeof x === 'object' ? '' : String(x))) : v.strs(val, p);
      if (!values || values.length === 0) return v.bad(p, 'must be a non-empty string or list of strings');
      return { field, op, values };
    }
    case 'cidr': {
      const cidrs = v.cidrs(val, p);
      if (!cidrs || cidrs.length === 0) return cidrs ? v.bad(p, 'must list at least one CIDR') : undefined;
      return { field, op, cidrs };
    }
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      if (typeof val !== 'number' || !Number.isFinite(val)) return v.bad(p, 'must be a number');
      return { field, op, number: val };
    case 'exists':
      if (typeof val !== 'boolean') return v.bad(p, 'must be true or false');
      return { field, op, exists: val };
  }
}

function parseDetectors(v: V, raw: unknown, specs: readonly DetectorSettingsSpec[]): LoadedRules['detectors'] {
  const o = v.obj(raw, ['detectors']) ?? {};
  const known = specs.map((s) => s.id);
  for (const k of Object.keys(o)) {
    if (!known.includes(k) && !(KNOWN_DETECTOR_IDS as readonly string[]).includes(k)) v.bad(['detectors', k], `unknown detector; known detectors: ${[...new Set([...known, ...KNOWN_DETECTOR_IDS])].join(', ')}`, true);
  }
  const out: Record<string, DetectorSettingsBase & Record<string, unknown>> = {};
  for (const s of specs) {
    const spec = obj(s.settings.doc, { enabled: bool(`Run the ${s.id} detector.`, true), ...s.settings.fields });
    const path = ['detectors', s.id];
    const value = checkSpec(v.file, v.lc, v.problems, spec, o[s.id] ?? {}, v.node(path), path) as (DetectorSettingsBase & Record<string, unknown>) | undefined;
    if (value) out[s.id] = value;
  }
  return out;
}

function parseSuppress(v: V, raw: unknown, detectorIds: readonly string[]): SuppressSettings {
  const o = v.obj(raw, ['suppress']) ?? {};
  v.keys(o, ['suppress'], ['allow', 'ci', 'learning']);
  const checkDetectors = (list: string[] | undefined, path: (string | number)[]): void => {
    if (!list) return;
    list.forEach((d, i) => {
      if (!detectorIds.includes(d) && !(KNOWN_DETECTOR_IDS as readonly string[]).includes(d)) v.bad([...path, i], `unknown detector ${JSON.stringify(d)}; known: ${[...new Set([...detectorIds, ...KNOWN_DETECTOR_IDS])].join(', ')}`);
    });
  };

  const allow: AllowEntry[] = [];
  if (o['allow'] !== undefined && o['allow'] !== null) {
    if (!Array.isArray(o['allow'])) v.bad(['suppress', 'allow'], 'must be a list');
    else
      o['allow'].forEach((item, i) => {
        const path = ['suppress', 'allow', i];
        const e = v.obj(item, path);
        if (!e) return;
        v.keys(e, path, ['name', 'detectors', 'kinds', 'image', 'namespace', 'pod_labels', 'exe', 'ancestor', 'dest_cidr', 'dest_domain']);
        const detectors = e['detectors'] === undefined ? null : (v.strs(e['detectors'], [...path, 'detectors']) ?? null);
        checkDetectors(detectors ?? undefined, [...path, 'detectors']);
        let kinds: SignalKind[] | null = null;
        if (e['kinds'] !== undefined) {
          const ks = v.strs(e['kinds'], [...path, 'kinds']) ?? [];
          kinds = [];
          ks.forEach((k, j) => {
            if (!(SIGNAL_KINDS as readonly string[]).includes(k)) v.bad([...path, 'kinds', j], `unknown signal kind ${JSON.stringify(k)}; known: ${SIGNAL_KINDS.join(', ')}`);
            else kinds?.push(k as SignalKind);
          });
        }
        const entry: AllowEntry = {
          name: typeof e['name'] === 'string' ? e['name'] : `allow[${i}]`,
          detectors,
          kinds,
          images: v.strs(e['image'], [...path, 'image']) ?? [],
          namespaces: v.strs(e['namespace'], [...path, 'namespace']) ?? [],
          podLabels: v.labels(e['pod_labels'], [...path, 'pod_labels']) ?? {},
          exes: v.strs(e['exe'], [...path, 'exe']) ?? [],
          ancestors: v.strs(e['ancestor'], [...path, 'ancestor']) ?? [],
          destCidrs: v.cidrs(e['dest_cidr'], [...path, 'dest_cidr']) ?? [],
          destDomains: v.strs(e['dest_domain'], [...path, 'dest_domain']) ?? [],
        };
        if (
          entry.images.length + entry.namespaces.length + Object.keys(entry.podLabels).length + entry.exes.length + entry.ancestors.length + entry.destCidrs.length + entry.destDomains.length ===
          0
        ) {
          v.bad(path, 'allows everything: give at least one of image, namespace, pod_labels, exe, ancestor, dest_cidr, dest_domain');
        }
        allow.push(entry);
      });
  }

  const ciPath = ['suppress', 'ci'];
  const ci = v.obj(o['ci'], ciPath) ?? {};
  v.keys(ci, ciPath, ['windows', 'workloads', 'detectors']);
  const windows: CiWindow[] = [];
  if (ci['windows'] !== undefined && ci['windows'] !== null) {
    if (!Array.isArray(ci['windows'])) v.bad([...ciPath, 'windows'], 'must be a list of {days, from, to}');
    else
      ci['windows'].forEach((w, i) => {
        const path = [...ciPath, 'windows', i];
        const wo = v.obj(w, path);
        if (!wo) return;
        v.keys(wo, path, ['days', 'from', 'to']);
        const days = parseDays(v, wo['days'] ?? 'sun-sat', [...path, 'days']);
        const from = parseHm(v, wo['from'], [...path, 'from']);
        const to = parseHm(v, wo['to'], [...path, 'to']);
        if (days && from !== undefined && to !== undefined) {
          if (from === to) v.bad(path, '`from` and `to` are equal: the window is empty');
          else windows.push({ days, fromMin: from, toMin: to, text: `${String(wo['days'] ?? 'sun-sat')} ${String(wo['from'])}-${String(wo['to'])} UTC` });
        }
      });
  }
  const workloads: CiWorkload[] = [];
  if (ci['workloads'] !== undefined && ci['workloads'] !== null) {
    if (!Array.isArray(ci['workloads'])) v.bad([...ciPath, 'workloads'], 'must be a list of {namespace, pod_labels, image}');
    else
      ci['workloads'].forEach((w, i) => {
        const path = [...ciPath, 'workloads', i];
        const wo = v.obj(w, path);
        if (!wo) return;
        v.keys(wo, path, ['namespace', 'pod_labels', 'image']);
        const wl: CiWorkload = {
          namespaces: v.strs(wo['namespace'], [...path, 'namespace']) ?? [],
          podLabels: v.labels(wo['pod_labels'], [...path, 'pod_labels']) ?? {},
          images: v.strs(wo['image'], [...path, 'image']) ?? [],
        };
        if (wl.namespaces.length + wl.images.length + Object.keys(wl.podLabels).length === 0) v.bad(path, 'selects every workload: give namespace, pod_labels or image');
        else workloads.push(wl);
      });
  }
  const ciDetectors = ci['detectors'] === undefined ? ['unexpected_image', 'first_seen_egress', 'beacon'] : (v.strs(ci['detectors'], [...ciPath, 'detectors']) ?? []);
  if (ci['detectors'] !== undefined) checkDetectors(ciDetectors, [...ciPath, 'detectors']);

  const learning: Record<string, number> = {};
  const lo = v.obj(o['learning'], ['suppress', 'learning']) ?? {};
  for (const [k, x] of Object.entries(lo)) {
    const path = ['suppress', 'learning', k];
    if (!detectorIds.includes(k) && !(KNOWN_DETECTOR_IDS as readonly string[]).includes(k)) v.bad(path, `unknown detector; known: ${[...new Set([...detectorIds, ...KNOWN_DETECTOR_IDS])].join(', ')}`, true);
    const ms = checkSpec(v.file, v.lc, v.problems, duration('learning period', 0), x, v.node(path), path) as number | undefined;
    if (ms !== undefined) learning[k] = ms;
  }
  return { allow, ci: { windows, workloads, detectors: ciDetectors }, learning };
}

function parseDays(v: V, raw: unknown, path: (string | number)[]): number[] | undefined {
  const parts = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? raw.split(',') : null;
  if (!parts) return v.bad(path, 'must be days like `mon-fri`, `sat,sun` or a list');
  const out = new Set<number>();
  for (const part of parts) {
    const m = /^\s*([a-z]{3})[a-z]*\s*(?:-\s*([a-z]{3})[a-z]*\s*)?$/i.exec(part);
    const a = m ? DAYS.indexOf((m[1] as string).toLowerCase()) : -1;
    const b = m?.[2] ? DAYS.indexOf(m[2].toLowerCase()) : a;
    if (a < 0 || b < 0) return v.bad(path, `${JSON.stringify(part.trim())} is not a day or day range (sun, mon, tue, wed, thu, fri, sat)`);
    for (let d = a; ; d = (d + 1) % 7) {
      out.add(d);
      if (d === b) break;
    }
  }
  return [...out].sort();
}

function parseHm(v: V, raw: unknown, path: (string | number)[]): number | undefined {
  // YAML 1.1 sexagesimal is off in yaml v2's core schema: "02:00" unquoted stays a string.
  const m = typeof raw === 'string' ? /^(\d{1,2}):(\d{2})$/.exec(raw.trim()) : null;
  if (!m || Number(m[1]) > 24 || Number(m[2]) > 59 || (Number(m[1]) === 24 && Number(m[2]) !== 0)) {
    return v.bad(path, `must be a UTC time "HH:MM" (got ${JSON.stringify(raw)})`);
  }
  return Number(m[1]) * 60 + Number(m[2]);
}

/** True when event time `ns` falls inside the window (UTC). */
export function inCiWindow(w: CiWindow, ns: bigint): boolean {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  const day = d.getUTCDay();
  const min = d.getUTCHours() * 60 + d.getUTCMinutes();
  if (w.fromMin < w.toMin) return w.days.includes(day) && min >= w.fromMin && min < w.toMin;
  // Wraps midnight: the part after `from` belongs to today's window, before `to` to yesterday's.
  if (min >= w.fromMin) return w.days.includes(day);
  if (min < w.toMin) return w.days.includes((day + 6) % 7);
  return false;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Reloading

export interface RulesWatcherOptions {
  /** Rules file to watch; null: built-in defaults (never changes, reload is a no-op success). */
  readonly path: string | null;
  readonly detectors: readonly DetectorSettingsSpec[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Called with the new rules after a successful reload. */
  readonly onReload: (rules: LoadedRules) => void;
  /** mtime polling interval (0: no polling). */
  readonly pollMs?: number;
  /** Rules already loaded at start (else loaded by the constructor, throwing on error). */
  readonly initial?: LoadedRules;
}

/**
 * Holds the current rules and replaces them on `reload()` (SIGHUP) or when the file's mtime/size
 * changes. An invalid new file keeps the old rules and logs every problem.
 */
export class RulesWatcher {
  readonly id = 'detect/rules';
  private current: LoadedRules;
  private timer: NodeJS.Timeout | null = null;
  private stamp: string | null;
  private readonly reloads;
  private lastError: string | null = null;

  constructor(private readonly opts: RulesWatcherOptions) {
    this.current = opts.initial ?? loadRulesFile(opts.path, { detectors: opts.detectors });
    this.stamp = this.fileStamp();
    this.reloads = opts.metrics.counter('rules_reloads_total', 'Companion rules file reloads, by result (ok, invalid, unchanged)', ['result']);
  }

  get rules(): LoadedRules {
    return this.current;
  }

  /** Problems of the last failed reload (null after a good one). */
  get error(): string | null {
    return this.lastError;
  }

  start(): void {
    const every = this.opts.pollMs ?? 2000;
    if (this.opts.path === null || every <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      const s = this.fileStamp();
      if (s !== this.stamp) this.reload('file change');
    }, every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Reload now. Returns true when new rules are in force. */
  reload(why = 'SIGHUP'): boolean {
    const log = this.opts.logger;
    this.stamp = this.fileStamp();
    let next: LoadedRules;
    try {
      next = loadRulesFile(this.opts.path, { detectors: this.opts.detectors });
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
      this.lastError = problems.join('\n');
      this.reloads.inc({ result: 'invalid' });
      log.error({ component: this.id, file: this.opts.path, problems, reason: why }, `rules file reload failed, keeping the previous rules: ${problems.length} problem(s)`);
      return false;
    }
    this.current = next;
    this.lastError = null;
    this.reloads.inc({ result: 'ok' });
    log.info({ component: this.id, file: next.file, reason: why, signals: next.signals.length }, 'rules file reloaded');
    this.opts.onReload(next);
    return true;
  }

  private fileStamp(): string | null {
    if (this.opts.path === null) return null;
    try {
      const st = statSync(this.opts.path);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return 'missing';
    }
  }
}
