/**
 * `falco-companion report <detection-id> | --last N | --list [--out FILE] [--json]`: one detection
 * (or the newest N) from the journal as a self-contained HTML page (src/report/html.ts), or its
 * record as JSON, or a list of the newest detections. Reads the state directory like `run`
 * (--state-dir, FALCO_COMPANION_STATE_DIR, state_dir in --config), read-only: it can run next to
 * the daemon.
 */
import { writeFileSync } from 'node:fs';
import type { Argv } from 'yargs';
import { ConfigError, errorMessage } from '../errors.js';
import { commandConfig, openJournal } from '../journal/open.js';
import type { DetectionRecord } from '../journal/types.js';
import { renderPage } from '../report/html.js';
import { incidentsOf } from '../report/route.js';

export interface ReportFlags {
  id?: string;
  last?: number;
  list?: boolean;
  out?: string;
  json?: boolean;
  config?: string;
  'state-dir'?: string;
}

/** What the command prints or writes; exit code 0 on success, 1 when nothing was found, 2 for bad usage. */
export interface ReportResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function where(r: DetectionRecord): string {
  const f = r.outputFields;
  const ns = f['k8s.ns.name'];
  const pod = f['k8s.pod.name'];
  if (typeof ns === 'string' && typeof pod === 'string') return `${ns}/${pod}`;
  const c = f['container.id'];
  return typeof c === 'string' && c !== 'host' ? `container ${c}` : 'host';
}

/** The command without process side effects (tests call it directly). */
export function report(f: ReportFlags, now: () => number = Date.now): ReportResult {
  // --list --last N lists N; otherwise exactly one of an id and --last.
  const modes = (f.id !== undefined ? 1 : 0) + (f.list === true || f.last !== undefined ? 1 : 0);
  if (modes !== 1) return { code: 2, stdout: '', stderr: 'give a detection id, --last N or --list\n' };
  if (f.last !== undefined && (!Number.isInteger(f.last) || f.last < 1 || f.last > 1000)) return { code: 2, stdout: '', stderr: '--last must be a whole number from 1 to 1000\n' };
  let j;
  try {
    j = openJournal(commandConfig(f).state_dir);
  } catch (err) {
    if (err instanceof ConfigError) return { code: 2, stdout: '', stderr: `invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n` };
    return { code: 1, stdout: '', stderr: `${errorMessage(err)}\n` };
  }
  try {
    const reader = j.reader;
    if (f.list) {
      const rows = reader.last(f.last ?? 20);
      if (f.json) return { code: 0, stdout: rows.map((r) => JSON.stringify({ id: r.id, time: r.time, priority: r.priority, rule: r.rule, detector: r.detector, incident: r.incident, where: where(r) })).join('\n') + (rows.length ? '\n' : ''), stderr: '' };
      const lines = rows.map((r) => `${r.id}  ${r.time.slice(0, 23)}Z  ${r.priority.padEnd(8)} ${(r.detector ?? '?').padEnd(18)} ${where(r).padEnd(40)} ${r.rule}`);
      return { code: 0, stdout: rows.length === 0 ? `no detection in ${j.path}\n` : `${lines.join('\n')}\n`, stderr: '' };
    }
    let records: DetectionRecord[];
    if (f.id !== undefined) {
      const r = reader.get(f.id);
      if (!r) return { code: 1, stdout: '', stderr: `no detection ${f.id} in ${j.path} (falco-companion report --list shows the newest)\n` };
      records = [r];
    } else {
      records = reader.last(f.last ?? 1).reverse();
      if (records.length === 0) return { code: 1, stdout: '', stderr: `no detection in ${j.path}\n` };
    }
    const text = f.json ? `${JSON.stringify(records.length === 1 ? records[0] : records, null, 2)}\n` : renderPage(records, { generatedAtMs: now(), incidents: incidentsOf(reader, records), linkBase: null });
    if (f.out !== undefined) {
      writeFileSync(f.out, text);
      return { code: 0, stdout: '', stderr: `wrote ${f.out} (${records.length} detection${records.length === 1 ? '' : 's'})\n` };
    }
    return { code: 0, stdout: text, stderr: '' };
  } catch (err) {
    return { code: 1, stdout: '', stderr: `${errorMessage(err)}\n` };
  } finally {
    j.close();
  }
}

export const reportCommand = {
  command: 'report [id]',
  describe: 'Render a detection from the journal as a self-contained HTML page (incident timeline): report ID | --last N | --list',
  builder: (c: Argv): Argv =>
    c
      .positional('id', { type: 'string', describe: 'Detection id (companion.alert_id of the detection)' })
      .options({
        last: { type: 'number', describe: 'The newest N detections on one page (with --list: how many to list, default 20)' },
        list: { type: 'boolean', describe: 'List the newest detections (id, time, priority, detector, where, rule)' },
        out: { type: 'string', describe: 'Write to FILE instead of stdout' },
        json: { type: 'boolean', describe: 'The journal record(s) as JSON instead of HTML' },
        config: { type: 'string', describe: 'YAML config file: its state_dir is used (like run)' },
        'state-dir': { type: 'string', describe: 'State directory (overrides $FALCO_COMPANION_STATE_DIR and state_dir in --config)' },
      }) as unknown as Argv,
  handler: (a: unknown): void => {
    const r = report(a as ReportFlags);
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(`${r.code === 0 ? '' : 'falco-companion report: '}${r.stderr}`);
    process.exitCode = r.code;
  },
};
