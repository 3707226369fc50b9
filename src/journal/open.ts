/**
 * Opening the journal from a command (report, tune, explain): the state directory as `run`
 * resolves it (--state-dir, FALCO_COMPANION_STATE_DIR, state_dir in --config, the default), the
 * database opened read-only, so a command never changes what the running daemon writes.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema, type Config } from '../config/schema.js';
import { loadConfig } from '../config/validate.js';
import { CompanionError } from '../errors.js';
import { STATE_DB_FILE, openStateDb, type Db } from '../store/db.js';
import { JournalStore } from './store.js';
import type { JournalReader } from './types.js';

/** The validated config of a command's --config / --state-dir (throws ConfigError). */
export function commandConfig(f: { readonly config?: string | undefined; readonly 'state-dir'?: string | undefined }): Config {
  const overrides = f['state-dir'] !== undefined ? { state_dir: f['state-dir'] } : {};
  return loadConfig<Config>(configSchema, { file: f.config ?? null, overrides });
}

export interface OpenJournal {
  readonly reader: JournalReader;
  readonly path: string;
  close(): void;
}

/** The journal of a state directory, read-only. Throws E_NO_JOURNAL when there is no state database. */
export function openJournal(stateDir: string): OpenJournal {
  const path = join(stateDir, STATE_DB_FILE);
  if (!existsSync(path)) {
    throw new CompanionError('E_NO_JOURNAL', `no state database at ${path} (set --state-dir, FALCO_COMPANION_STATE_DIR or state_dir in --config)`);
  }
  const db: Db = openStateDb(stateDir, { readonly: true });
  return { reader: new JournalStore(db, { writable: false }), path, close: () => db.close() };
}
