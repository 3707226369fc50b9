/**
 * Finding and loading detection test cases: YAML case files (src/cases/spec.ts) and the older
 * scenario folder layout (`alerts.jsonl`, `enrichment.json`, `expected.json`), which is read as a
 * case too (and converted by {@link convertLegacy}). Problems are ConfigErrors with file:line:col.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { stringify as yamlStringify } from 'yaml';
import { checkSpec, formatProblems, parseYaml, type Problem } from '../config/validate.js';
import { ConfigError, errorMessage } from '../errors.js';
import { parsePriority } from '../alert.js';
import { caseSpec, type Expectation, type Facts } from './spec.js';

export interface TestCase {
  readonly name: string;
  /** The case file (a legacy folder: its expected.json). */
  readonly file: string;
  readonly format: 'yaml' | 'legacy';
  readonly description: string | null;
  readonly alertsFile: string;
  readonly enrichmentFile: string | null;
  readonly facts: Facts;
  readonly rulesFile: string | null;
  /** The raw `settings` mapping (merged over the rules file); null when absent. */
  readonly settings: Readonly<Record<string, unknown>> | null;
  readonly flush: boolean;
  /** The node's cluster facts for the detectors (`cluster.json`: detect.cluster config, pod environment, interfaces). */
  readonly clusterFile: string | null;
  readonly expect: Expectation;
}

const NO_FACTS: Facts = { containers: [], destinations: [], baseline: null };
const CASE_FILE = /(^|\.)case\.ya?ml$/;
export const LEGACY_EXPECTED = 'expected.json';

interface CaseInput {
  name: string | null;
  description: string | null;
  alerts: string;
  enrichment: string | null;
  facts: Facts;
  rules_file: string | null;
  cluster: string | null;
  flush: boolean;
  expect: Expectation;
}

/** A case's default name: its folder's for `case.yaml` (and a folder), else the file's without `.case.yaml` / `.yaml`. */
export function caseName(path: string): string {
  const base = basename(path).replace(/\.ya?ml$/, '');
  if (base === 'case' || base === LEGACY_EXPECTED.replace(/\.json$/, '')) return basename(dirname(path));
  return base.replace(/\.case$/, '');
}

/** Load a YAML case file; throws ConfigError listing every problem. */
export function loadYamlCase(file: string, text?: string): TestCase {
  let src: string;
  try {
    src = text ?? readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read: ${errorMessage(err)}`]);
  }
  const y = parseYaml(file, src);
  if (y.broken) throw new ConfigError(formatProblems(y.problems));
  const problems: Problem[] = [...y.problems];
  const v = checkSpec(file, y.lc, problems, caseSpec(), y.raw ?? {}, y.root) as CaseInput | undefined;
  if (problems.length > 0 || !v) throw new ConfigError(formatProblems(problems));
  const dir = dirname(file);
  const rawSettings = (y.raw as Record<string, unknown>)['settings'];
  return {
    name: v.name ?? caseName(file),
    file,
    format: 'yaml',
    description: v.description,
    alertsFile: resolve(dir, v.alerts),
    enrichmentFile: v.enrichment === null ? null : resolve(dir, v.enrichment),
    facts: v.facts,
    rulesFile: v.rules_file === null ? null : resolve(dir, v.rules_file),
    settings: rawSettings !== null && typeof rawSettings === 'object' && !Array.isArray(rawSettings) ? (rawSettings as Record<string, unknown>) : null,
    flush: v.flush,
    clusterFile: v.cluster === null ? null : resolve(dir, v.cluster),
    expect: v.expect,
  };
}

interface LegacyExpected {
  description?: unknown;
  detections?: unknown;
  /** Detections below this priority are tolerated (benign recordings). */
  tolerate_below?: unknown;
}

/** The stream of a folder in the older layout: alerts.jsonl, or alerts.jsonl.gz for long ones. */
function legacyAlerts(dir: string): string | null {
  for (const f of ['alerts.jsonl', 'alerts.jsonl.gz']) if (existsSync(join(dir, f))) return join(dir, f);
  return null;
}

/** A scenario folder in the older layout (expected.json: {description, detections: [{rule, min_priority, count}]}). */
export function loadLegacyCase(dir: string): TestCase {
  const file = join(dir, LEGACY_EXPECTED);
  let raw: LegacyExpected;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as LegacyExpected;
  } catch (err) {
    throw new ConfigError([`${file}: ${errorMessage(err)}`]);
  }
  const problems: string[] = [];
  const dets = Array.isArray(raw.detections) ? (raw.detections as unknown[]) : (problems.push(`${file}: detections: must be a list`), []);
  const detections = dets.map((d, i) => {
    const o = (d ?? {}) as Record<string, unknown>;
    const rule = typeof o['rule'] === 'string' ? o['rule'] : (problems.push(`${file}: detections[${i}].rule: must be a string`), '');
    const min = typeof o['min_priority'] === 'string' ? o['min_priority'] : null;
    if (min !== null && !parsePriority(min)) problems.push(`${file}: detections[${i}].min_priority: not a Falco priority`);
    const count = typeof o['count'] === 'number' && Number.isInteger(o['count']) ? o['count'] : null;
    return { detector: null, rule, mitre: null, min_priority: min, min_score: null, count };
  });
  const alertsFile = legacyAlerts(dir);
  if (alertsFile === null) problems.push(`${join(dir, 'alerts.jsonl')}: missing`);
  const tolerate = raw.tolerate_below;
  if (tolerate !== undefined && (typeof tolerate !== 'string' || !parsePriority(tolerate))) problems.push(`${file}: tolerate_below: not a Falco priority`);
  if (problems.length > 0 || alertsFile === null) throw new ConfigError(problems);
  const enrichmentFile = join(dir, 'enrichment.json');
  const clusterFile = join(dir, 'cluster.json');
  return {
    name: basename(dir),
    file,
    format: 'legacy',
    description: typeof raw.description === 'string' ? raw.description : null,
    alertsFile,
    enrichmentFile: existsSync(enrichmentFile) ? enrichmentFile : null,
    facts: NO_FACTS,
    rulesFile: null,
    settings: null,
    flush: false,
    clusterFile: existsSync(clusterFile) ? clusterFile : null,
    expect: { detections, other_detections: typeof tolerate === 'string' ? tolerate : 'fail' },
  };
}

/** A case file or legacy folder path → its case. */
export function loadCase(path: string): TestCase {
  if (existsSync(path) && statSync(path).isDirectory()) {
    if (existsSync(join(path, LEGACY_EXPECTED))) return loadLegacyCase(path);
    for (const f of ['case.yaml', 'case.yml']) if (existsSync(join(path, f))) return loadYamlCase(join(path, f));
    throw new ConfigError([`${path}: no case.yaml or expected.json in this folder`]);
  }
  return loadYamlCase(path);
}

const MAX_DEPTH = 8;

/**
 * The cases under each path: a file is a case; a folder is searched (depth ≤ 8) for `case.yaml`,
 * `*.case.yaml` and folders in the older layout (with expected.json). Sorted per argument.
 */
export function findCases(paths: readonly string[]): { cases: string[]; problems: string[] } {
  const cases: string[] = [];
  const problems: string[] = [];
  const walk = (dir: string, depth: number, out: string[]): void => {
    if (existsSync(join(dir, LEGACY_EXPECTED)) && !readdirSync(dir).some((f) => CASE_FILE.test(f))) {
      out.push(dir);
      return;
    }
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && depth < MAX_DEPTH && e.name !== 'node_modules' && !e.name.startsWith('.')) walk(p, depth + 1, out);
      else if (e.isFile() && CASE_FILE.test(e.name)) out.push(p);
    }
  };
  for (const p of paths) {
    if (!existsSync(p)) {
      problems.push(`${p}: no such file or directory`);
      continue;
    }
    if (!statSync(p).isDirectory()) {
      cases.push(p);
      continue;
    }
    const found: string[] = [];
    walk(p, 0, found);
    if (found.length === 0) problems.push(`${p}: no test case (case.yaml, *.case.yaml, or a folder with expected.json)`);
    cases.push(...found.sort());
  }
  return { cases, problems };
}

/** The YAML case text for a legacy folder (files referenced by name, next to it). */
export function legacyCaseYaml(c: TestCase, withEnrichment: boolean): string {
  const expect: Record<string, unknown> = {
    detections: c.expect.detections.map((d) => ({ rule: d.rule, ...(d.min_priority ? { min_priority: d.min_priority } : {}), ...(d.count !== null ? { count: d.count } : {}) })),
    other_detections: c.expect.other_detections,
  };
  const doc: Record<string, unknown> = {
    name: c.name,
    ...(c.description ? { description: c.description } : {}),
    alerts: basename(c.alertsFile),
    ...(withEnrichment ? { enrichment: 'enrichment.json' } : {}),
    ...(c.clusterFile !== null ? { cluster: 'cluster.json' } : {}),
    expect,
  };
  return `# Detection test case (falco-companion test; format: docs/testing-detections.md)\n${yamlStringify(doc, { lineWidth: 0 })}`;
}

/**
 * Convert a scenario folder in the older layout into a case folder under `outDir` (same name):
 * `case.yaml`, `alerts.jsonl`, and `enrichment.json` when it has keys. Returns the case file.
 * An existing case folder is left alone unless `force`.
 */
export function convertLegacy(dir: string, outDir: string, force = false): string | null {
  const c = loadLegacyCase(dir);
  const dest = join(outDir, c.name);
  const file = join(dest, 'case.yaml');
  if (existsSync(file) && !force) return null;
  mkdirSync(dest, { recursive: true });
  copyFileSync(c.alertsFile, join(dest, basename(c.alertsFile)));
  if (c.clusterFile !== null) copyFileSync(c.clusterFile, join(dest, 'cluster.json'));
  const hasKeys = c.enrichmentFile !== null && Object.keys(JSON.parse(readFileSync(c.enrichmentFile, 'utf8')) as object).length > 0;
  if (hasKeys && c.enrichmentFile !== null) copyFileSync(c.enrichmentFile, join(dest, 'enrichment.json'));
  writeFileSync(file, legacyCaseYaml(c, hasKeys));
  return file;
}
