/**
 * Detection state checkpoints in the state database (namespace `detect_state`): one row per part
 * (a detector's state, or `engine`: incidents and learning-period starts), each with the version
 * of its shape and the encoded bytes (src/detect/codec.ts). Written by src/detect/checkpoint.ts.
 */
import { migrate, type Db } from './db.js';

export const DETECT_STATE_NAMESPACE = 'detect_state';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE detect_state (
     id          TEXT PRIMARY KEY,
     version     INTEGER NOT NULL,
     saved_at_ms INTEGER NOT NULL,
     bytes       INTEGER NOT NULL,
     state       BLOB NOT NULL
   ) WITHOUT ROWID`,
];

export interface StoredPart {
  readonly id: string;
  readonly version: number;
  /** Wall clock when it was written. */
  readonly savedAtMs: number;
  readonly state: Buffer;
}

export class DetectStateStore {
  private readonly upsert;
  private readonly all;
  private readonly del;

  constructor(private readonly db: Db) {
    migrate(db, DETECT_STATE_NAMESPACE, MIGRATIONS);
    this.upsert = db.prepare(
      'INSERT INTO detect_state(id, version, saved_at_ms, bytes, state) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET version = excluded.version, saved_at_ms = excluded.saved_at_ms, bytes = excluded.bytes, state = excluded.state',
    );
    this.all = db.prepare('SELECT id, version, saved_at_ms AS savedAtMs, state FROM detect_state ORDER BY id');
    this.del = db.prepare('DELETE FROM detect_state WHERE id = ?');
  }

  /** Every stored part. */
  load(): StoredPart[] {
    return this.all.all() as StoredPart[];
  }

  /** Write these parts in one transaction (all or none). */
  save(parts: readonly { readonly id: string; readonly version: number; readonly state: Buffer }[], savedAtMs: number): void {
    this.db.transaction(() => {
      for (const p of parts) this.upsert.run(p.id, p.version, savedAtMs, p.state.length, p.state);
    })();
  }

  /** Forget a part (it could not be restored: the next checkpoint writes it fresh). */
  delete(id: string): void {
    this.del.run(id);
  }
}
