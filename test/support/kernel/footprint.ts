/**
 * The kernel footprint of a scenario, read from the observer's trace: each syscall as one call
 * (enter arguments + exit result, paired per thread), and expectations over them ("the packet
 * socket was created", "SO_ATTACH_FILTER returned 0 and a filter is attached", "unshare was
 * refused with EPERM"). What the rules key on must have really happened, with the results the
 * scenario expects.
 */
import type { KernelEvent, SyscallEvent, TaskContext } from './events.js';

export interface Call {
  readonly name: string;
  /** Enter arguments as the probe printed them (see program.ts). */
  readonly args: readonly string[];
  readonly ret: number;
  readonly ctx: TaskContext;
  readonly exit: SyscallEvent;
  /** Realtime ns of the exit. */
  readonly timeNs: bigint;
}

/** Pair enter and exit events per thread into calls (a successful execveat exits as execve). */
export function calls(events: readonly KernelEvent[], clockOffset: bigint): Call[] {
  const open = new Map<number, SyscallEvent>();
  const out: Call[] = [];
  for (const e of events) {
    if (e.kind !== 'syscall') continue;
    if (e.dir === '>') {
      open.set(e.ctx.tid, e);
      continue;
    }
    const enter = open.get(e.ctx.tid);
    open.delete(e.ctx.tid);
    const name = enter?.name === 'execveat' && e.name === 'execve' ? 'execveat' : e.name;
    out.push({ name, args: enter && enter.name === name ? enter.args : [], ret: e.ret ?? 0, ctx: e.ctx, exit: e, timeNs: e.mono + clockOffset });
  }
  return out;
}

export const EPERM = -1;
export const EROFS = -30;

export interface Expect {
  /** What must have happened, in words (the failure message). */
  readonly what: string;
  readonly call: string | readonly string[];
  readonly args?: (a: readonly string[], c: Call) => boolean;
  readonly ret?: (r: number, c: Call) => boolean;
  /** At least this many calls (default 1). */
  readonly min?: number;
}

export const ok = (r: number): boolean => r === 0;
export const nonNegative = (r: number): boolean => r >= 0;

/** The expectations no call satisfied (with how many matched), empty when the footprint holds. */
export function missing(cs: readonly Call[], expects: readonly Expect[]): string[] {
  const out: string[] = [];
  for (const x of expects) {
    const names = typeof x.call === 'string' ? [x.call] : x.call;
    const n = cs.filter((c) => names.includes(c.name) && (x.args?.(c.args, c) ?? true) && (x.ret?.(c.ret, c) ?? true)).length;
    if (n < (x.min ?? 1)) out.push(`${x.what}: ${n} matching ${names.join('/')} call(s), expected ≥ ${x.min ?? 1}`);
  }
  return out;
}
