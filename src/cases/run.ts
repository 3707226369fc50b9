/**
 * Running a detection test case offline: the recorded Falco alerts, with the case's enrichment,
 * through the real detection engine (the shipped detectors, the built-in or the case's rules file
 * with its settings merged in), then the detections held to the case's expectations. The same
 * code serves `falco-companion test`, the project's own test suite and the report screenshots.
 *
 * No runtime, network or clock is involved: windows run on the alerts' event times.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parse as yamlParse, stringify as yamlStringify } from 'yaml';
import { alertFromJson, atLeast, parsePriority, withEnrichment, type Alert, type EnrichValue, type Priority } from '../alert.js';
import { ManualClock } from '../clock.js';
import { DetectionEngine } from '../detect/engine.js';
import { defaultRulesPath, loadRulesFile } from '../detect/rules/load.js';
import type { LoadedRules } from '../detect/rules/types.js';
import type { Finding } from '../detect/types.js';
import { ConfigError, errorMessage } from '../errors.js';
import { matchFinding, type Seen } from '../journal/journal.js';
import { buildRecord } from '../journal/record.js';
import { tapDetector } from '../journal/tap.js';
import type { DetectionRecord } from '../journal/types.js';
import { parse } from '../json/lossless.js';
import { DEFAULT_FAIR_SHARE } from '../limits.js';
import type { DetectStage } from '../pipeline/types.js';
import { silentLogger } from '../logger.js';
import { Metrics } from '../metrics.js';
import { AlertIdGenerator } from '../store/alert-id.js';
import { caseDetectors } from './cluster-env.js';
import { FactsEnricher } from './facts.js';
import { caseName, loadCase, type TestCase } from './load.js';
import type { ExpectedDetection } from './spec.js';

export interface Detected {
  readonly rule: string;
  readonly priority: Priority;
  readonly detector: string | null;
  readonly score: number | null;
  readonly mitre: readonly string[];
  readonly time: string;
  readonly output: string;
  /** How long after its own event time it was emitted, in event time (ms): the alert that completed it minus the detection. */
  readonly lagMs: number;
  /** The detection alert as it would be forwarded. */
  readonly alert: Alert;
}

export type CaseStatus = 'pass' | 'fail' | 'error';

export interface CaseResult {
  readonly name: string;
  readonly file: string;
  readonly description: string | null;
  readonly status: CaseStatus;
  readonly durationMs: number;
  /** Alerts read from the stream (non-JSON lines skipped). */
  readonly alerts: number;
  readonly detections: readonly Detected[];
  /** Why it failed: one line per unmet expectation or unexpected detection. */
  readonly failures: readonly string[];
  /** Why it could not run (file:line:col problems). */
  readonly errors: readonly string[];
  /** Journal records of the detections (with `records: true`). */
  readonly records: readonly DetectionRecord[];
}

export interface RunOptions {
  /** Build journal records of the detections (for reports). */
  readonly records?: boolean;
  /** Journal evidence bound per record. */
  readonly maxEvidence?: number;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Mappings merge key by key; anything else (lists included) replaces. */
export function mergeSettings(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over;
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? mergeSettings(base[k], v) : v;
  return out;
}

/** The case's rules: its rules file (or the built-in one) with `settings` merged over it. */
export function caseRules(c: TestCase): LoadedRules {
  if (c.settings === null) return loadRulesFile(c.rulesFile);
  const file = c.rulesFile ?? defaultRulesPath();
  let base: unknown;
  try {
    base = yamlParse(readFileSync(file, 'utf8')) ?? {};
  } catch (err) {
    throw new ConfigError([`${file}: ${errorMessage(err)}`]);
  }
  return loadRulesFile(`${c.file}: settings merged over ${file}`, { text: yamlStringify(mergeSettings(base, c.settings)) });
}

/** `enrichment.json`: 1-based line number → companion keys. */
function loadEnrichment(file: string | null): Map<number, Readonly<Record<string, EnrichValue>>> {
  const out = new Map<number, Readonly<Record<string, EnrichValue>>>();
  if (file === null) return out;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError([`${file}: ${errorMessage(err)}`]);
  }
  if (!isObject(raw)) throw new ConfigError([`${file}: must be a JSON object from line number to companion keys`]);
  const problems: string[] = [];
  for (const [line, keys] of Object.entries(raw)) {
    if (!/^[1-9]\d*$/.test(line)) problems.push(`${file}: "${line}": keys must be 1-based line numbers`);
    else if (!isObject(keys) || Object.values(keys).some((v) => v !== null && typeof v === 'object')) problems.push(`${file}: "${line}": must be an object of string, number, boolean or null values`);
    else out.set(Number(line), keys as Record<string, EnrichValue>);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

function describeExpected(e: ExpectedDetection): string {
  const parts: string[] = [];
  if (e.detector !== null) parts.push(`detector=${e.detector}`);
  if (e.rule !== null) parts.push(`rule=${JSON.stringify(e.rule)}`);
  if (e.mitre !== null) parts.push(`mitre=${e.mitre.join(',')}`);
  if (e.min_priority !== null) parts.push(`min_priority=${e.min_priority}`);
  if (e.min_score !== null) parts.push(`min_score=${e.min_score}`);
  parts.push(e.count === null ? 'count≥1' : `count=${e.count}`);
  return parts.join(' ');
}

export function describeDetected(d: Detected): string {
  return `${d.priority} ${JSON.stringify(d.rule)} detector=${d.detector ?? '?'} score=${d.score ?? '?'}${d.mitre.length > 0 ? ` mitre=${d.mitre.join(',')}` : ''} at ${d.time}`;
}

function selects(e: ExpectedDetection, d: Detected): boolean {
  if (e.detector !== null && e.detector !== d.detector) return false;
  if (e.rule !== null && e.rule !== d.rule) return false;
  if (e.mitre !== null && !e.mitre.every((m) => d.mitre.includes(m))) return false;
  return true;
}

/** Hold detections to the expectations: each detection goes to the first entry that selects it. Returns the differences. */
export function evaluate(c: TestCase, got: readonly Detected[]): string[] {
  const entries = c.expect.detections;
  const assigned = entries.map(() => [] as Detected[]);
  const others: Detected[] = [];
  for (const d of got) {
    const i = entries.findIndex((e) => selects(e, d));
    if (i < 0) others.push(d);
    else (assigned[i] as Detected[]).push(d);
  }
  const out: string[] = [];
  entries.forEach((e, i) => {
    const hits = assigned[i] as Detected[];
    const what = `expect.detections[${i}] (${describeExpected(e)})`;
    if (e.count !== null && hits.length !== e.count) out.push(`${what}:\n    - expected ${e.count} detection(s)\n    + got ${hits.length}${hits.map((h) => `\n      ${describeDetected(h)}`).join('')}`);
    if (e.count === null && hits.length === 0) out.push(`${what}:\n    - expected at least one detection\n    + got none`);
    const min = e.min_priority !== null ? parsePriority(e.min_priority) : null;
    for (const h of hits) {
      if (min !== null && !atLeast(h.priority, min)) out.push(`${what}:\n    - expected priority ${min} or higher\n    + got ${describeDetected(h)}`);
      if (e.min_score !== null && (h.score === null || h.score < e.min_score)) out.push(`${what}:\n    - expected score ≥ ${e.min_score}\n    + got ${describeDetected(h)}`);
    }
  });
  const policy = c.expect.other_detections;
  const bar = policy === 'fail' || policy === 'ignore' ? null : parsePriority(policy);
  for (const d of others) {
    if (policy === 'ignore') continue;
    if (bar !== null && !atLeast(d.priority, bar)) continue;
    out.push(`unexpected detection${bar !== null ? ` at ${bar} or higher` : ''}:\n    + ${describeDetected(d)}`);
  }
  return out;
}

function detected(a: Alert, atNs: bigint): Detected {
  const c = a.companion;
  const mitre = typeof c['mitre'] === 'string' && c['mitre'] !== '' ? c['mitre'].split(',') : (a.tags ?? []).filter((t) => /^T\d/.test(t));
  return {
    rule: a.rule,
    priority: a.priority,
    detector: typeof c['detector'] === 'string' ? c['detector'] : null,
    score: typeof c['score'] === 'number' ? c['score'] : null,
    mitre,
    time: a.time,
    output: a.output,
    lagMs: Number(atNs - a.timeNs) / 1e6,
    alert: a,
  };
}

/** Run one loaded case. Throws ConfigError for an unreadable stream or enrichment. */
export function runLoadedCase(c: TestCase, opts: RunOptions = {}): Omit<CaseResult, 'durationMs'> {
  const rules = caseRules(c);
  const enrichment = loadEnrichment(c.enrichmentFile);
  const detectorsOf = caseDetectors(rules, c);
  let text: string;
  try {
    // Long recordings may be gzipped (alerts.jsonl.gz).
    text = c.alertsFile.endsWith('.gz') ? gunzipSync(readFileSync(c.alertsFile)).toString('utf8') : readFileSync(c.alertsFile, 'utf8');
  } catch (err) {
    throw new ConfigError([`${c.alertsFile}: cannot read: ${errorMessage(err)}`]);
  }
  const metrics = new Metrics({ collectDefault: false });
  const clock = new ManualClock(0);
  const found: Seen[] = [];
  const detectors = detectorsOf.map((d) => tapDetector(d, (f: Finding) => found.push({ finding: f, emitted: null, incident: null, tapped: true })));
  // The fair share of `run` with the default limits, so a case judges what production would do.
  const engine = new DetectionEngine({ rules, detectors, logger: silentLogger(), metrics, clock, fairShare: DEFAULT_FAIR_SHARE });
  const facts = new FactsEnricher(c.facts, { metrics, clock });
  const ids = new AlertIdGenerator(() => clock.now());
  const detections: Detected[] = [];
  const records: DetectionRecord[] = [];
  let nowNs = 0n;
  const take = (list: readonly Alert[]): void => {
    const used = new Set<Seen>();
    for (const d of list) {
      const withId = ids.ensure(d);
      detections.push(detected(withId, nowNs));
      if (opts.records) {
        const s = matchFinding(found, used, d);
        if (s) used.add(s);
        const incident = typeof d.companion['incident'] === 'string' ? d.companion['incident'] : null;
        records.push(buildRecord({ alert: withId, finding: s?.finding ?? null, incident, recordedAtMs: clock.now(), maxEvidence: opts.maxEvidence ?? 200 }));
      }
    }
    found.length = 0;
  };
  const lines = text.split('\n');
  let alerts = 0;
  const problems: string[] = [];
  try {
    lines.forEach((line, i) => {
      const t = line.trim();
      if (!t.startsWith('{')) return; // blank lines and Falco's own log lines
      let a: Alert;
      try {
        a = alertFromJson(parse(t), { kind: 'replay', component: 'test' }, 0);
      } catch (err) {
        problems.push(`${c.alertsFile}:${i + 1}: ${errorMessage(err)}`);
        return;
      }
      alerts++;
      clock.set(Number(a.timeNs / 1_000_000n));
      if (a.timeNs > nowNs) nowNs = a.timeNs;
      if (facts.active) a = facts.enrich(a);
      const add = enrichment.get(i + 1);
      if (add) a = withEnrichment(a, add);
      a = ids.ensure(a);
      take(engine.process(a).detections);
    });
    // Through the stage interface: an engine without end-of-input summaries has no flush.
    const stage: DetectStage = engine;
    if (c.flush && stage.flush) take(stage.flush());
  } finally {
    facts.close();
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const failures = evaluate(c, detections);
  return { name: c.name, file: c.file, description: c.description, status: failures.length === 0 ? 'pass' : 'fail', alerts, detections, failures, errors: [], records };
}

/** Load and run a case file or folder; problems become an `error` result, never a throw. */
export function runCase(path: string, opts: RunOptions = {}): CaseResult {
  const t0 = performance.now();
  const ms = (): number => Math.round((performance.now() - t0) * 10) / 10;
  let c: TestCase | null = null;
  try {
    c = loadCase(path);
    return { ...runLoadedCase(c, opts), durationMs: ms() };
  } catch (err) {
    const errors = err instanceof ConfigError ? err.problems : [`${path}: ${errorMessage(err)}`];
    return { name: c?.name ?? caseName(path), file: c?.file ?? path, description: c?.description ?? null, status: 'error', durationMs: ms(), alerts: 0, detections: [], failures: [], errors, records: [] };
  }
}

