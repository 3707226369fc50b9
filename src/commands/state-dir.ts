/**
 * What the offline commands (`spool`, `baseline`) share: the configuration as `run` resolves it
 * (--state-dir, then the environment, then --config, then the defaults) and the existing state
 * database, or a clear message and an exit code through `die`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema, type Config } from '../config/schema.js';
import { loadConfig } from '../config/validate.js';
import { ConfigError, errorMessage } from '../errors.js';
import { STATE_DB_FILE, openStateDb, type Db } from '../store/db.js';

export type Die = (msg: string, code?: number) => never;

export function commandConfig(f: { config?: string; 'state-dir'?: string }, die: Die): Config {
  try {
    const overrides = f['state-dir'] !== undefined ? { state_dir: f['state-dir'] } : {};
    return loadConfig<Config>(configSchema, { file: f.config ?? null, overrides });
  } catch (err) {
    if (err instanceof ConfigError) die(`invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}`, 2);
    die(errorMessage(err));
  }
}

export function openExistingStateDb(stateDir: string, die: Die): Db {
  const file = join(stateDir, STATE_DB_FILE);
  if (!existsSync(file)) die(`no state database at ${file} (set --state-dir, FALCO_COMPANION_STATE_DIR or state_dir in --config)`);
  try {
    return openStateDb(stateDir);
  } catch (err) {
    die(errorMessage(err));
  }
}
