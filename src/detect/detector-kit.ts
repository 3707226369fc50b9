/**
 * Helpers for the chain detectors (socket-filter, knock): score → priority, process lineage
 * overlap, tmpfs / masquerade checks. No wall clock anywhere. (Bounded maps: ./detectors/kit.ts.)
 */
import type { Priority } from '../alert.js';
import type { ProcFacts, Signal } from './types.js';

export interface PriorityThresholds {
  readonly critical: number;
  readonly error: number;
  readonly warning: number;
}

export const DEFAULT_THRESHOLDS: PriorityThresholds = { critical: 0.85, error: 0.7, warning: 0.5 };

export function priorityFromScore(score: number, t: PriorityThresholds = DEFAULT_THRESHOLDS): Priority {
  if (score >= t.critical) return 'Critical';
  if (score >= t.error) return 'Error';
  if (score >= t.warning) return 'Warning';
  return 'Notice';
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/**
 * True when `t` is the process `p`, its child or descendant (p ∈ t's ancestors), or a member of
 * the session `p` leads. A bare shared session is not enough: every process of a container
 * shares its init's session unless one calls setsid.
 */
export function sameLineage(p: ProcFacts, t: ProcFacts): boolean {
  if (p.pid === null || t.pid === null) return false;
  if (t.pid === p.pid || t.ppid === p.pid || t.apids.includes(p.pid)) return true;
  if (t.sid !== null && t.sid === p.pid) return true;
  // The armer may itself be a child of the triggering process' session leader that setsid'd.
  if (p.sid !== null && p.sid === p.pid && t.sid === p.sid) return true;
  return false;
}

const TMPFS_PREFIXES = ['/dev/shm/', '/run/shm/', '/run/user/', '/tmp/', '/var/tmp/', '/run/', '/var/run/', 'memfd:'];

export function isTmpfsPath(p: string | null): boolean {
  return p !== null && TMPFS_PREFIXES.some((x) => p.startsWith(x));
}

export function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return (i >= 0 ? p.slice(i + 1) : p).replace(/ \(deleted\)$/, '');
}

/** proc.name that is not the basename of the executable (Falco truncates names to 15 chars). */
export function isMasquerade(p: ProcFacts): boolean {
  if (!p.name || !p.exepath || p.exepath.startsWith('memfd:')) return false;
  const base = basename(p.exepath);
  if (base === p.name || base.startsWith(p.name) || p.name.startsWith(base)) return false;
  // Interpreters run scripts under their own name; busybox applets run under the applet name.
  if (/^(busybox|python[\d.]*|perl|ruby|node|bash|sh|dash)$/.test(base)) return false;
  return true;
}

/** Compact description of a process for evidence strings. */
export function procLabel(s: Signal): string {
  const p = s.proc;
  const name = p.name ?? (p.exepath ? basename(p.exepath) : '?');
  return `${name}[${p.pid ?? '?'}]`;
}

export function keyString(s: Signal, key: string): string | null {
  const v = s.keys[key];
  if (v === undefined || v === null) return null;
  return typeof v === 'object' ? v.raw : String(v);
}

export function keyNumber(s: Signal, key: string): number | null {
  const v = s.keys[key];
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(typeof v === 'string' ? v : v.raw);
  return Number.isFinite(n) ? n : null;
}
