/**
 * `falco-companion tune [--since 24h] [--out FILE] [--config FILE] [--state-dir DIR]`: read the
 * signal statistics the companion kept in the state directory and print (or write) a proposal as
 * commented YAML, two documents:
 *
 *   1. a companion rules file (`extends: builtin` + `suppress.allow` entries): loadable as it is,
 *      or copy the entries into your own rules file;
 *   2. a Falco rules file appending values to the `exceptions:` our rules pack declares (load it
 *      after falco-companion_rules.yaml).
 *
 * Each proposal says what it would have suppressed, with an example. Nothing is applied. The
 * reasoning is src/detect/stats-tune.ts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { atLeast, formatTimeNs, parsePriority } from '../alert.js';
import { parseDuration } from '../config/dsl.js';
import { errorMessage } from '../errors.js';
import { defaultRulesPath } from '../detect/rules/load.js';
import { defaultFalcoRulesPath, loadFalcoExceptions, propose, type AllowYaml, type DetectionRef, type FalcoException, type TuneResult } from '../detect/stats-tune.js';
import { STATE_DB_FILE } from '../store/db.js';
import { HOUR_MS, hasSignalStats, newestStatsBucket, readFindingStats, readSignalStats, readStatsDrops } from '../store/signal-stats.js';
import { dieWith, existingStateDb, offlineConfig, out } from './offline.js';

interface TuneFlags {
  config?: string;
  'state-dir'?: string;
  since?: string;
  out?: string;
  'min-signals'?: number;
  'min-hours'?: number;
  benign?: string[];
  'falco-rules'?: string;
  json?: boolean;
}

const die: (msg: string, code?: number) => never = dieWith('tune');

export interface TuneMeta {
  readonly database: string;
  readonly rulesFile: string;
  readonly falcoRules: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly minSignals: number;
  readonly minHours: number;
  readonly benign: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// YAML text

const YAML_SPECIAL = /^(?:[-?:,[\]{}#&*!|>'"%@`~]|true$|false$|null$|yes$|no$|on$|off$|[-+]?(?:\d[\d_]*)?(?:\.\d*)?(?:e[-+]?\d+)?$|0x|0o)/i;

/** A scalar as YAML: plain when unambiguous, else double-quoted (JSON strings are YAML). */
export function yamlScalar(v: string | number): string {
  if (typeof v === 'number') return String(v);
  return v !== '' && /^[A-Za-z0-9_./:@+*-]+$/.test(v) && !YAML_SPECIAL.test(v) && !v.includes(': ') ? v : JSON.stringify(v);
}

const flow = (xs: readonly (string | number)[]): string => `[${xs.map(yamlScalar).join(', ')}]`;
const comment = (s: string, indent = ''): string =>
  s
    .split('\n')
    .map((l) => `${indent}#${l ? ` ${l}` : ''}`)
    .join('\n');
const iso = (ms: number): string => formatTimeNs(BigInt(ms) * 1_000_000n).replace(/:\d\d\.\d+Z$/, 'Z');

/** `24x` when every finding was sent, `24x (3 sent)` when the notify policy folded some. */
function findings(count: number, emitted: number): string {
  return emitted === count ? `${count}x` : `${count}x (${emitted} sent)`;
}

function detectionLine(d: DetectionRef, benign: boolean): string {
  return `"${d.rule}" (${d.priority}${benign ? ', marked benign' : ''}) ${findings(d.count, d.emitted)} over ${d.hours} hour(s), key ${d.key}`;
}

function allowYaml(e: AllowYaml): string[] {
  const lines = [`    - name: ${yamlScalar(e.name)}`, `      detectors: ${flow(e.detectors)}`, `      kinds: ${flow(e.kinds)}`];
  if (e.image) lines.push(`      image: ${flow(e.image)}`);
  if (e.namespace) lines.push(`      namespace: ${flow(e.namespace)}`);
  if (e.pod_labels) lines.push(`      pod_labels: {${Object.entries(e.pod_labels).map(([k, v]) => `${yamlScalar(k)}: ${yamlScalar(v)}`).join(', ')}}`);
  if (e.exe) lines.push(`      exe: ${flow(e.exe)}`);
  if (e.dest_cidr) lines.push(`      dest_cidr: ${flow(e.dest_cidr)}`);
  if (e.dest_domain) lines.push(`      dest_domain: ${flow(e.dest_domain)}`);
  return lines;
}

/**
 * Detections of one rule and priority whose keys share their first three `|` parts (a detector,
 * a workload, a program: one scraper's many targets) as one line with the glob that marks them.
 */
function groupDetections(ds: readonly DetectionRef[]): { glob: string; list: DetectionRef[] }[] {
  const groups = new Map<string, { glob: string; list: DetectionRef[] }>();
  for (const d of ds) {
    const parts = d.key.split('|');
    const glob = parts.length > 3 ? `${parts.slice(0, 3).join('|')}|*` : d.key;
    const k = `${d.rule}\u0000${d.priority}\u0000${glob}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { glob, list: [] }));
    g.list.push(d);
  }
  for (const g of groups.values()) if (g.list.length === 1) g.glob = (g.list[0] as DetectionRef).key;
  return [...groups.values()];
}

/** The proposal as commented YAML (two documents: companion rules file, Falco rules). */
export function renderTune(r: TuneResult, meta: TuneMeta, falcoRules: ReadonlyMap<string, readonly FalcoException[]>): string {
  const o: string[] = [];
  const t = r.totals;
  /** A covered detection at Warning or above can only be one the user marked benign. */
  const marked = (d: DetectionRef): boolean => atLeast(parsePriority(d.priority) ?? 'Warning', 'Warning');
  o.push(comment(`falco-companion tune: a proposal. Nothing has been applied; review every entry.`));
  o.push(comment(`statistics: ${meta.database}`));
  o.push(comment(`window: ${iso(meta.fromMs)} .. ${iso(meta.toMs)} (event time; ${t.hours} hour(s) with data)`));
  o.push(comment(`seen: ${t.signals} signal(s), ${t.detections} detection(s) (${r.protectedDetections.length} at Warning or above not marked benign)`));
  o.push(comment(`an entry needs at least ${meta.minSignals} signals over at least ${meta.minHours} distinct hours (--min-signals, --min-hours)`));
  if (meta.benign.length > 0) o.push(comment(`marked benign: ${meta.benign.join(', ')}`));
  if (t.dropped > 0) o.push(comment(`WARNING: ${t.dropped} observation(s) were dropped (statistics queue full): counts are short`));
  if (t.overflowSignals > 0) o.push(comment(`note: ${t.overflowSignals} signal(s) fell outside the kept top tuples (overflow): counted, but no proposal can select them`));
  for (const d of r.unchecked) o.push(comment(`WARNING: detections of ${d} at Warning or above overflowed the statistics: nothing proposed for ${d}`));
  o.push('');
  o.push(comment(`--- Part 1: companion rules file (in force: ${meta.rulesFile}) ---`));
  o.push(comment(`Copy the entries under suppress.allow of your rules file (detect.rules_file), or load this`));
  o.push(comment(`document as it is: it extends the built-in rules with the entries.`));
  o.push('version: 1');
  o.push('extends: builtin');
  o.push('suppress:');
  if (r.allow.length === 0) {
    o.push(comment('nothing to propose', '  '));
    o.push('  allow: []');
  } else {
    o.push('  allow:');
    for (const a of r.allow) {
      o.push(comment(`${a.level}: would have suppressed ${a.signals} signal(s) over ${a.hours} hour(s) and ${a.detections.reduce((s, d) => s + d.count, 0)} detection(s):`, '    '));
      for (const g of groupDetections(a.detections)) {
        const d = g.list[0] as DetectionRef;
        o.push(comment(`  ${g.list.length === 1 ? detectionLine(d, marked(d)) : `"${d.rule}" (${d.priority}${marked(d) ? ', marked benign' : ''}) ${g.list.length} keys ${g.glob}, ${findings(g.list.reduce((s, x) => s + x.count, 0), g.list.reduce((s, x) => s + x.emitted, 0))}`}`, '    '));
      }
      if (a.example) o.push(comment(`example: ${a.example}`, '    '));
      o.push(...allowYaml(a.entry));
    }
  }
  if (r.protectedDetections.length > 0) {
    o.push('');
    o.push(comment('Detections at Warning or above you have not marked benign: no proposal may hide them.'));
    o.push(comment("If one is benign, re-run with --benign '<key>' (a glob on the key or the rule name)."));
    const groups = groupDetections(r.protectedDetections);
    for (const g of groups.slice(0, 50)) {
      const d = g.list[0] as DetectionRef;
      const count = findings(
        g.list.reduce((s, x) => s + x.count, 0),
        g.list.reduce((s, x) => s + x.emitted, 0),
      );
      const hours = Math.max(...g.list.map((x) => x.hours));
      const head = g.list.length === 1 ? detectionLine(d, false) : `"${d.rule}" (${d.priority}) ${g.list.length} keys, ${count}, each over up to ${hours} hour(s): --benign '${g.glob}'`;
      o.push(comment(`  ${head}${d.example ? `\n    e.g. ${d.example}` : ''}`));
    }
    if (groups.length > 50) o.push(comment(`  ... and ${groups.length - 50} more (--json lists all)`));
  }
  const np = r.notProposed.filter((n) => !n.own);
  const own = r.notProposed.length - np.length;
  if (np.length > 0 || own > 0) {
    o.push('');
    o.push(comment('Not proposed:'));
    if (own > 0) o.push(comment(`  - ${own} Falco exception value(s) held back: their signals are the evidence of the detections listed above`));
    for (const n of np.slice(0, 100)) o.push(comment(`  - ${n.what}: ${n.reason}${n.hint ? `; ${n.hint}` : ''}`));
    if (np.length > 100) o.push(comment(`  ... and ${np.length - 100} more (--json lists all)`));
  }
  o.push('---');
  o.push(comment(`--- Part 2: Falco exceptions for our rules pack (${meta.falcoRules}) ---`));
  o.push(comment('Put this in a rules file Falco loads AFTER falco-companion_rules.yaml (e.g.'));
  o.push(comment('/etc/falco/falco_rules.local.yaml): it appends values to the exceptions each rule declares'));
  o.push(comment('(Falco 0.40 - 0.44). It cuts the signals at the source: the companion never sees them.'));
  if (r.falco.length === 0) {
    o.push(comment('nothing to propose'));
    o.push('[]');
  }
  const byRule = new Map<string, typeof r.falco>();
  for (const f of r.falco) byRule.set(f.rule, [...(byRule.get(f.rule) ?? []), f]);
  for (const [rule, list] of byRule) {
    o.push(`- rule: ${JSON.stringify(rule)}`);
    o.push('  exceptions:');
    for (const f of list) {
      const fields = falcoRules.get(rule)?.find((x) => x.name === f.exception)?.fields ?? f.fields;
      o.push(comment(`${f.exception}: ${fields.join(', ')}`, '    '));
      o.push(`    - name: ${yamlScalar(f.exception)}`);
      o.push('      values:');
      for (const row of f.rows) {
        o.push(comment(`${row.signals} signal(s) over ${row.hours} hour(s)${row.detections > 0 ? `, ${row.detections} detection(s) below Warning or benign` : ''}${row.example ? `; e.g. ${row.example}` : ''}`, '        '));
        o.push(`        - ${flow(row.values)}`);
      }
    }
    o.push('  override:');
    o.push('    exceptions: append');
  }
  return o.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// The command

export function runTune(f: TuneFlags): void {
  const config = offlineConfig(f, die);
  const sinceMs = parseDuration(f.since ?? '24h');
  if (sinceMs === null || sinceMs < HOUR_MS) die(`--since ${JSON.stringify(f.since)}: give a duration of at least 1h (e.g. 24h, 7d)`, 2);
  const minSignals = f['min-signals'] ?? 50;
  const minHours = f['min-hours'] ?? 3;
  if (!(Number.isInteger(minSignals) && minSignals >= 1) || !(Number.isInteger(minHours) && minHours >= 1)) die('--min-signals and --min-hours must be whole numbers of at least 1', 2);
  const falcoPath = f['falco-rules'] ?? defaultFalcoRulesPath();
  if (falcoPath === null) die('falco-rules/falco-companion_rules.yaml not found next to the installation: give --falco-rules FILE', 2);
  let falcoRules: Map<string, FalcoException[]>;
  try {
    falcoRules = loadFalcoExceptions(falcoPath);
  } catch (err) {
    die(`--falco-rules ${falcoPath}: ${errorMessage(err)}`, 2);
  }
  const db = existingStateDb(config.state_dir, die);
  try {
    const database = join(config.state_dir, STATE_DB_FILE);
    if (!hasSignalStats(db)) die(`no signal statistics in ${database}: the companion keeps them while it runs (detect.statistics.enabled)`);
    const newest = newestStatsBucket(db);
    if (newest === null) die(`no signal statistics in ${database} yet`);
    const from = newest - Math.ceil(sinceMs / HOUR_MS) + 1;
    const benign = (f.benign ?? []).map(String);
    const result = propose({
      signals: readSignalStats(db, from, newest),
      findings: readFindingStats(db, from, newest),
      dropped: readStatsDrops(db, from, newest),
      falcoRules,
      minSignals,
      minHours,
      benign,
    });
    const meta: TuneMeta = {
      database,
      rulesFile: config.detect.rules_file ?? `${defaultRulesPath()} (built-in defaults)`,
      falcoRules: falcoPath,
      fromMs: from * HOUR_MS,
      toMs: (newest + 1) * HOUR_MS,
      minSignals,
      minHours,
      benign,
    };
    const text = f.json ? JSON.stringify({ ...meta, from: iso(meta.fromMs), to: iso(meta.toMs), ...result }, null, 2) + '\n' : renderTune(result, meta, falcoRules);
    if (f.out) {
      writeFileSync(f.out, text);
      process.stderr.write(`falco-companion tune: ${result.allow.length} allow entr${result.allow.length === 1 ? 'y' : 'ies'}, ${result.falco.reduce((s, x) => s + x.rows.length, 0)} Falco exception value(s) proposed; written to ${f.out}\n`);
    } else out(text);
  } catch (err) {
    die(errorMessage(err));
  } finally {
    db.close();
  }
}

/** The `tune` command as a yargs command module. */
export const tuneCommand = {
  command: 'tune',
  describe: 'Propose allow entries and Falco exceptions from the signal statistics in the state directory (prints commented YAML; applies nothing)',
  builder: (c: Argv): Argv =>
    c.options({
      since: { type: 'string', default: '24h', describe: 'Event time to look back from the newest statistics (e.g. 24h, 7d)' },
      out: { type: 'string', describe: 'Write the proposal to FILE instead of stdout' },
      config: { type: 'string', describe: 'YAML config file: its state_dir and detect.rules_file are used (like run)' },
      'state-dir': { type: 'string', describe: 'State directory (overrides $FALCO_COMPANION_STATE_DIR and state_dir in --config)' },
      'min-signals': { type: 'number', default: 50, describe: 'Signals an entry must cover at least' },
      'min-hours': { type: 'number', default: 3, describe: 'Distinct hours of event time those signals must span at least' },
      benign: { type: 'string', array: true, describe: 'A detection you call benign: glob on its key or rule name (repeatable); only then may a proposal hide it when it is Warning or above' },
      'falco-rules': { type: 'string', describe: 'Our Falco rules file whose exceptions are filled (default: the installed falco-rules/falco-companion_rules.yaml)' },
      json: { type: 'boolean', default: false, describe: 'The proposal as JSON (for scripts)' },
    }) as unknown as Argv,
  handler: (a: unknown): void => runTune(a as TuneFlags),
};
