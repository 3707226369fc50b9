/**
 * Finding where to resume a followed file after a restart (src/sources/file.ts reads, the spool
 * keeps the position: src/store/checkpoints.ts).
 *
 * A file is recognised by its device + inode AND a fingerprint of its first bytes (sha256 of up to
 * {@link FINGERPRINT_BYTES}), so a file deleted and replaced by one that got the same inode is not
 * taken for the old one, and a rotated file that was copied or gzip-compressed (new inode, same
 * content) still is. Rotated files are looked for next to the input under configurable names
 * (logrotate's by default); gzip files are read through zlib (they are complete: never followed),
 * other compressions cannot be read and count as gone.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import type { FileCheckpoint } from '../store/checkpoints.js';

/** Bytes at the start of a file that identify it. */
export const FINGERPRINT_BYTES = 4096;

/** A file on disk as the resume plan sees it. */
export interface FileFacts {
  readonly name: string;
  readonly dev: bigint;
  readonly ino: bigint;
  /** Bytes on disk (compressed size for gzip). */
  readonly size: number;
  readonly mtimeMs: number;
  readonly gz: boolean;
}

/** Read one file from `offset` (bytes of its decompressed content for gzip) before the input path. */
export interface Segment {
  readonly file: FileFacts;
  readonly offset: number;
}

export type ResumeReason = 'resumed' | 'rotated' | 'truncated' | 'replaced' | 'gone';

export interface ResumePlan {
  /** Files to read, in order, before the input path (the checkpointed file, then newer rotated files). */
  readonly before: readonly Segment[];
  /** Where to start in the file at the input path once `before` is read. */
  readonly pathOffset: number;
  /**
   * resumed: the checkpointed file is still at the path. rotated: found under a rotated name.
   * truncated / replaced: the file at the path has the checkpoint's inode but is shorter than the
   * offset / has other first bytes (read from its start). gone: not found anywhere.
   */
  readonly reason: ResumeReason;
}

export function sha256Hex(b: Buffer): string {
  return b.length === 0 ? '' : createHash('sha256').update(b).digest('hex');
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

export async function factsOf(name: string): Promise<FileFacts | null> {
  let st;
  try {
    st = await stat(name, { bigint: true });
  } catch {
    return null;
  }
  if (!st.isFile()) return null;
  return { name, dev: st.dev, ino: st.ino, size: Number(st.size), mtimeMs: Number(st.mtimeMs), gz: await startsWith(name, GZIP_MAGIC) };
}

async function startsWith(name: string, magic: Buffer): Promise<boolean> {
  const h = await open(name, 'r').catch(() => null);
  if (!h) return false;
  try {
    const b = Buffer.alloc(magic.length);
    const { bytesRead } = await h.read(b, 0, b.length, 0);
    return bytesRead === magic.length && b.equals(magic);
  } finally {
    await h.close();
  }
}

/** The first `len` bytes of a file (decompressed for gzip); shorter when the file is. */
export async function readHead(f: Pick<FileFacts, 'name' | 'gz'>, len: number): Promise<Buffer> {
  if (len <= 0) return Buffer.alloc(0);
  if (!f.gz) {
    const h = await open(f.name, 'r');
    try {
      return await headOf(h, len);
    } finally {
      await h.close();
    }
  }
  const parts: Buffer[] = [];
  let got = 0;
  const gunzip = createReadStream(f.name).pipe(createGunzip());
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      parts.push(chunk);
      got += chunk.length;
      if (got >= len) break;
    }
  } catch {
    // a truncated or corrupt gzip file: what was decompressed so far
  } finally {
    gunzip.destroy();
  }
  return Buffer.concat(parts, got).subarray(0, len);
}

/** The first `len` bytes of an open file; shorter when the file is. */
export async function headOf(h: FileHandle, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await h.read(b, got, len - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return b.subarray(0, got);
}

/** The file is the checkpoint's: same first bytes (and, when none were fingerprinted, same inode). */
async function isCheckpointed(f: FileFacts, cp: FileCheckpoint): Promise<boolean> {
  if (cp.fpLen === 0) return String(f.dev) === cp.dev && String(f.ino) === cp.ino;
  const head = await readHead(f, cp.fpLen).catch(() => Buffer.alloc(0));
  return head.length === cp.fpLen && sha256Hex(head) === cp.fp;
}

const sameInode = (f: FileFacts, cp: FileCheckpoint): boolean => String(f.dev) === cp.dev && String(f.ino) === cp.ino;

/** Glob → RegExp for one name: `*`, `?`, `[...]` (`[!...]` negated); `{name}` is the input's base name. */
export function rotatedNameRegExp(pattern: string, name: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (pattern.startsWith('{name}', i)) {
      re += name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      i += '{name}'.length - 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) re += '\\[';
      else {
        let body = pattern.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Files that may be rotated copies of `path`: names matching one of `patterns` (a directory part
 * is relative to the input's directory, e.g. logrotate's `olddir`), never the path itself.
 */
export async function rotatedCandidates(path: string, patterns: readonly string[]): Promise<FileFacts[]> {
  const base = basename(path);
  const dir = dirname(path);
  const out: FileFacts[] = [];
  const seen = new Set<string>([path]);
  for (const p of patterns) {
    const slash = p.lastIndexOf('/');
    const pdir = slash === -1 ? dir : isAbsolute(p) ? p.slice(0, slash) || '/' : join(dir, p.slice(0, slash));
    const re = rotatedNameRegExp(p.slice(slash + 1), base);
    let names: string[];
    try {
      names = await readdir(pdir);
    } catch {
      continue;
    }
    for (const n of names) {
      const full = join(pdir, n);
      if (seen.has(full) || !re.test(n)) continue;
      seen.add(full);
      const f = await factsOf(full);
      if (f) out.push(f);
    }
  }
  return out;
}

/**
 * Rotation order of two rotated files of the input `base` name: negative when `a` was rotated
 * out before `b` (is older). logrotate's own names decide (NAME.2 before NAME.1; NAME-20260101
 * before NAME-20260102), because compressing makes a new file whose mtime is the rotation's;
 * other names by mtime.
 */
export function rotationOrder(a: FileFacts, b: FileFacts, base: string): number {
  const rank = (f: FileFacts): { kind: 'num'; n: number } | { kind: 'date'; s: string } | null => {
    const rest = basename(f.name).slice(base.length).replace(/\.gz$/, '');
    const num = /^\.(\d+)$/.exec(rest);
    if (num) return { kind: 'num', n: Number(num[1]) };
    const date = /^-(\d[\d._-]*)$/.exec(rest);
    return date ? { kind: 'date', s: date[1] as string } : null;
  };
  const ra = basename(a.name).startsWith(base) ? rank(a) : null;
  const rb = basename(b.name).startsWith(base) ? rank(b) : null;
  if (ra && rb && ra.kind === 'num' && rb.kind === 'num' && ra.n !== rb.n) return rb.n - ra.n;
  if (ra && rb && ra.kind === 'date' && rb.kind === 'date' && ra.s !== rb.s) return ra.s < rb.s ? -1 : 1;
  return a.mtimeMs - b.mtimeMs;
}

/**
 * Where to resume `path` from its checkpoint. The checkpointed file is finished first wherever it
 * is now (at the path, or under a rotated name), then the rotated files written after it (oldest
 * first), then the file at the path from its start.
 */
export async function planResume(path: string, cp: FileCheckpoint, patterns: readonly string[]): Promise<ResumePlan> {
  const atPath = await factsOf(path);
  if (atPath && (await isCheckpointed(atPath, cp))) {
    if (atPath.gz || atPath.size >= cp.offset) return { before: [], pathOffset: cp.offset, reason: 'resumed' };
    return { before: [], pathOffset: 0, reason: 'truncated' };
  }
  // In place: same inode, shorter than what was read (truncated) or other first bytes (truncated
  // and written again, or a new file that got the inode).
  const inPlace: ResumeReason | null = atPath && sameInode(atPath, cp) ? (atPath.size < cp.offset ? 'truncated' : 'replaced') : null;
  const base = basename(path);
  const candidates = (await rotatedCandidates(path, patterns)).sort((a, b) => rotationOrder(a, b, base));
  // The same inode first (renamed), then a copy (copytruncate) or a compressed copy.
  const byLikelihood = [...candidates].sort((a, b) => Number(sameInode(b, cp)) - Number(sameInode(a, cp)));
  let found: FileFacts | null = null;
  for (const c of byLikelihood) {
    if (await isCheckpointed(c, cp)) {
      found = c;
      break;
    }
  }
  if (!found) return { before: [], pathOffset: 0, reason: inPlace ?? 'gone' };
  const f = found;
  const newer = candidates.filter((c) => c !== f && rotationOrder(c, f, base) > 0 && !(c.dev === f.dev && c.ino === f.ino));
  return { before: [{ file: f, offset: cp.offset }, ...newer.map((file) => ({ file, offset: 0 }))], pathOffset: 0, reason: inPlace ?? 'rotated' };
}
