/**
 * What the kernel observer saw, as plain data: the events of the traced process subtree, in the
 * kernel's order (monotonic time), with the context of the task at each event. These are the raw
 * facts; test/support/falco-model turns them into what libsinsp would expose to Falco's rules.
 */

/** The task's context at an event (read from task_struct in the probe). */
export interface TaskContext {
  readonly pid: number;
  readonly tid: number;
  /** real_parent's tgid. */
  readonly ppid: number;
  readonly comm: string;
  readonly uid: number;
  readonly gid: number;
  readonly euid: number;
  /** pid / tid in the task's own pid namespace (1 for a container's init). */
  readonly vpid: number;
  readonly vtid: number;
  /** Session id (global pid of the session leader). */
  readonly sid: number;
  /** 4294967295 when unset. */
  readonly loginuid: number;
  readonly capEffective: bigint;
  /** Encoded tty device (0 without a controlling terminal), as Falco's proc.tty. */
  readonly tty: number;
  /** Name of the task's cgroup (a 64-hex id for Docker containers) and of its parent cgroup. */
  readonly cgroup: string;
  readonly cgroupParent: string;
}

/** A socket as the kernel held it right after accept/connect. */
export type SocketInfo =
  | { readonly family: 'inet' | 'inet6'; readonly type: number; readonly proto: number; readonly localIp: string; readonly localPort: number; readonly remoteIp: string; readonly remotePort: number }
  | { readonly family: 'unix'; readonly type: number; readonly self: string; readonly peer: string; readonly path: string };

export interface ExeInfo {
  /** Absolute path of the executable (mm->exe_file walked to the task's root). */
  readonly path: string;
  /** Superblock magic (0x794c7630 overlayfs, 0x1021994 tmpfs, ...). */
  readonly fsMagic: number;
  /** overlayfs only: the inode has an upper-layer dentry (written in the container). */
  readonly upperLayer: boolean;
  readonly mode: number;
  readonly inodeUid: number;
  readonly inodeGid: number;
  readonly ino: bigint;
  /** The dentry name (`memfd:...` for memfd executables). */
  readonly dentryName: string;
}

export interface SyscallEvent {
  readonly kind: 'syscall';
  /** `>` enter, `<` exit (Falco's evt.dir). */
  readonly dir: '>' | '<';
  readonly name: string;
  /** Monotonic ns (bpf_ktime_get_ns). */
  readonly mono: bigint;
  readonly ctx: TaskContext;
  /** Enter: the arguments as printed by the probe (strings, decoded per syscall by the model). */
  readonly args: readonly string[];
  /** Exit: the return value. */
  readonly ret: number | null;
  /** accept/accept4/connect exit: the socket's addresses. */
  readonly socket?: SocketInfo;
  /** setsockopt exit: instructions of the filter attached to the socket (the classic filter's when kept). */
  readonly filterLen?: number;
  /** open/openat/openat2 exit: the new file's f_mode (FMODE_CREATED 0x100000: the open created it). */
  readonly fileMode?: number;
  /** execve/execveat exit: the new image. */
  readonly argv?: readonly string[];
  readonly exe?: ExeInfo;
  readonly cwd?: string;
}

export interface ForkEvent {
  readonly kind: 'fork';
  readonly mono: bigint;
  /** Creator (thread and process). */
  readonly tid: number;
  readonly pid: number;
  readonly childTid: number;
  readonly cloneFlags: bigint;
  readonly childComm: string;
}

export interface TaskExitEvent {
  readonly kind: 'exit';
  readonly mono: bigint;
  readonly tid: number;
  readonly pid: number;
}

export type KernelEvent = SyscallEvent | ForkEvent | TaskExitEvent;

export const CLONE_THREAD = 0x10000n;

/** A process that existed before the observer started (read from /proc, as Falco's startup scan). */
export interface ProcSnapshot {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  readonly exe: string;
  readonly argv: readonly string[];
  readonly cwd: string;
  readonly sid: number;
  readonly uid: number;
  readonly vpid: number;
  readonly cgroup: string;
  readonly cgroupParent: string;
  /** fd number → what it is (`file:/path`, `pipe`, `unix`, `ipv4`, `ipv6`, `netlink`, `other`). */
  readonly fds: ReadonlyMap<number, string>;
}

export interface Trace {
  readonly events: readonly KernelEvent[];
  /** realtime ns = mono + clockOffset. */
  readonly clockOffset: bigint;
  /** Processes known at start (seeds and their ancestors). */
  readonly snapshot: readonly ProcSnapshot[];
  /** Records the kernel dropped (perf buffer full) and why the program stopped. */
  readonly lost: number;
  readonly stopReason: string;
  /** Lines that were not records (bpftrace warnings), for diagnostics. */
  readonly noise: readonly string[];
}
