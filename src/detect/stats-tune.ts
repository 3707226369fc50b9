/**
 * The tuning assistant's reasoning (`falco-companion tune`): from the signal statistics
 * (src/store/signal-stats.ts) propose
 *
 * - allow entries for the companion rules file (`suppress.allow`) that would have removed the
 *   detections the user does not need (below Warning, or marked benign with `--benign`), and
 * - values for the `exceptions:` our Falco rules pack declares (falco-rules/
 *   falco-companion_rules.yaml) that would have removed high-volume signals at the source,
 *
 * each with what it would have suppressed and an example. Nothing is applied.
 *
 * Soundness rules:
 * - Never propose what would also have suppressed a detection at Warning or above that the user
 *   has not marked benign: every candidate is matched against the evidence of those detections
 *   (allow entries with the real matcher of src/detect/suppress.ts on the evidence's dimensions;
 *   Falco exceptions with Falco's `=` / `startswith` on the same fields), conservatively (an
 *   unknown dimension counts as a match). Say so instead.
 * - Prefer the narrowest dimension that covers the noise: image + exe + destination, then image +
 *   exe, then image, then namespace (+ app label); a narrower level is skipped for a broader one
 *   only when it would split one workload into more than {@link MAX_SPLIT} entries.
 * - Require volume and spread: at least `minSignals` signals over at least `minHours` distinct
 *   hours of event time (a one-hour burst is not a baseline).
 * - Only facts the statistics keep exactly are used (no ancestor globs, no executable names
 *   without a path), so the check on the evidence is the check the matcher will do.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { atLeast, createAlert, parsePriority, type Alert } from '../alert.js';
import { parseCidr } from '../net/cidr.js';
import type { FindingStatRow, SignalStatRow } from '../store/signal-stats.js';
import type { AllowEntry } from './rules/types.js';
import { compileGlob, Suppression } from './suppress.js';
import { destIsCidr, dimsText, parseDimsKey, sameTuple, type StatDims } from './stats-dims.js';
import type { EvidenceTuple } from './stats.js';
import { SIGNAL_KINDS, type Signal, type SignalKind } from './types.js';

/** A workload split into more entries than this at one level gets the next broader level. */
export const MAX_SPLIT = 3;
/** Falco exception rows per workload (first field) before the next broader exception is preferred. */
export const MAX_FALCO_ROWS = 10;

export interface TuneInput {
  readonly signals: readonly SignalStatRow[];
  readonly findings: readonly FindingStatRow[];
  /** Observations the statistics dropped in the window (queue full). */
  readonly dropped: number;
  /** Our Falco rules pack: rule name → declared exceptions. */
  readonly falcoRules: ReadonlyMap<string, readonly FalcoException[]>;
  readonly minSignals: number;
  readonly minHours: number;
  /** Globs on a detection's dedup key or rule name: detections the user calls benign. */
  readonly benign: readonly string[];
}

export interface FalcoException {
  readonly name: string;
  readonly fields: readonly string[];
  readonly comps: readonly string[];
}

/** A suppressed or protected detection, as reported. */
export interface DetectionRef {
  readonly detector: string;
  readonly rule: string;
  readonly priority: string;
  readonly key: string;
  /** Findings (emitted and folded by the notify policy). */
  readonly count: number;
  /** Of those, the ones emitted as detection alerts. */
  readonly emitted: number;
  readonly hours: number;
  readonly example: string | null;
}

/** An allow entry as written in the rules file (YAML keys). */
export interface AllowYaml {
  readonly name: string;
  readonly detectors: readonly string[];
  readonly kinds: readonly string[];
  readonly image?: readonly string[];
  readonly namespace?: readonly string[];
  readonly pod_labels?: Readonly<Record<string, string>>;
  readonly exe?: readonly string[];
  readonly dest_cidr?: readonly string[];
  readonly dest_domain?: readonly string[];
}

export interface AllowProposal {
  readonly entry: AllowYaml;
  /** Which dimensions: `image+exe+dest`, `image+exe`, `exe+dest`, `exe`, `image`, `namespace+app`, `namespace`. */
  readonly level: string;
  readonly signals: number;
  readonly hours: number;
  /** Detections it would have suppressed (below Warning, or marked benign). */
  readonly detections: readonly DetectionRef[];
  readonly example: string | null;
}

export interface FalcoRow {
  readonly values: readonly (string | number)[];
  readonly signals: number;
  readonly hours: number;
  readonly detections: number;
  readonly example: string | null;
}

export interface FalcoProposal {
  readonly rule: string;
  readonly exception: string;
  readonly fields: readonly string[];
  readonly rows: readonly FalcoRow[];
}

export interface NotProposed {
  /** What was looked at (a detection, a signal source). */
  readonly what: string;
  readonly reason: string;
  /** How to get a proposal, when there is a way. */
  readonly hint: string | null;
  /** The signals are the evidence of the (protected) detection that blocks them, not collateral. */
  readonly own?: boolean;
}

export interface TuneResult {
  readonly totals: {
    readonly signals: number;
    readonly detections: number;
    readonly dropped: number;
    readonly overflowSignals: number;
    readonly overflowDetections: number;
    readonly hours: number;
  };
  readonly allow: readonly AllowProposal[];
  readonly falco: readonly FalcoProposal[];
  /** Detections at Warning or above the user has not marked benign: never suppressed by a proposal. */
  readonly protectedDetections: readonly DetectionRef[];
  readonly notProposed: readonly NotProposed[];
  /** Detectors whose findings overflowed the statistics at Warning+: nothing proposed for them (cannot be checked). */
  readonly unchecked: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// The Falco rules pack

/** `<package root>/falco-rules/falco-companion_rules.yaml`, from src/ (tests) or dist/src/ (the CLI). */
export function defaultFalcoRulesPath(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const f = join(dir, 'falco-rules', 'falco-companion_rules.yaml');
    if (existsSync(f)) return f;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

/** Rule name → declared exceptions (fields; comps default `=`), from a Falco rules file's text. */
export function falcoExceptionsOf(text: string): Map<string, FalcoException[]> {
  const doc: unknown = parseYaml(text);
  const out = new Map<string, FalcoException[]>();
  if (!Array.isArray(doc)) return out;
  const strs = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : v === undefined || v === null ? [] : [String(v)]);
  for (const item of doc as unknown[]) {
    if (typeof item !== 'object' || item === null) continue;
    const r = item as Record<string, unknown>;
    if (typeof r['rule'] !== 'string' || !Array.isArray(r['exceptions'])) continue;
    const list: FalcoException[] = [];
    for (const e of r['exceptions'] as unknown[]) {
      if (typeof e !== 'object' || e === null) continue;
      const x = e as Record<string, unknown>;
      if (typeof x['name'] !== 'string' || !Array.isArray(x['fields'])) continue; // single-field form (comps `in`) not used by our pack
      const fields = strs(x['fields']);
      const comps = x['comps'] === undefined ? fields.map(() => '=') : strs(x['comps']);
      list.push({ name: x['name'], fields, comps });
    }
    out.set(r['rule'], list);
  }
  return out;
}

export function loadFalcoExceptions(path: string): Map<string, FalcoException[]> {
  return falcoExceptionsOf(readFileSync(path, 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// Units: the statistics regrouped

interface Unit {
  readonly kind: string;
  readonly dims: StatDims;
  ip: string | null;
  count: number;
  readonly hours: Set<number>;
  example: string | null;
  exampleCount: number;
}

interface Detection {
  readonly detector: string;
  readonly rule: string;
  readonly priority: string;
  readonly key: string;
  count: number;
  emitted: number;
  readonly hours: Set<number>;
  readonly evidence: { readonly rule: string; readonly kind: string; readonly dims: StatDims; readonly ip: string | null }[];
  readonly evidenceKeys: Set<string>;
  example: string | null;
}

const mergeIp = (a: string | null, b: string | null): string | null => (a === b ? a : a === null ? b : b === null ? a : '*');

function addUnit(map: Map<string, Unit>, key: string, kind: string, dims: StatDims, r: { count: number; ip: string | null; example: string | null }, hours: Iterable<number>): void {
  let u = map.get(key);
  if (!u) map.set(key, (u = { kind, dims, ip: r.ip, count: 0, hours: new Set(), example: null, exampleCount: -1 }));
  u.count += r.count;
  u.ip = mergeIp(u.ip, r.ip);
  for (const h of hours) u.hours.add(h);
  if (r.example && r.count > u.exampleCount) {
    u.example = r.example;
    u.exampleCount = r.count;
  }
}

/** One line from a stored example: `time rule: output` (signal alert JSON) or `time message` (finding). */
export function exampleText(example: string | null): string | null {
  if (!example) return null;
  try {
    const o = JSON.parse(example) as Record<string, unknown>;
    const time = typeof o['time'] === 'string' ? o['time'].replace(/\.\d+Z$/, 'Z') : '';
    if (typeof o['message'] === 'string') return `${time} ${o['message']}`.trim();
    const out = typeof o['output'] === 'string' ? o['output'].replace(/^\d\d:\d\d:\d\d\.\d+: \w+ /, '') : '';
    const rule = typeof o['rule'] === 'string' ? o['rule'] : '';
    const text = out.includes(rule) ? out : `${rule}: ${out}`;
    return `${time} ${text}`.replace(/\s+/g, ' ').trim().slice(0, 300);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Matching on dimensions with the real allow-entry matcher

const DUMMY_ALERT: Alert = createAlert({
  time: '1970-01-01T00:00:00.000000000Z',
  rule: 'tune',
  priority: 'Debug',
  source: 'syscall',
  hostname: null,
  output: '',
  tags: null,
  outputFields: null,
  origin: { kind: 'test', component: 'tune' },
  receivedAtMs: 0,
});

const basename = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** A Signal with exactly the facts of a tuple (what the allow-entry matcher reads). */
function dimsSignal(kind: string, d: StatDims, ip: string | null): Signal {
  const exe = d.exe;
  const [lk, lv] = d.app !== null && d.app.includes('=') ? [d.app.slice(0, d.app.indexOf('=')), d.app.slice(d.app.indexOf('=') + 1)] : [null, null];
  const domain = d.dest !== null && !destIsCidr(d.dest) ? d.dest : null;
  let remoteIp = ip !== null && ip !== '*' ? ip : null;
  if (remoteIp === null && d.dest !== null && destIsCidr(d.dest)) remoteIp = d.dest.slice(0, d.dest.indexOf('/'));
  return {
    kind: (SIGNAL_KINDS as readonly string[]).includes(kind) ? (kind as SignalKind) : 'connect',
    subtype: null,
    timeNs: 0n,
    rule: 'tune',
    containerId: d.image !== null ? 'tune' : null,
    imageRepository: d.image,
    imageTag: null,
    imageDigest: null,
    namespace: d.namespace,
    pod: null,
    podLabels: lk !== null && lv !== null ? { [lk]: lv } : {},
    proc: { pid: null, ppid: null, sid: null, apids: [], name: exe === null ? null : basename(exe), exepath: exe?.startsWith('/') ? exe : null, cmdline: null, ancestors: d.parent !== null ? [d.parent] : [] },
    net: { l4proto: null, clientIp: null, clientPort: null, serverIp: remoteIp, serverPort: d.port, remoteIp, remotePort: d.port, remoteDomain: domain },
    keys: {},
    alert: DUMMY_ALERT,
  };
}

interface Candidate {
  readonly yaml: AllowYaml;
  readonly entry: AllowEntry;
  readonly level: string;
}

/** True when the entry would suppress this tuple for the detector; `conservative` counts unknown facts as matching. */
function allowHits(c: Candidate, detector: string, kind: string, d: StatDims, ip: string | null, conservative: boolean): boolean {
  const check = (entry: AllowEntry, sig: Signal): boolean =>
    new Suppression({ allow: [entry], ci: { windows: [], workloads: [], detectors: [] }, learning: {} }).signal(sig, detector) === 'allowlist';
  let entry = c.entry;
  if (conservative) {
    // Facts the tuple does not know match: a destination known by domain only (several or no
    // addresses kept), the app label of a detection's slim evidence.
    if (entry.destCidrs.length > 0 && d.dest !== null && !destIsCidr(d.dest) && (ip === null || ip === '*')) entry = { ...entry, destCidrs: [] };
    if (Object.keys(entry.podLabels).length > 0 && d.app === null) entry = { ...entry, podLabels: {} };
  }
  return check(entry, dimsSignal(kind, d, ip));
}

function slug(s: string): string {
  return s
    .replace(/^.*\//, '')
    .replace(/[^A-Za-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .toLowerCase()
    .slice(0, 40);
}

interface Level {
  readonly name: string;
  /** The level's key of a tuple (null: the tuple lacks one of its dimensions). */
  readonly key: (d: StatDims) => string | null;
  /** Allow entry fields of a key's tuple. */
  readonly fields: (d: StatDims) => Partial<AllowYaml>;
}

const absExe = (d: StatDims): string | null => (d.exe !== null && d.exe.startsWith('/') ? d.exe : null);
const destFields = (dest: string): Partial<AllowYaml> => (destIsCidr(dest) ? { dest_cidr: [dest] } : { dest_domain: [dest] });
const appFields = (app: string): Partial<AllowYaml> => ({ pod_labels: { [app.slice(0, app.indexOf('='))]: app.slice(app.indexOf('=') + 1) } });

/** Narrowest first. Containers by image, host processes (no image) by executable. */
const LEVELS: readonly Level[] = [
  { name: 'image+exe+dest', key: (d) => (d.image && absExe(d) && d.dest ? JSON.stringify([d.image, d.exe, d.dest]) : null), fields: (d) => ({ image: [d.image as string], exe: [d.exe as string], ...destFields(d.dest as string) }) },
  { name: 'exe+dest', key: (d) => (!d.image && absExe(d) && d.dest ? JSON.stringify([d.exe, d.dest]) : null), fields: (d) => ({ exe: [d.exe as string], ...destFields(d.dest as string) }) },
  { name: 'image+exe', key: (d) => (d.image && absExe(d) ? JSON.stringify([d.image, d.exe]) : null), fields: (d) => ({ image: [d.image as string], exe: [d.exe as string] }) },
  { name: 'exe', key: (d) => (!d.image && absExe(d) ? JSON.stringify([d.exe]) : null), fields: (d) => ({ exe: [d.exe as string] }) },
  { name: 'image', key: (d) => (d.image ? JSON.stringify([d.image]) : null), fields: (d) => ({ image: [d.image as string] }) },
  { name: 'namespace+app', key: (d) => (d.namespace && d.app?.includes('=') ? JSON.stringify([d.namespace, d.app]) : null), fields: (d) => ({ namespace: [d.namespace as string], ...appFields(d.app as string) }) },
  { name: 'namespace', key: (d) => (d.namespace ? JSON.stringify([d.namespace]) : null), fields: (d) => ({ namespace: [d.namespace as string] }) },
];

/** Which level is the broader one a level's entries fold into when they split a workload. */
const PARENT: Readonly<Record<string, string>> = { 'image+exe+dest': 'image+exe', 'exe+dest': 'exe', 'image+exe': 'image' };

function toAllowEntry(y: AllowYaml): AllowEntry {
  return {
    name: y.name,
    detectors: y.detectors,
    kinds: y.kinds as SignalKind[],
    images: y.image ?? [],
    namespaces: y.namespace ?? [],
    podLabels: y.pod_labels ?? {},
    exes: y.exe ?? [],
    ancestors: [],
    destCidrs: (y.dest_cidr ?? []).map((c) => parseCidr(c)).filter((c) => c !== null),
    destDomains: y.dest_domain ?? [],
  };
}

// ---------------------------------------------------------------------------------------------
// Falco exception fields on tuples

/** The tuple's value for a Falco field of ours; undefined: the statistics do not keep it. */
function falcoValue(field: string, kind: string, u: { dims: StatDims; ip: string | null }): string | number | null | undefined {
  const d = u.dims;
  switch (field) {
    case 'container.image.repository':
      return d.image;
    case 'proc.exepath':
      return absExe(d);
    case 'k8s.ns.name':
      return d.namespace;
    case 'proc.pname':
      return d.parent;
    case 'fd.sport':
      return d.port;
    case 'fd.name':
      return d.file;
    case 'fd.sip':
      return kind === 'connect' ? (u.ip !== null && u.ip !== '*' ? u.ip : null) : undefined;
    default:
      return undefined;
  }
}

/** How specific a Falco field is (an exception's fields add up; the most specific exceptions are tried first). */
const FIELD_SPECIFICITY: Readonly<Record<string, number>> = {
  'fd.sip': 6,
  'fd.name': 5,
  'proc.exepath': 5,
  'fd.sport': 3,
  'proc.pname': 2,
  'container.image.repository': 2,
  'k8s.ns.name': 1,
};

/**
 * A value Falco's exception builder can take as it is: it quotes only values with a space, so
 * parentheses, quotes, commas, `=` and backslashes would break the condition.
 */
export function falcoValueWritable(v: string | number): boolean {
  return typeof v === 'number' || /^[^()"'\s=,\\]+$/.test(v);
}

/**
 * Whether an exception row matches a tuple: every field compared as Falco does (`=`, `startswith`).
 * A field the tuple does not know (several addresses, no exepath) matches when `conservative` (a
 * detection's evidence: it could have been suppressed), and does not otherwise (counting).
 */
function falcoMatches(ex: FalcoException, values: readonly (string | number)[], t: { readonly kind: string; readonly dims: StatDims; readonly ip: string | null }, conservative: boolean): boolean {
  return ex.fields.every((f, i) => {
    const have = falcoValue(f, t.kind, t);
    const want = values[i] as string | number;
    if (have === undefined || have === null) return conservative;
    return (ex.comps[i] ?? '=') === 'startswith' ? String(have).startsWith(String(want)) : String(have) === String(want);
  });
}

// ---------------------------------------------------------------------------------------------
// The proposal

function benignMatcher(globs: readonly string[]): (d: { key: string; rule: string }) => boolean {
  const ms = globs.map(compileGlob);
  return (d) => ms.some((m) => m(d.key) || m(d.rule));
}

function ref(d: Detection): DetectionRef {
  return { detector: d.detector, rule: d.rule, priority: d.priority, key: d.key, count: d.count, emitted: d.emitted, hours: d.hours.size, example: d.example };
}

export function propose(input: TuneInput): TuneResult {
  const isBenign = benignMatcher(input.benign);
  const allHours = new Set<number>();

  // Signal units per detector (what reached the detector), and per Falco rule (what Falco emitted).
  const byDetector = new Map<string, Map<string, Unit>>();
  let signalTotal = 0;
  let overflowSignals = 0;
  /** (rule, dims) → per hour → per detector: count (a Falco alert reaches every consuming detector). */
  const perRule = new Map<string, Map<string, { kind: string; dims: StatDims; hours: Map<number, Map<string, { count: number; ip: string | null; example: string | null }>> }>>();
  for (const r of input.signals) {
    allHours.add(r.bucket);
    const dims = parseDimsKey(r.dims);
    if (dims === null) {
      overflowSignals += r.count;
      continue;
    }
    if (r.outcome === 'consumed' || r.outcome === 'learning') {
      let m = byDetector.get(r.detector);
      if (!m) byDetector.set(r.detector, (m = new Map()));
      addUnit(m, `${r.kind}\u0000${r.dims}`, r.kind, dims, r, [r.bucket]);
    }
    let rm = perRule.get(r.rule);
    if (!rm) perRule.set(r.rule, (rm = new Map()));
    let x = rm.get(r.dims);
    if (!x) rm.set(r.dims, (x = { kind: r.kind, dims, hours: new Map() }));
    let h = x.hours.get(r.bucket);
    if (!h) x.hours.set(r.bucket, (h = new Map()));
    const prev = h.get(r.detector);
    h.set(r.detector, { count: (prev?.count ?? 0) + r.count, ip: mergeIp(prev?.ip ?? r.ip, r.ip), example: prev?.example ?? r.example });
  }
  // Falco alerts per rule and tuple: in each hour the busiest detector's count (every consuming detector sees each alert once).
  const falcoUnits = new Map<string, Map<string, Unit>>();
  for (const [rule, rm] of perRule) {
    const m = new Map<string, Unit>();
    for (const [dk, x] of rm) {
      for (const [bucket, dets] of x.hours) {
        let best: { count: number; ip: string | null; example: string | null } | null = null;
        for (const v of dets.values()) if (best === null || v.count > best.count) best = v;
        if (best) addUnit(m, dk, x.kind, x.dims, best, [bucket]);
      }
      signalTotal += m.get(dk)?.count ?? 0;
    }
    falcoUnits.set(rule, m);
  }

  // Detections per (detector, key, rule, priority).
  const detections = new Map<string, Detection>();
  let detectionTotal = 0;
  let overflowDetections = 0;
  const unchecked = new Set<string>();
  for (const r of input.findings) {
    allHours.add(r.bucket);
    const priority = parsePriority(r.priority) ?? 'Warning';
    if (r.key === '') {
      overflowDetections += r.count;
      if (atLeast(priority, 'Warning')) unchecked.add(r.detector);
      continue;
    }
    detectionTotal += r.count;
    const k = `${r.detector}\u0000${r.key}\u0000${r.rule}\u0000${r.priority}`;
    let d = detections.get(k);
    if (!d) detections.set(k, (d = { detector: r.detector, rule: r.rule, priority: r.priority, key: r.key, count: 0, emitted: 0, hours: new Set(), evidence: [], evidenceKeys: new Set(), example: null }));
    d.count += r.count;
    if (r.outcome === 'emitted') d.emitted += r.count;
    d.hours.add(r.bucket);
    d.example ??= exampleText(r.example);
    let ev: EvidenceTuple[] = [];
    try {
      ev = JSON.parse(r.evidence ?? '[]') as EvidenceTuple[];
    } catch {
      ev = [];
    }
    for (const [rule, kind, dk, ip] of ev) {
      const dims = parseDimsKey(dk);
      const ek = `${rule}\u0000${kind}\u0000${dk}`;
      if (dims === null || d.evidenceKeys.has(ek)) continue;
      d.evidenceKeys.add(ek);
      d.evidence.push({ rule, kind, dims, ip });
    }
  }
  const protectedDets = [...detections.values()].filter((d) => atLeast(parsePriority(d.priority) ?? 'Warning', 'Warning') && !isBenign(d));
  const noiseDets = [...detections.values()].filter((d) => !protectedDets.includes(d));

  const notProposed: NotProposed[] = [];
  const benignHint = (d: Detection): string => `if it is benign, re-run with --benign '${d.key}'`;
  const hiddenText = (d: Detection): string => `would hide detection "${d.rule}" (${d.priority}, key ${d.key}, ${d.count}x)`;

  // ---- allow entries, per detector ----------------------------------------------------------
  const allow: AllowProposal[] = [];
  const names = new Set<string>();
  const detectorsWithNoise = [...new Set(noiseDets.map((d) => d.detector))].sort();
  for (const detector of detectorsWithNoise) {
    const units = [...(byDetector.get(detector)?.values() ?? [])];
    const mine = noiseDets.filter((d) => d.detector === detector && d.evidence.length > 0);
    const guarded = protectedDets.filter((d) => d.detector === detector);
    if (unchecked.has(detector)) {
      for (const d of mine) notProposed.push({ what: `detection "${d.rule}" (${d.priority}, key ${d.key})`, reason: `detections of ${detector} at Warning or above overflowed the statistics: a proposal could not be checked against them`, hint: null });
      continue;
    }
    let remaining = [...mine];
    const reasons = new Map<Detection, string>();
    const evaluate = (level: Level, members: readonly Detection[]): { c: Candidate; covered: Detection[]; hides: Detection[]; signals: number; hours: Set<number>; example: string | null } => {
      const first = members[0]?.evidence[0]?.dims as StatDims;
      const kinds = [...new Set(members.flatMap((d) => d.evidence.map((e) => e.kind)))].sort();
      const base = `tune-${detector.replace(/_/g, '-')}-${slug(first.image ?? first.exe ?? first.namespace ?? 'workload')}`;
      let name = base;
      for (let i = 2; names.has(name); i++) name = `${base}-${i}`;
      const yaml: AllowYaml = { name, detectors: [detector], kinds, ...level.fields(first) };
      const c: Candidate = { yaml, entry: toAllowEntry(yaml), level: level.name };
      const covered = mine.filter((d) => d.evidence.every((e) => allowHits(c, detector, e.kind, e.dims, e.ip, false)));
      const hides = guarded.filter((d) => d.evidence.some((e) => allowHits(c, detector, e.kind, e.dims, e.ip, true)));
      let signals = 0;
      const hours = new Set<number>();
      let example: string | null = null;
      let best = -1;
      for (const u of units) {
        if (!allowHits(c, detector, u.kind, u.dims, u.ip, false)) continue;
        signals += u.count;
        for (const h of u.hours) hours.add(h);
        if (u.count > best) {
          best = u.count;
          example = exampleText(u.example);
        }
      }
      return { c, covered, hides, signals, hours, example };
    };
    const qualifies = (e: { covered: Detection[]; signals: number; hours: Set<number> }): boolean => e.covered.length > 0 && e.signals >= input.minSignals && e.hours.size >= input.minHours;
    /** The level's key shared by all evidence of a detection (null: the evidence differs there). */
    const keyOf = (level: Level, d: Detection): string | null => {
      let k: string | null = null;
      for (const e of d.evidence) {
        const x = level.key(e.dims);
        if (x === null || (k !== null && x !== k)) return null;
        k = x;
      }
      return k;
    };
    for (const level of LEVELS) {
      const groups = new Map<string, Detection[]>();
      for (const d of remaining) {
        const k = keyOf(level, d);
        if (k === null) continue;
        let g = groups.get(k);
        if (!g) groups.set(k, (g = []));
        g.push(d);
      }
      const parentName = PARENT[level.name];
      const parent = parentName ? LEVELS.find((l) => l.name === parentName) : undefined;
      // Children per parent key (how many entries this level would split one workload into).
      const split = new Map<string, number>();
      if (parent) for (const members of groups.values()) for (const pk of new Set(members.map((d) => keyOf(parent, d)))) if (pk !== null) split.set(pk, (split.get(pk) ?? 0) + 1);
      for (const members of groups.values()) {
        if (!members.some((d) => remaining.includes(d))) continue;
        const pk = parent ? keyOf(parent, members[0] as Detection) : null;
        if (parent && pk !== null && (split.get(pk) ?? 0) > MAX_SPLIT) {
          const pm = remaining.filter((d) => keyOf(parent, d) === pk);
          const pe = evaluate(parent, pm);
          if (pe.hides.length === 0 && qualifies(pe)) continue; // the broader entry covers this workload in one
        }
        const e = evaluate(level, members);
        if (e.hides.length > 0) {
          for (const d of members) if (!reasons.has(d)) reasons.set(d, `${level.name} entry ${dimsText(members[0]?.evidence[0]?.dims as StatDims)} ${hiddenText(e.hides[0] as Detection)}${e.hides.length > 1 ? ` and ${e.hides.length - 1} more` : ''}`);
          continue;
        }
        if (!qualifies(e)) {
          for (const d of members)
            if (!reasons.has(d)) reasons.set(d, `${e.signals} signal(s) over ${e.hours.size} hour(s) at ${level.name} (need at least ${input.minSignals} over at least ${input.minHours} hours: a burst is not a baseline)`);
          continue;
        }
        names.add(e.c.yaml.name);
        allow.push({ entry: e.c.yaml, level: level.name, signals: e.signals, hours: e.hours.size, detections: e.covered.map(ref), example: e.example });
        remaining = remaining.filter((d) => !e.covered.includes(d));
      }
    }
    for (const d of remaining) {
      const reason = reasons.get(d) ?? 'its evidence shares no image, executable path or namespace an entry could select on';
      const hides = reason.includes('would hide detection') ? protectedDets.find((p) => reason.includes(`key ${p.key}`)) : undefined;
      notProposed.push({ what: `detection "${d.rule}" (${d.priority}, key ${d.key}, ${d.count}x)`, reason, hint: hides ? benignHint(hides) : null });
    }
  }
  for (const d of mineWithoutEvidence(noiseDets)) notProposed.push({ what: `detection "${d.rule}" (${d.priority}, key ${d.key})`, reason: 'no evidence kept for it', hint: null });

  // ---- Falco exceptions, per rule of our pack ----------------------------------------------
  const falco: FalcoProposal[] = [];
  for (const [rule, units] of [...falcoUnits].sort(([a], [b]) => a.localeCompare(b))) {
    const declared = input.falcoRules.get(rule);
    if (!declared) continue;
    const guardedEvidence = protectedDets.flatMap((d) => d.evidence.filter((e) => e.rule === rule).map((e) => ({ d, e })));
    const noiseEvidence = noiseDets.flatMap((d) => d.evidence.filter((e) => e.rule === rule).map((e) => ({ d, e })));
    const usable = declared.filter((x) => x.fields.every((f) => f in FIELD_SPECIFICITY)).sort((a, b) => spec(b) - spec(a));
    let pool = [...units.values()].filter((u) => u.count >= 1);
    const busy = (u: Unit): boolean => u.count >= input.minSignals && u.hours.size >= input.minHours;
    const reported = new Set<Unit>();
    for (const ex of usable) {
      // Rows: the pool grouped by the exception's values.
      const rows = new Map<string, { values: (string | number)[]; units: Unit[] }>();
      for (const u of pool) {
        const vals = ex.fields.map((f) => falcoValue(f, u.kind, u));
        if (vals.some((v) => v === null || v === undefined)) continue;
        const values = vals as (string | number)[];
        if (!values.every(falcoValueWritable)) continue;
        const k = JSON.stringify(values);
        let row = rows.get(k);
        if (!row) rows.set(k, (row = { values, units: [] }));
        row.units.push(u);
      }
      const accepted: FalcoRow[] = [];
      const perWorkload = new Map<string, number>();
      const candidates: { values: (string | number)[]; units: Unit[]; signals: number; hours: Set<number> }[] = [];
      for (const row of rows.values()) {
        const signals = row.units.reduce((s, u) => s + u.count, 0);
        const hours = new Set(row.units.flatMap((u) => [...u.hours]));
        if (signals < input.minSignals || hours.size < input.minHours) continue;
        const hides = guardedEvidence.filter((g) => falcoMatches(ex, row.values, g.e, true));
        if (hides.length > 0) {
          for (const u of row.units) {
            if (reported.has(u) || !busy(u)) continue;
            reported.add(u);
            const d = hides[0]?.d as Detection;
            const own = hides.some((g) => g.e.kind === u.kind && sameTuple(g.e.dims, u.dims));
            notProposed.push({ what: `Falco exception ${ex.name} [${row.values.join(', ')}] for "${rule}" (${u.count} signals)`, reason: hiddenText(d), hint: benignHint(d), ...(own ? { own } : {}) });
          }
          continue;
        }
        candidates.push({ ...row, signals, hours });
        const w = String(row.values[0]);
        perWorkload.set(w, (perWorkload.get(w) ?? 0) + 1);
      }
      for (const c of candidates) {
        if ((perWorkload.get(String(c.values[0])) ?? 0) > MAX_FALCO_ROWS && ex !== usable[usable.length - 1]) continue; // too fragmented: a broader exception
        const dets = new Set(noiseEvidence.filter((g) => falcoMatches(ex, c.values, g.e, false)).map((g) => g.d));
        const top = [...c.units].sort((a, b) => b.count - a.count)[0];
        accepted.push({ values: c.values, signals: c.signals, hours: c.hours.size, detections: [...dets].reduce((s, d) => s + d.count, 0), example: exampleText(top?.example ?? null) });
        pool = pool.filter((u) => !c.units.includes(u));
      }
      if (accepted.length > 0) falco.push({ rule, exception: ex.name, fields: ex.fields, rows: accepted.sort((a, b) => b.signals - a.signals) });
    }
    for (const u of pool) {
      if (!busy(u) || reported.has(u)) continue;
      notProposed.push({ what: `signals of "${rule}" from ${dimsText(u.dims, u.ip)} (${u.count} over ${u.hours.size} hours)`, reason: `none of the rule's exceptions (${declared.map((x) => x.name).join(', ')}) can select them with the facts kept`, hint: null });
    }
  }

  return {
    totals: { signals: signalTotal, detections: detectionTotal, dropped: input.dropped, overflowSignals, overflowDetections, hours: allHours.size },
    allow,
    falco,
    protectedDetections: protectedDets.map(ref).sort((a, b) => b.count - a.count),
    notProposed,
    unchecked: [...unchecked].sort(),
  };
}

function spec(x: FalcoException): number {
  return x.fields.reduce((s, f) => s + (FIELD_SPECIFICITY[f] ?? 0), 0);
}

function mineWithoutEvidence(ds: readonly Detection[]): Detection[] {
  return ds.filter((d) => d.evidence.length === 0);
}
