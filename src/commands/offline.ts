/**
 * What the offline commands (spool, tune, explain) share: the configuration as `run` resolves it
 * (--config, the environment, --state-dir), the existing state database, and dying with a clear
 * message and exit code.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { configSchema, type Config } from '../config/schema.js';
import { loadConfig } from '../config/validate.js';
import { ConfigError, errorMessage } from '../errors.js';
import { STATE_DB_FILE, openStateDb, type Db } from '../store/db.js';

/** One line (or block) on stdout, newline-terminated. */
export function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

/** Print `falco-companion <command>: msg` on stderr and exit (2: usage or configuration, 1: anything else). */
export function dieWith(command: string): (msg: string, code?: number) => never {
  return (msg, code = 1) => {
    process.stderr.write(`falco-companion ${command}: ${msg}\n`);
    process.exit(code);
  };
}

/** The configuration as `run` loads it (flag, environment, config file, defaults); exit 2 when invalid. */
export function offlineConfig(flags: { readonly config?: string; readonly 'state-dir'?: string }, die: (msg: string, code?: number) => never): Config {
  try {
    const overrides = flags['state-dir'] !== undefined ? { state_dir: flags['state-dir'] } : {};
    return loadConfig<Config>(configSchema, { file: flags.config ?? null, overrides });
  } catch (err) {
    if (err instanceof ConfigError) die(`invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}`, 2);
    die(errorMessage(err));
  }
}

/** The state database of `stateDir`, which must exist already (never created by an offline command). */
export function existingStateDb(stateDir: string, die: (msg: string, code?: number) => never): Db {
  const file = join(stateDir, STATE_DB_FILE);
  if (!existsSync(file)) die(`no state database at ${file} (set --state-dir, FALCO_COMPANION_STATE_DIR or state_dir in --config)`);
  try {
    return openStateDb(stateDir);
  } catch (err) {
    die(errorMessage(err));
  }
}
