/**
 * File input checkpoints: how far the lines of a followed file are committed, kept in the spool's
 * table `input_checkpoints` (spool-schema.ts) and written by the spool's writer, in order with the
 * alerts (spool-writer.ts: a checkpoint is one more operation refused like a new alert, so it never
 * commits without the lines before it). The source side is src/sources/file.ts.
 */

/** A read position: which file, how far. */
export interface FileCheckpoint {
  /** The configured input path (resolved): the key. */
  readonly path: string;
  /** Device and inode of the file being read (decimal strings: 64-bit values). */
  readonly dev: string;
  readonly ino: string;
  /** Bytes of complete lines whose alerts are committed (of the decompressed stream for gzip). */
  readonly offset: number;
  /** The file's first `fpLen` bytes hash to `fp` (sha256 hex; '' when fpLen is 0). */
  readonly fpLen: number;
  readonly fp: string;
  /** When it was written, ms since the epoch. */
  readonly updatedAt: number;
}

/**
 * Where a file source keeps its position. `save` takes effect once every alert the source
 * submitted to the intake before the call is committed, in the same transaction or a later one,
 * never before; when one of those alerts is refused, the position is dropped (the source submits
 * again and saves again).
 */
export interface InputCheckpoints {
  /** The last committed position for `path`, or null. */
  load(path: string): FileCheckpoint | null;
  save(cp: FileCheckpoint): void;
  /** Forget the positions of other paths not written for `maxAgeMs`, and beyond `maxRows`. */
  prune(keepPath: string, maxAgeMs: number, maxRows: number): void;
}

/** Row of `input_checkpoints`. */
export interface CheckpointRow {
  readonly path: string;
  readonly dev: string;
  readonly ino: string;
  readonly offset: number;
  readonly fp_len: number;
  readonly fp: string;
  readonly updated_at: number;
}

export function checkpointFromRow(r: CheckpointRow): FileCheckpoint {
  return { path: r.path, dev: r.dev, ino: r.ino, offset: r.offset, fpLen: r.fp_len, fp: r.fp, updatedAt: r.updated_at };
}
