/**
 * `falco-companion spool stats | list [--dead] | retry [--dead] | purge [--dead]`: inspect and
 * repair the durable spool in the state directory. Works offline or next to the running daemon
 * (WAL + busy_timeout, one short transaction per command; the daemon re-counts within ~10 s).
 * The state directory comes from the same places as for `run`: --state-dir, then
 * FALCO_COMPANION_STATE_DIR, then `state_dir` in --config, then the default.
 */
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { errorMessage } from '../errors.js';
import { STATE_DB_FILE } from '../store/db.js';
import { dieWith, existingStateDb, offlineConfig, out } from './offline.js';
import { spoolList, spoolPurge, spoolRetry, spoolStats } from '../store/spool-admin.js';

interface SpoolFlags {
  action: string;
  config?: string;
  'state-dir'?: string;
  dead?: boolean;
  limit?: number;
  json?: boolean;
  payload?: boolean;
  yes?: boolean;
}

const die: (msg: string, code?: number) => never = dieWith('spool');

export function runSpoolCommand(f: SpoolFlags): void {
  const stateDir = offlineConfig(f, die).state_dir;
  const db = existingStateDb(stateDir, die);
  try {
    const dead = f.dead === true;
    switch (f.action) {
      case 'stats': {
        const s = spoolStats(db);
        if (f.json) out(JSON.stringify(s));
        else {
          out(`spool ${join(stateDir, STATE_DB_FILE)}`);
          out(`  received (not yet through the pipeline): ${s.received}`);
          out(`  ready (waiting for delivery):            ${s.ready} (${s.dueNow} due now, ${s.retrying} retried at least once)`);
          out(`  bytes:                                   ${s.bytes}`);
          out(`  oldest:                                  ${s.oldest ?? '-'}${s.oldestAgeSeconds !== null ? ` (${s.oldestAgeSeconds}s ago)` : ''}`);
          out(`  dead letters:                            ${s.deadLetters} (${s.deadBytes} bytes)`);
        }
        return;
      }
      case 'list': {
        const rows = spoolList(db, { dead, limit: f.limit ?? 100, payload: f.payload === true });
        if (f.json) {
          for (const r of rows) out(JSON.stringify(r));
          return;
        }
        for (const r of rows) {
          const extra = r.state === 'dead' ? `status=${r.status ?? '-'} ` : r.nextAttemptAt ? `next=${r.nextAttemptAt} ` : '';
          out(`${r.id}  ${r.state.padEnd(8)} ${r.priority.padEnd(13)} attempts=${r.attempts} ${extra}${JSON.stringify(r.rule)}${r.lastError ? `  last_error=${JSON.stringify(r.lastError)}` : ''}`);
          if (r.payload) out(`  ${r.payload}`);
        }
        if (rows.length === 0) out(dead ? 'no dead letters' : 'spool is empty');
        return;
      }
      case 'retry': {
        const n = spoolRetry(db, { dead });
        out(dead ? `${n} dead letter(s) moved back to the spool for delivery` : `${n} waiting alert(s) made due now`);
        return;
      }
      case 'purge': {
        if (!f.yes) die(`purge deletes every ${dead ? 'dead letter' : 'alert in the spool (they will never be delivered)'}; add --yes to confirm`, 2);
        const n = spoolPurge(db, { dead });
        out(`${n} ${dead ? 'dead letter(s)' : 'alert(s)'} deleted`);
        return;
      }
      default:
        die(`unknown action ${JSON.stringify(f.action)}: use stats, list, retry or purge`, 2);
    }
  } catch (err) {
    die(errorMessage(err));
  } finally {
    db.close();
  }
}

/** The `spool` command as a yargs command module: register with `.command(spoolCommand)`. */
export const spoolCommand = {
  command: 'spool <action>',
  describe: 'Inspect or repair the durable spool: stats | list [--dead] | retry [--dead] | purge [--dead] --yes',
  builder: (c: Argv): Argv =>
    c
      .positional('action', { type: 'string', choices: ['stats', 'list', 'retry', 'purge'], demandOption: true })
      .options({
        config: { type: 'string', describe: 'YAML config file: its state_dir is used (like run)' },
        'state-dir': { type: 'string', describe: 'State directory (overrides $FALCO_COMPANION_STATE_DIR and state_dir in --config; default /var/lib/falco-companion)' },
        dead: { type: 'boolean', default: false, describe: 'Work on the dead letters (permanent delivery failures)' },
        limit: { type: 'number', default: 100, describe: 'list: rows shown' },
        payload: { type: 'boolean', default: false, describe: 'list: also print each payload' },
        json: { type: 'boolean', default: false, describe: 'stats/list: JSON output' },
        yes: { type: 'boolean', default: false, describe: 'purge: confirm' },
      }) as unknown as Argv,
  handler: (a: unknown): void => runSpoolCommand(a as SpoolFlags),
};
