/**
 * The state database: one SQLite file (better-sqlite3, WAL) in the state directory. Each module
 * owns its tables and registers versioned migrations under its own namespace.
 */
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { CompanionError, errorMessage } from '../errors.js';

export type Db = Database.Database;

export class StateDbError extends CompanionError {
  readonly path: string;
  constructor(path: string, cause: unknown) {
    const msg = cause instanceof Error ? cause.message : String(cause);
    super('E_STATE_DB', `state database ${path}: ${msg}`, { cause });
    this.name = 'StateDbError';
    this.path = path;
  }
}

export const STATE_DB_FILE = 'falco-companion.db';

/** mkdir -p, with a clear cause when it fails (Node reports ENOENT for a read-only parent). */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    let parent = dir;
    while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
    try {
      accessSync(parent, constants.W_OK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'EACCES';
      throw new Error(`cannot create ${dir}: ${parent} is ${code === 'EROFS' ? 'on a read-only filesystem' : 'not writable'} (${code})`, { cause: err });
    }
    throw err;
  }
}

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * A file replaced by something else while a WAL file of the old one is still next to it would open
 * fine (SQLite reads page 1 from the WAL) and fail later, page by page: refuse it at once.
 */
function checkHeader(path: string): void {
  if (!existsSync(path)) return;
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(SQLITE_HEADER.length);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n > 0 && (n < head.length || !head.equals(SQLITE_HEADER))) {
      throw new Error('file is not a database (no "SQLite format 3" header): it was replaced or overwritten; move it and its -wal/-shm files aside');
    }
  } finally {
    closeSync(fd);
  }
}

/** Open (creating the directory and file) the state database with WAL and sane pragmas. */
export function openStateDb(stateDir: string, opts: { readonly?: boolean; file?: string } = {}): Db {
  const path = stateDir === ':memory:' ? ':memory:' : join(stateDir, opts.file ?? STATE_DB_FILE);
  try {
    if (stateDir !== ':memory:' && !opts.readonly) makeDir(stateDir);
    if (path !== ':memory:') checkHeader(path);
    const db = new Database(path, { readonly: opts.readonly ?? false, timeout: 5000 });
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
    }
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    db.exec('CREATE TABLE IF NOT EXISTS schema_versions (namespace TEXT PRIMARY KEY, version INTEGER NOT NULL)');
    return db;
  } catch (err) {
    throw new StateDbError(path, err);
  }
}

/**
 * Apply the migrations of one namespace that have not run yet, each in a transaction.
 * `steps[i]` takes the namespace from version i to i+1. Never edit a released step: append.
 */
export function migrate(db: Db, namespace: string, steps: readonly string[]): number {
  const row = db.prepare('SELECT version FROM schema_versions WHERE namespace = ?').get(namespace) as { version: number } | undefined;
  const current = row?.version ?? 0;
  if (current > steps.length) {
    throw new CompanionError('E_STATE_DB_VERSION', `state database namespace ${namespace} is at version ${current}, newer than this build knows (${steps.length}); upgrade falco-companion`);
  }
  for (let v = current; v < steps.length; v++) {
    db.transaction(() => {
      db.exec(steps[v] as string);
      db.prepare('INSERT INTO schema_versions(namespace, version) VALUES (?, ?) ON CONFLICT(namespace) DO UPDATE SET version = excluded.version').run(namespace, v + 1);
    })();
  }
  return steps.length;
}

/** Sort a SQLite failure into its code and a human cause (what to do about it). */
export function describeDbError(err: unknown): { code: string; cause: string } {
  const raw = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : '';
  const code = /^SQLITE_[A-Z_]+$/.test(raw) ? raw : raw === '' ? 'E_UNKNOWN' : 'E_OTHER';
  const msg = errorMessage(err);
  if (code.startsWith('SQLITE_FULL')) return { code, cause: 'disk full (free space on the state directory filesystem)' };
  if (code.startsWith('SQLITE_READONLY')) return { code, cause: `read-only (check permissions and mount options): ${msg}` };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return { code, cause: 'database locked by another process beyond busy_timeout' };
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) return { code, cause: `corrupt database file: ${msg}` };
  if (code.startsWith('SQLITE_IOERR')) return { code, cause: `I/O error: ${msg}` };
  if (code.startsWith('SQLITE_CANTOPEN')) return { code, cause: `cannot open the database file: ${msg}` };
  return { code, cause: msg };
}
