/**
 * `falco-companion explain [ALERT.json | -] [--config FILE] [--state-dir DIR] [--json]`: for one
 * Falco alert (a file holding one JSON alert, or one line on stdin), which signal entries of the
 * rules file map it (file:line), which suppressions and CI windows apply to each detector and why,
 * what the detector state holds for its workload and what the detectors would do with it now, and
 * how often the statistics saw the same signal. The reasoning is src/detect/explain.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { alertFromJson, type Alert } from '../alert.js';
import { errorMessage } from '../errors.js';
import { checkpointStates, explainAlert, freshStates, type DetectorStates, type Explanation } from '../detect/explain.js';
import { compileMapping } from '../detect/mapping.js';
import { decodeState, restoreInto } from '../detect/codec.js';
import { buildDetectors } from '../detect/registry.js';
import { loadRulesFile } from '../detect/rules/load.js';
import type { LoadedRules } from '../detect/rules/types.js';
import { dimsKey, signalDims } from '../detect/stats-dims.js';
import { podLabelKeys } from '../detect/suppress.js';
import { parse } from '../json/lossless.js';
import { STATE_DB_FILE, openStateDb, type Db } from '../store/db.js';
import { HOUR_MS, hasSignalStats, newestStatsBucket, readTupleStats } from '../store/signal-stats.js';
import { dieWith, offlineConfig, out } from './offline.js';

interface ExplainFlags {
  alert?: string;
  config?: string;
  'state-dir'?: string;
  json?: boolean;
}

const die: (msg: string, code?: number) => never = dieWith('explain');

/**
 * Decodes one part of the daemon's detection-state checkpoint (table `detect_state`) into the
 * detector's state: the state codec, restored into the detector's fresh state (as the daemon does
 * at start). The engine's own part and unknown detectors are not detector states.
 */
function checkpointDecoder(rules: LoadedRules, versions: ReadonlyMap<string, number>): (id: string, bytes: Buffer) => unknown {
  const detectors = new Map(buildDetectors(rules).map((d) => [d.id, d] as const));
  return (id, bytes) => {
    const det = detectors.get(id);
    if (!det) throw new Error(`no detector ${id} in this build`);
    const stored = versions.get(id);
    if (stored !== (det.stateVersion ?? 1)) throw new Error(`written for state version ${String(stored)}, this build reads ${det.stateVersion ?? 1}`);
    return restoreInto(det.init(), decodeState(bytes));
  };
}

function readAlert(path: string | undefined): Alert {
  let text: string;
  try {
    text = path === undefined || path === '-' ? readFileSync(0, 'utf8') : readFileSync(path, 'utf8');
  } catch (err) {
    die(`cannot read ${path ?? 'stdin'}: ${errorMessage(err)}`, 2);
  }
  const trimmed = text.trim();
  const lines = trimmed.split('\n').filter((l) => l.trim() !== '');
  // One alert: a JSON document (possibly pretty-printed) or one JSON line.
  const candidates = [trimmed, ...(lines.length > 1 && lines[0]?.trim().startsWith('{') && lines[0].trim().endsWith('}') ? [lines[0]] : [])];
  let lastErr = 'empty input';
  for (const c of candidates) {
    try {
      const a = alertFromJson(parse(c), { kind: 'file', component: 'explain' });
      if (c !== trimmed) process.stderr.write('falco-companion explain: more than one line given; explaining the first\n');
      return a;
    } catch (err) {
      lastErr = errorMessage(err);
    }
  }
  die(`${path ?? 'stdin'}: not a Falco JSON alert: ${lastErr}`, 2);
}

function statesFrom(db: Db | null, where: string, rules: LoadedRules): DetectorStates {
  if (!db) return freshStates(`no state database at ${where}: fresh detector states (what this alert alone would do)`);
  const has = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'detect_state'").get() !== undefined;
  if (!has) return freshStates(`no detector state checkpoint in ${where}: fresh detector states (what this alert alone would do)`);
  const parts = db.prepare("SELECT id, version, saved_at_ms AS savedAtMs, state FROM detect_state WHERE id <> 'engine' ORDER BY id").all() as { id: string; version: number; savedAtMs: number; state: Buffer }[];
  return checkpointStates(parts, checkpointDecoder(rules, new Map(parts.map((p) => [p.id, p.version] as const))), where);
}

interface TupleStats {
  readonly kind: string;
  readonly rows: readonly { detector: string; outcome: string; count: number; hours: number }[];
}

function render(e: Explanation, stats: readonly TupleStats[] | null): string {
  const o: string[] = [];
  const a = e.alert;
  o.push(`alert: ${a.time} ${a.priority} "${a.rule}" (source ${a.source ?? '-'})`);
  o.push(`  workload: ${a.container ?? 'host'}${a.image ? ` image ${a.image}` : ''}${a.namespace ? ` in ${a.namespace}/${a.pod ?? '?'}` : ''}`);
  o.push(`  ${e.forwarded}`);
  o.push(`rules file: ${e.rulesFile}`);
  o.push(`detector state: ${e.stateFrom}`);
  if (e.signals.length === 0) o.push('signals: none: no entry of signals: maps this alert, so no detector sees it');
  for (const s of e.signals) {
    o.push('');
    o.push(`signal ${s.kind}${s.subtype ? `/${s.subtype}` : ''} from ${s.entries.map((x) => `signals[${x.index}] "${x.name}" (${x.where})`).join(', ')}`);
    o.push(`  facts: ${Object.entries(s.facts).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (s.detectors.length === 0) o.push('  no detector consumes this kind');
    for (const d of s.detectors) {
      const head = !d.enabled ? 'disabled in the rules file' : d.suppressed ? `suppressed (${d.suppressed})` : 'gets the signal';
      o.push(`  ${d.detector}: ${head}`);
      for (const c of d.checks) {
        if (!c.matched && c.kind !== 'ci_window' && c.conditions.every((x) => !x.held)) continue; // nothing in common: not worth a line
        const verdict = c.matched ? 'MATCHES' : 'does not match';
        o.push(`    ${c.kind === 'allow' ? `allow "${c.name}"` : c.kind === 'ci_window' ? `CI window ${c.name}` : `CI workload ${c.name}`} (${c.where}): ${verdict}`);
        for (const x of c.conditions) o.push(`      ${x.held ? 'yes' : 'no '} ${x.field} [${x.want}] vs ${x.have}`);
      }
      const others = d.checks.filter((c) => !c.matched && c.kind !== 'ci_window' && c.conditions.every((x) => !x.held)).length;
      if (others > 0) o.push(`    ${others} other allow entr${others === 1 ? 'y' : 'ies'} / CI workload(s) for ${d.detector} share nothing with this signal`);
      if (d.quietInCi && !d.checks.some((c) => c.kind !== 'allow')) o.push('    CI windows and workloads would silence it: none are configured');
      if (d.learningMs > 0) o.push(`    learning period ${Math.round(d.learningMs / 3_600_000)}h from the detector's first signal: findings inside it are suppressed`);
      if (d.error) o.push(`    dry run failed: ${d.error}`);
      if (d.enabled && !d.suppressed) {
        if (d.state.length === 0) o.push(`    state: nothing kept for ${s.facts['container'] ?? 'this workload'}`);
        else for (const l of d.state) o.push(`    state: ${l}`);
        if (d.findings.length === 0) o.push(`    now: no finding from this signal${e.fromCheckpoint ? '' : ' (alone)'}`);
        for (const f of d.findings) o.push(`    now: would find "${f.rule}" (${f.priority}): ${f.message}`);
      }
    }
    const st = stats?.find((x) => x.kind === s.kind);
    if (st) {
      o.push(st.rows.length === 0 ? '  statistics: this signal (kind and workload facts) was not seen in the last 24 h' : `  statistics (last 24 h): ${st.rows.map((r) => `${r.detector} ${r.outcome} ${r.count}x over ${r.hours}h`).join('; ')}`);
    }
  }
  for (const n of e.nearMisses) o.push(`note: signals[${n.index}] "${n.name}" (${n.where}) ${n.why}`);
  return o.join('\n') + '\n';
}

export function runExplain(f: ExplainFlags): void {
  const config = offlineConfig(f, die);
  let rules;
  try {
    rules = loadRulesFile(config.detect.rules_file);
  } catch (err) {
    die(errorMessage(err), 2);
  }
  const alert = readAlert(f.alert);
  const file = join(config.state_dir, STATE_DB_FILE);
  let db: Db | null = null;
  try {
    if (existsSync(file)) db = openStateDb(config.state_dir);
  } catch (err) {
    die(errorMessage(err));
  }
  try {
    const e = explainAlert(alert, { rules, states: statesFrom(db, file, rules), forwardSignalAlerts: config.detect.forward_signal_alerts });
    let stats: TupleStats[] | null = null;
    if (db && hasSignalStats(db)) {
      const newest = newestStatsBucket(db);
      const from = newest === null ? 0 : newest - Math.ceil(86_400_000 / HOUR_MS) + 1;
      const sigs = compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) }).mapAlert(alert);
      stats = sigs.map((s) => ({ kind: s.kind, rows: readTupleStats(db as Db, s.kind, dimsKey(signalDims(s).dims), from) }));
    }
    out(f.json ? JSON.stringify({ ...e, statistics: stats }, null, 2) : render(e, stats));
  } catch (err) {
    die(errorMessage(err));
  } finally {
    db?.close();
  }
}

/** The `explain` command as a yargs command module. */
export const explainCommand = {
  command: 'explain [alert]',
  describe: 'Why did this alert (not) fire? Signal entries, suppressions and CI windows, detector state (ALERT.json, or one line on stdin)',
  builder: (c: Argv): Argv =>
    c.positional('alert', { type: 'string', describe: 'File with one Falco JSON alert; - or absent: one line on stdin' }).options({
      config: { type: 'string', describe: 'YAML config file: its detect.rules_file and state_dir are used (like run)' },
      'state-dir': { type: 'string', describe: 'State directory (overrides $FALCO_COMPANION_STATE_DIR and state_dir in --config)' },
      json: { type: 'boolean', default: false, describe: 'The explanation as JSON (for scripts)' },
    }) as unknown as Argv,
  handler: (a: unknown): void => runExplain(a as ExplainFlags),
};
