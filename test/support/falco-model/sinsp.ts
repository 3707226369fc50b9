/**
 * A model of libsinsp (libs 0.20, the state behind Falco 0.40's fields) driven by what the kernel
 * observer saw (test/support/kernel). It replays the trace in kernel order and, for each syscall
 * enter and exit event (and the `container` event of each new container), hands a FalcoEvent whose
 * `field()` answers Falco's filter fields as libsinsp would at that moment.
 *
 * What it keeps, as libsinsp does:
 *  - per process: comm (proc.name; set at clone and exec, NOT changed by prctl(PR_SET_NAME)),
 *    argv (proc.exe = argv[0], proc.args = argv[1..], proc.cmdline = comm + args), the executable
 *    path (proc.exepath, the kernel's path of the exe file), exe flags (writable, overlay upper or
 *    lower layer, memfd), cwd, session id (inherited, set by setsid's return: the pid in the
 *    caller's namespace, so 1 in a container), container id (from the cgroup at clone and exec:
 *    Docker's `/docker/<64 hex>` gives the 12-character container.id, else `host`);
 *  - per thread-group fd table: files (name resolved against cwd / dirfd, open flags, created),
 *    sockets (type from socket()'s domain/type/proto; tuples from accept/connect as
 *    `cip:cport->sip:sport`; server sockets `ip:port` after bind; unix sockets
 *    `<self addr>-><peer addr> <path>` with the path the server bound), pipes; dup/dup2/dup3/
 *    fcntl(F_DUPFD) copies, close, and O_CLOEXEC fds dropped at exec;
 *  - lineage from the kernel's parent (proc.pname, proc.aname[n], proc.apid[n], ...), including
 *    processes that existed before the trace (read from /proc, like Falco's start-up scan);
 *  - container metadata (container.*) from the Docker Engine API, visible from the time the
 *    lookup would have answered (the container's `start`); before that the id only.
 * Exit events expose the enter event's arguments too (evt.arg.domain on socket's exit, as the
 * recordings show). Not modelled (the field has no value): k8s.*, proc.env, fd.dev/ino, dns names,
 * exe inode times; user names come from the host's /etc/passwd.
 */
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { posix } from 'node:path';
import type { ForkEvent, ProcSnapshot, SocketInfo, SyscallEvent, TaskContext, Trace } from '../kernel/events.js';
import { CLONE_THREAD } from '../kernel/events.js';
import { unescapeBuf } from '../kernel/observer.js';
import type { ContainerDirectory, ContainerMeta } from './containers.js';
import {
  BPF_COMMANDS,
  CLONE_FLAGS,
  EXECVE_FLAGS,
  FILE_FLAGS,
  MOUNT_FLAGS,
  PRCTL_OPTIONS,
  SOCKET_FAMILIES,
  SOCKOPT_LEVELS,
  SOCKOPT_NAMES,
  capabilitiesString,
  cloneFlagsToPpm,
  decodeSockaddr,
  flagsString,
  openFlagsToPpm,
  resString,
} from './decoders.js';
import { globMatch, inCidr, type FieldRef, type FieldValue, type Scalar } from './evaluate.js';

// ------------------------------------------------------------------------------------------------
// State
// ------------------------------------------------------------------------------------------------

type FdKind = 'file' | 'directory' | 'ipv4' | 'ipv6' | 'ipv4srv' | 'ipv6srv' | 'unix' | 'pipe' | 'netlink' | 'unknown';

interface Fd {
  readonly kind: FdKind;
  readonly name: string;
  readonly cloexec: boolean;
  /** Sockets. */
  readonly l4?: 'tcp' | 'udp' | 'icmp' | 'raw';
  readonly role?: 'client' | 'server';
  readonly cip?: string;
  readonly cport?: number;
  readonly sip?: string;
  readonly sport?: number;
  readonly connected?: boolean;
  /** Files: PPM open flags. */
  readonly openFlags?: number;
}

interface Proc {
  pid: number;
  ppid: number;
  vpid: number;
  sid: number;
  comm: string;
  argv: string[];
  exepath: string;
  exeWritable: boolean;
  exeUpper: boolean;
  exeLower: boolean;
  exeMemfd: boolean;
  cwd: string;
  uid: number;
  gid: number;
  loginuid: number;
  tty: number;
  cap: bigint;
  /** 64-hex id, or '' for the host. */
  container: string;
  cloneTs: bigint;
  fds: Map<number, Fd>;
  /** Last context seen (cgroup at the latest event, for children created next). */
  lastCtx: TaskContext | null;
  alive: boolean;
}

export interface FalcoEvent {
  readonly num: number;
  /** evt.type (`container` for the container event). */
  readonly type: string;
  readonly dir: '>' | '<';
  readonly timeNs: bigint;
  readonly tid: number;
  readonly pid: number;
  /** A field's value at this event (undefined: no value). Valid during the callback only. */
  field(ref: FieldRef): FieldValue;
  /** The kernel event behind it (null for the container event). */
  readonly kernel: SyscallEvent | null;
}

export interface ModelOptions {
  readonly containers: ContainerDirectory;
  /** Addresses of this machine (fd.lport / fd.rport decide the local side with them). */
  readonly localIps?: ReadonlySet<string>;
  /** uid → user name (default: the host's /etc/passwd). */
  readonly users?: ReadonlyMap<number, string>;
  readonly groups?: ReadonlyMap<number, string>;
  /** When a container's metadata time is unknown: first event + this (ns). */
  readonly metadataDelayNs?: bigint;
}

interface Param {
  readonly name: string;
  /** evt.arg.<name> text. */
  readonly text: string;
  /** The raw number, when the parameter is numeric (evt.rawarg, evt.args). */
  readonly raw?: number | bigint;
  /** evt.args form when it differs (`17(AF_PACKET)`). */
  readonly argsText?: string;
}

function readNameFile(path: string, idCol: number): Map<number, string> {
  const out = new Map<number, string>();
  try {
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      const cols = line.split(':');
      if (cols.length > idCol && cols[0]) out.set(Number(cols[idCol]), cols[0]);
    }
  } catch {
    // none
  }
  return out;
}

export function hostAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.add(a.address);
  return out;
}

const DOCKER_ID = /^[0-9a-f]{64}$/;

function containerIdOf(ctx: TaskContext): string {
  if (DOCKER_ID.test(ctx.cgroup)) return ctx.cgroup;
  const m = /^docker-([0-9a-f]{64})\.scope$/.exec(ctx.cgroup);
  return m ? (m[1] as string) : '';
}

function fdTypeString(k: FdKind): string {
  switch (k) {
    case 'file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'ipv4':
    case 'ipv4srv':
      return 'ipv4';
    case 'ipv6':
    case 'ipv6srv':
      return 'ipv6';
    case 'unix':
      return 'unix';
    case 'pipe':
      return 'pipe';
    case 'netlink':
      return 'netlink';
    default:
      return '<NA>';
  }
}

function fdTypeChar(k: FdKind): string {
  switch (k) {
    case 'file':
      return 'f';
    case 'directory':
      return 'd';
    case 'ipv4':
    case 'ipv4srv':
      return '4';
    case 'ipv6':
    case 'ipv6srv':
      return '6';
    case 'unix':
      return 'u';
    case 'pipe':
      return 'p';
    case 'netlink':
      return 'n';
    default:
      return 'o';
  }
}

function l4Of(type: number, proto: number): Fd['l4'] {
  const t = type & 0xf;
  if (t === 3) return 'raw';
  if (t === 1) return 'tcp';
  if (t === 2) return proto === 1 || proto === 58 ? 'icmp' : 'udp';
  return undefined;
}

function snapshotFd(desc: string): Fd {
  if (desc.startsWith('file:')) return { kind: 'file', name: desc.slice(5), cloexec: false };
  switch (desc) {
    case 'pipe':
      return { kind: 'pipe', name: '', cloexec: false };
    case 'unix':
      return { kind: 'unix', name: '', cloexec: false };
    case 'ipv4':
      return { kind: 'ipv4', name: '', cloexec: false };
    case 'ipv6':
      return { kind: 'ipv6', name: '', cloexec: false };
    case 'netlink':
      return { kind: 'netlink', name: '', cloexec: false };
    default:
      return { kind: 'unknown', name: '', cloexec: false };
  }
}

function fromSnapshot(s: ProcSnapshot): Proc {
  return {
    pid: s.pid,
    ppid: s.ppid,
    vpid: s.vpid,
    sid: s.sid,
    comm: s.comm,
    argv: [...s.argv],
    exepath: s.exe,
    exeWritable: false,
    exeUpper: false,
    exeLower: false,
    exeMemfd: s.exe.startsWith('/memfd:'),
    cwd: s.cwd,
    uid: s.uid,
    gid: 0,
    loginuid: 4294967295,
    tty: 0,
    cap: 0n,
    container: DOCKER_ID.test(s.cgroup) ? s.cgroup : '',
    cloneTs: 0n,
    fds: new Map([...s.fds].map(([n, d]) => [n, snapshotFd(d)])),
    lastCtx: null,
    alive: true,
  };
}

/** A path as libsinsp builds fd.name for open/openat: absolute, or joined to the cwd/dirfd, normalized. */
function resolvePath(name: string, base: string): string {
  if (name === '') return base;
  const joined = name.startsWith('/') ? name : `${base.endsWith('/') ? base : `${base}/`}${name}`;
  const norm = posix.normalize(joined);
  return norm.length > 1 && norm.endsWith('/') ? norm.slice(0, -1) : norm;
}

// ------------------------------------------------------------------------------------------------
// The replay
// ------------------------------------------------------------------------------------------------

export function replay(trace: Trace, opts: ModelOptions, onEvent: (e: FalcoEvent) => void): void {
  new SinspModel(trace, opts, onEvent).run();
}

interface PendingContainer {
  readonly id: string;
  readonly at: bigint;
}

class SinspModel {
  private readonly procs = new Map<number, Proc>();
  /** tid → tgid */
  private readonly threads = new Map<number, number>();
  private readonly enters = new Map<number, SyscallEvent>();
  private readonly seenContainers = new Map<string, bigint>();
  private readonly pendingContainers: PendingContainer[] = [];
  private readonly emittedContainers = new Set<string>();
  private readonly users: ReadonlyMap<number, string>;
  private readonly groups: ReadonlyMap<number, string>;
  private readonly localIps: ReadonlySet<string>;
  private num = 0;
  private now = 0n;

  constructor(
    private readonly trace: Trace,
    private readonly opts: ModelOptions,
    private readonly onEvent: (e: FalcoEvent) => void,
  ) {
    this.users = opts.users ?? readNameFile('/etc/passwd', 2);
    this.groups = opts.groups ?? readNameFile('/etc/group', 2);
    this.localIps = opts.localIps ?? hostAddresses();
    for (const s of trace.snapshot) this.procs.set(s.pid, fromSnapshot(s));
  }

  run(): void {
    for (const ev of this.trace.events) {
      const t = ev.mono + this.trace.clockOffset;
      this.flushContainers(t);
      this.now = t;
      if (ev.kind === 'fork') this.onFork(ev, t);
      else if (ev.kind === 'exit') this.onTaskExit(ev.tid, ev.pid);
      else this.onSyscall(ev, t);
    }
    this.flushContainers(null);
  }

  // --- processes -------------------------------------------------------------------------------

  private procOf(pid: number): Proc | undefined {
    return this.procs.get(pid);
  }

  private ensureProc(ctx: TaskContext): Proc {
    let p = this.procs.get(ctx.pid);
    if (!p) {
      p = {
        pid: ctx.pid,
        ppid: ctx.ppid,
        vpid: ctx.vpid,
        sid: ctx.sid,
        comm: ctx.comm,
        argv: [ctx.comm],
        exepath: '',
        exeWritable: false,
        exeUpper: false,
        exeLower: false,
        exeMemfd: false,
        cwd: '/',
        uid: ctx.euid,
        gid: ctx.gid,
        loginuid: ctx.loginuid,
        tty: ctx.tty,
        cap: ctx.capEffective,
        container: containerIdOf(ctx),
        cloneTs: this.now,
        fds: new Map(),
        lastCtx: null,
        alive: true,
      };
      this.procs.set(ctx.pid, p);
    }
    this.threads.set(ctx.tid, ctx.pid);
    return p;
  }

  private onFork(ev: ForkEvent, t: bigint): void {
    const parent = this.procs.get(ev.pid);
    if ((ev.cloneFlags & CLONE_THREAD) !== 0n) {
      this.threads.set(ev.childTid, ev.pid);
      return;
    }
    const ctx = parent?.lastCtx;
    const child: Proc = {
      pid: ev.childTid,
      ppid: ev.pid,
      vpid: ev.childTid,
      sid: parent?.sid ?? 0,
      comm: ev.childComm,
      argv: parent ? [...parent.argv] : [ev.childComm],
      exepath: parent?.exepath ?? '',
      exeWritable: parent?.exeWritable ?? false,
      exeUpper: parent?.exeUpper ?? false,
      exeLower: parent?.exeLower ?? false,
      exeMemfd: parent?.exeMemfd ?? false,
      cwd: parent?.cwd ?? '/',
      uid: parent?.uid ?? 0,
      gid: parent?.gid ?? 0,
      loginuid: parent?.loginuid ?? 4294967295,
      tty: parent?.tty ?? 0,
      cap: parent?.cap ?? 0n,
      container: ctx ? containerIdOf(ctx) : (parent?.container ?? ''),
      cloneTs: t,
      fds: new Map(parent?.fds ?? []),
      lastCtx: null,
      alive: true,
    };
    this.procs.set(child.pid, child);
    this.threads.set(child.pid, child.pid);
  }

  private onTaskExit(tid: number, pid: number): void {
    this.threads.delete(tid);
    if (tid === pid) {
      const p = this.procs.get(pid);
      if (p) p.alive = false;
    }
    this.enters.delete(tid);
  }

  // --- containers ------------------------------------------------------------------------------

  private noteContainer(id: string, t: bigint): void {
    if (id === '' || this.seenContainers.has(id)) return;
    this.seenContainers.set(id, t);
    const meta = this.opts.containers.get(id);
    if (!meta) return;
    const avail = meta.availableAt ?? t + (this.opts.metadataDelayNs ?? 200_000_000n);
    this.pendingContainers.push({ id, at: avail > t ? avail : t + 1n });
    this.pendingContainers.sort((a, b) => (a.at < b.at ? -1 : 1));
  }

  private flushContainers(until: bigint | null): void {
    while (this.pendingContainers.length > 0) {
      const next = this.pendingContainers[0] as PendingContainer;
      if (until !== null && next.at > until) return;
      this.pendingContainers.shift();
      this.emittedContainers.add(next.id);
      this.now = next.at;
      this.emitContainerEvent(next.id, next.at);
    }
  }

  private meta(id: string): ContainerMeta | undefined {
    if (id === '' || !this.emittedContainers.has(id)) return undefined;
    return this.opts.containers.get(id);
  }

  // --- syscalls --------------------------------------------------------------------------------

  private onSyscall(ev: SyscallEvent, t: bigint): void {
    const p = this.ensureProc(ev.ctx);
    p.ppid = ev.ctx.ppid;
    p.vpid = ev.ctx.vpid;
    p.uid = ev.ctx.euid;
    p.gid = ev.ctx.gid;
    p.loginuid = ev.ctx.loginuid;
    p.tty = ev.ctx.tty;
    p.cap = ev.ctx.capEffective;
    p.lastCtx = ev.ctx;
    if (ev.dir === '>') {
      this.enters.set(ev.ctx.tid, ev);
      this.noteContainer(p.container, t);
      this.emit(ev, p, t, this.enterParams(ev, p), this.enterFd(ev, p), null);
      return;
    }
    const enter = this.enters.get(ev.ctx.tid);
    this.enters.delete(ev.ctx.tid);
    // A successful execveat leaves through the execve exit tracepoint: it is still an execveat.
    const exit = enter?.name === 'execveat' && ev.name === 'execve' ? { ...ev, name: 'execveat' } : ev;
    const matched = enter && enter.name === exit.name ? enter : undefined;
    const outcome = this.applyExit(exit, matched, p);
    this.noteContainer(p.container, t);
    this.emit(exit, p, t, outcome.params, outcome.fd, outcome.fdNum);
    outcome.after?.();
  }

  private fdOf(p: Proc, n: number): Fd | undefined {
    return p.fds.get(n);
  }

  private enterFd(ev: SyscallEvent, p: Proc): { fd: Fd | undefined; num: number } | undefined {
    const a = ev.args;
    switch (ev.name) {
      case 'bind':
      case 'connect':
      case 'listen':
      case 'accept':
      case 'accept4':
      case 'setsockopt':
      case 'close':
      case 'fchdir':
      case 'setns':
      case 'fcntl':
      case 'dup':
      case 'dup2':
      case 'dup3': {
        const n = Number(a[0]);
        return { fd: this.fdOf(p, n), num: n };
      }
      case 'finit_module': {
        const n = Number(a[0]);
        return { fd: this.fdOf(p, n), num: n };
      }
      default:
        return undefined;
    }
  }

  private enterParams(ev: SyscallEvent, p: Proc): Param[] {
    const a = ev.args;
    const num = (i: number): number => Number(a[i] ?? 0);
    const fdParam = (name: string, n: number): Param => ({ name, text: String(n), raw: n, argsText: this.fdArgsText(p, n) });
    switch (ev.name) {
      case 'socket':
        return [
          { name: 'domain', text: SOCKET_FAMILIES[num(0)] ?? String(num(0)), raw: num(0), argsText: `${num(0)}(${SOCKET_FAMILIES[num(0)] ?? ''})` },
          { name: 'type', text: String(num(1)), raw: num(1) },
          { name: 'proto', text: String(num(2)), raw: num(2) },
        ];
      case 'bind':
        return [fdParam('fd', num(0))];
      case 'connect':
        return [fdParam('fd', num(0)), { name: 'addr', text: this.sockaddrText(a[1] ?? '', a[2] ?? '') }];
      case 'listen':
        return [fdParam('fd', num(0)), { name: 'backlog', text: String(num(1)), raw: num(1) }];
      case 'accept4':
        return [{ name: 'flags', text: String(num(1)), raw: num(1) }];
      case 'open':
        return [
          { name: 'name', text: a[0] ?? '' },
          { name: 'flags', ...this.openFlagsParam(num(1), false) },
          { name: 'mode', text: `0${num(2).toString(8)}`, raw: num(2) },
        ];
      case 'openat':
      case 'openat2':
        return [
          { name: 'dirfd', text: num(0) === -100 ? '-100' : String(num(0)), raw: num(0), argsText: num(0) === -100 ? '-100(AT_FDCWD)' : this.fdArgsText(p, num(0)) },
          { name: 'name', text: a[1] ?? '' },
          { name: 'flags', ...this.openFlagsParam(num(2), false) },
          { name: 'mode', text: `0${num(3).toString(8)}`, raw: num(3) },
        ];
      case 'close':
      case 'fchdir':
      case 'dup':
        return [fdParam('fd', num(0))];
      case 'dup2':
      case 'dup3':
        return [fdParam('oldfd', num(0))];
      case 'fcntl':
        return [fdParam('fd', num(0)), { name: 'cmd', text: String(num(1)), raw: num(1) }];
      case 'unshare': {
        const f = cloneFlagsToPpm(num(0));
        return [{ name: 'flags', text: flagsString(CLONE_FLAGS, f), raw: f }];
      }
      case 'setns': {
        const f = cloneFlagsToPpm(num(1));
        return [fdParam('fd', num(0)), { name: 'nstype', text: flagsString(CLONE_FLAGS, f), raw: f }];
      }
      case 'mount':
        return [{ name: 'flags', text: flagsString(MOUNT_FLAGS, num(0)), raw: num(0) }];
      case 'umount':
        return [{ name: 'flags', text: String(num(1)), raw: num(1) }];
      case 'execve':
        return [{ name: 'filename', text: a[0] ?? '' }];
      case 'execveat':
        return [fdParam('dirfd', num(0)), { name: 'pathname', text: a[1] ?? '' }, { name: 'flags', text: String(num(2)), raw: num(2) }];
      case 'bpf':
        return [{ name: 'cmd', text: String(num(0)), raw: num(0) }];
      case 'init_module':
        return [];
      case 'finit_module':
        return [fdParam('fd', num(0))];
      default:
        return [];
    }
  }

  private openFlagsParam(linuxFlags: number, created: boolean): { text: string; raw: number; argsText: string } {
    const ppm = openFlagsToPpm(linuxFlags, created);
    const text = flagsString(FILE_FLAGS, ppm);
    return { text, raw: ppm, argsText: `${ppm}(${text})` };
  }

  private fdArgsText(p: Proc, n: number): string {
    const fd = p.fds.get(n);
    return fd ? `${n}(<${fdTypeChar(fd.kind)}>${fd.name})` : String(n);
  }

  private sockaddrText(rawHex: string, path: string): string {
    const sa = decodeSockaddr(unescapeBuf(rawHex), path);
    if (sa.family === 2 || sa.family === 10) return `${sa.ip}:${sa.port}`;
    if (sa.family === 1) return sa.path ?? '';
    return '';
  }

  /** Apply an exit event to the state; returns its parameters and fd, and what to do after the rules ran. */
  private applyExit(ev: SyscallEvent, enter: SyscallEvent | undefined, p: Proc): { params: Param[]; fd: { fd: Fd | undefined; num: number } | undefined; fdNum: number | null; after?: () => void } {
    const ret = ev.ret ?? 0;
    const ea = enter?.args ?? [];
    const num = (i: number): number => Number(ea[i] ?? 0);
    const res: Param = { name: 'res', text: String(ret), raw: ret, argsText: ret < 0 ? `${ret}(${resString(ret)})` : String(ret) };
    const enterParams = enter ? this.enterParams(enter, p) : [];
    const merge = (exitParams: Param[]): Param[] => {
      const names = new Set(exitParams.map((x) => x.name));
      return [...exitParams, ...enterParams.filter((x) => !names.has(x.name))];
    };
    const setFd = (n: number, fd: Fd): void => {
      p.fds.set(n, fd);
    };
    switch (ev.name) {
      case 'socket': {
        if (ret >= 0 && enter) {
          const domain = num(0);
          const type = num(1);
          const proto = num(2);
          const cloexec = (type & 0x80000) !== 0;
          const kind: FdKind = domain === 2 ? 'ipv4' : domain === 10 ? 'ipv6' : domain === 1 ? 'unix' : domain === 16 ? 'netlink' : 'unknown';
          setFd(ret, { kind, name: '', cloexec, ...(kind === 'ipv4' || kind === 'ipv6' ? { l4: l4Of(type, proto) } : {}) });
        }
        return { params: merge([{ name: 'fd', text: String(ret), raw: ret }]), fd: { fd: this.fdOf(p, ret), num: ret }, fdNum: ret };
      }
      case 'setsockopt': {
        const fdn = num(0);
        const level = num(1);
        const opt = num(2);
        const levelName = SOCKOPT_LEVELS[level] ?? 'UNKNOWN';
        const optName = level === 1 ? (SOCKOPT_NAMES[opt] ?? String(opt)) : 'UNKNOWN';
        // setsockopt's enter event has no fd parameter, so libsinsp has no fd for the exit event
        // (fd.num -1, fd.typechar 'o', fd.l4proto null: what the recordings show on packet sockets).
        return {
          params: [res, { name: 'fd', text: String(fdn), raw: fdn, argsText: this.fdArgsText(p, fdn) }, { name: 'level', text: levelName, raw: level }, { name: 'optname', text: optName, raw: opt }, { name: 'val', text: '' }, { name: 'optlen', text: String(num(3)), raw: num(3) }],
          fd: undefined,
          fdNum: null,
        };
      }
      case 'bind': {
        const fdn = num(0);
        const addr = enter ? this.sockaddrText(ea[1] ?? '', ea[2] ?? '') : '';
        if (ret === 0 && enter) {
          const sa = decodeSockaddr(unescapeBuf(ea[1] ?? ''), ea[2] ?? '');
          const old = p.fds.get(fdn);
          if ((sa.family === 2 || sa.family === 10) && old) {
            setFd(fdn, { ...old, kind: sa.family === 2 ? 'ipv4srv' : 'ipv6srv', name: `${sa.ip}:${sa.port}`, sip: sa.ip as string, sport: sa.port as number, role: 'server' });
          } else if (sa.family === 1 && old) setFd(fdn, { ...old, name: sa.path ?? '' });
        }
        return { params: merge([res, { name: 'addr', text: addr }, { name: 'fd', text: String(fdn), raw: fdn }]), fd: { fd: this.fdOf(p, fdn), num: fdn }, fdNum: fdn };
      }
      case 'listen': {
        const fdn = num(0);
        return { params: merge([res]), fd: { fd: this.fdOf(p, fdn), num: fdn }, fdNum: fdn };
      }
      case 'accept':
      case 'accept4': {
        let tuple = '';
        if (ret >= 0 && ev.socket) {
          const fd = this.socketFd(ev.socket, 'server', ev.name === 'accept4' && (num(1) & 0x80000) !== 0);
          tuple = fd.name;
          setFd(ret, fd);
        }
        return {
          params: merge([{ name: 'fd', text: String(ret), raw: ret }, { name: 'tuple', text: tuple }, { name: 'queuepct', text: '0', raw: 0 }]),
          fd: { fd: this.fdOf(p, ret), num: ret },
          fdNum: ret,
        };
      }
      case 'connect': {
        const fdn = num(0);
        let tuple = '';
        const old = p.fds.get(fdn);
        if ((ret >= 0 || ret === -115) && ev.socket && old) {
          const fd = { ...this.socketFd(ev.socket, 'client', old.cloexec), ...(old.l4 && !ev.socket ? { l4: old.l4 } : {}) };
          tuple = fd.name;
          setFd(fdn, fd);
        } else if (ev.socket) tuple = this.socketFd(ev.socket, 'client', false).name;
        return { params: merge([res, { name: 'tuple', text: tuple }, { name: 'fd', text: String(fdn), raw: fdn }]), fd: { fd: ret < 0 && ret !== -115 ? undefined : this.fdOf(p, fdn), num: fdn }, fdNum: fdn };
      }
      case 'prctl': {
        const opt = num(0);
        const optName = PRCTL_OPTIONS[opt] ?? String(opt);
        // The name as the kernel took it: after a successful PR_SET_NAME / PR_GET_NAME the task's comm
        // is that name (a fresh clone child's stack page may not be readable from the enter probe).
        const arg2Str = opt === 15 || opt === 16 ? (ret === 0 ? ev.ctx.comm : (ea[2] ?? '')) : '';
        return {
          params: [res, { name: 'option', text: optName, raw: opt, argsText: `${opt}(${optName})` }, { name: 'arg2_str', text: arg2Str }, { name: 'arg2_int', text: opt === 15 || opt === 16 ? '0' : String(num(1)), raw: opt === 15 || opt === 16 ? 0 : num(1) }],
          fd: undefined,
          fdNum: null,
        };
      }
      case 'open':
      case 'openat':
      case 'openat2': {
        const at = ev.name !== 'open';
        const name = (at ? ea[1] : ea[0]) ?? '';
        const flags = num(at ? 2 : 1);
        const created = ((ev.fileMode ?? 0) & 0x100000) !== 0;
        const dirfd = at ? num(0) : -100;
        const base = dirfd === -100 ? p.cwd : (p.fds.get(dirfd)?.name ?? p.cwd);
        const path = resolvePath(name, base);
        const of = this.openFlagsParam(flags, created);
        if (ret >= 0) setFd(ret, { kind: (flags & 0o200000) !== 0 ? 'directory' : 'file', name: path, cloexec: (flags & 0o2000000) !== 0, openFlags: of.raw });
        const params: Param[] = [{ name: 'fd', text: String(ret), raw: ret }];
        if (at) params.push({ name: 'dirfd', text: String(dirfd), raw: dirfd, argsText: dirfd === -100 ? '-100(AT_FDCWD)' : String(dirfd) });
        params.push({ name: 'name', text: `${name}`, argsText: `${name}(${path})` }, { name: 'flags', ...of }, { name: 'mode', text: `0${num(at ? 3 : 2).toString(8)}`, raw: num(at ? 3 : 2) });
        return { params, fd: { fd: ret >= 0 ? this.fdOf(p, ret) : undefined, num: ret }, fdNum: ret };
      }
      case 'close': {
        const fdn = num(0);
        const fd = this.fdOf(p, fdn);
        return { params: [res], fd: { fd, num: fdn }, fdNum: fdn, after: () => void (ret === 0 && p.fds.delete(fdn)) };
      }
      case 'dup':
      case 'dup2':
      case 'dup3':
      case 'fcntl': {
        const oldfd = num(0);
        const isDup = ev.name !== 'fcntl' || num(1) === 0 || num(1) === 1030;
        if (ev.name === 'fcntl' && num(1) === 2 && ret >= 0) {
          const fd = p.fds.get(oldfd);
          if (fd) setFd(oldfd, { ...fd, cloexec: (Number(ea[2] ?? 0) & 1) !== 0 });
        }
        if (isDup && ret >= 0) {
          const src = p.fds.get(oldfd);
          const cloexec = ev.name === 'dup3' ? (num(2) & 0x80000) !== 0 : ev.name === 'fcntl' ? num(1) === 1030 : false;
          if (src && ret !== oldfd) setFd(ret, { ...src, cloexec });
          else if (!src) p.fds.delete(ret);
        }
        if (ev.name === 'fcntl') return { params: merge([res]), fd: { fd: this.fdOf(p, oldfd), num: oldfd }, fdNum: oldfd };
        const params: Param[] = [res, { name: 'oldfd', text: String(oldfd), raw: oldfd }];
        if (ev.name !== 'dup') params.push({ name: 'newfd', text: String(num(1)), raw: num(1) });
        if (ev.name === 'dup3') params.push({ name: 'flags', text: String(num(2)), raw: num(2) });
        return { params, fd: { fd: ret >= 0 ? this.fdOf(p, ret) : undefined, num: ret }, fdNum: ret };
      }
      case 'pipe':
      case 'pipe2': {
        const a = ev.args;
        if (ret === 0) {
          const cloexec = ev.name === 'pipe2' && (num(0) & 0x80000) !== 0;
          setFd(Number(a[0]), { kind: 'pipe', name: '', cloexec });
          setFd(Number(a[1]), { kind: 'pipe', name: '', cloexec });
        }
        return { params: [res, { name: 'fd1', text: a[0] ?? '' }, { name: 'fd2', text: a[1] ?? '' }], fd: undefined, fdNum: null };
      }
      case 'setsid':
        if (ret >= 0) p.sid = ret;
        return { params: [res], fd: undefined, fdNum: null };
      case 'chdir': {
        if (ret === 0) p.cwd = resolvePath(ea[0] ?? '', p.cwd);
        return { params: [res, { name: 'path', text: ea[0] ?? '' }], fd: undefined, fdNum: null };
      }
      case 'fchdir': {
        const fd = p.fds.get(num(0));
        if (ret === 0 && fd) p.cwd = fd.name;
        return { params: merge([res]), fd: undefined, fdNum: null };
      }
      case 'unshare':
      case 'setns':
        return { params: merge([res]), fd: undefined, fdNum: null };
      case 'mount':
        return { params: [res, { name: 'dev', text: ea[1] ?? '' }, { name: 'dir', text: ea[2] ?? '' }, { name: 'type', text: ea[3] ?? '' }, ...enterParams], fd: undefined, fdNum: null };
      case 'umount':
        return { params: [res, { name: 'name', text: ea[0] ?? '' }, ...enterParams], fd: undefined, fdNum: null };
      case 'bpf': {
        const cmd = num(0);
        return { params: [res, { name: 'cmd', text: BPF_COMMANDS[cmd] ?? String(cmd), raw: cmd }], fd: undefined, fdNum: null };
      }
      case 'init_module':
        return { params: [res, { name: 'length', text: ea[0] ?? '0' }, { name: 'uargs', text: ea[1] ?? '' }], fd: undefined, fdNum: null };
      case 'finit_module': {
        const fdn = num(0);
        return { params: [res, { name: 'fd', text: String(fdn), raw: fdn }, { name: 'uargs', text: ea[1] ?? '' }, { name: 'flags', text: ea[2] ?? '0' }], fd: { fd: this.fdOf(p, fdn), num: fdn }, fdNum: fdn };
      }
      case 'execve':
      case 'execveat': {
        if (ret === 0) {
          p.comm = ev.ctx.comm;
          p.argv = [...(ev.argv ?? [ev.ctx.comm])];
          // The kernel's path of the exe file; when it has none (a detached bind mount, as runc
          // 1.1's re-exec of itself), libsinsp falls back to argv[0].
          const path = (ev.exe?.path ?? '').replace(/ \(deleted\)$/, '');
          p.exepath = path === '' || path === '/' ? (p.argv[0] ?? '') : path;
          const exe = ev.exe;
          p.exeMemfd = exe !== undefined && exe.dentryName.startsWith('memfd:');
          p.exeUpper = exe !== undefined && exe.fsMagic === 0x794c7630 && exe.upperLayer;
          p.exeLower = exe !== undefined && exe.fsMagic === 0x794c7630 && !exe.upperLayer;
          p.exeWritable =
            exe !== undefined &&
            (ev.ctx.euid === 0 || (exe.inodeUid === ev.ctx.euid && (exe.mode & 0o200) !== 0) || (exe.inodeGid === ev.ctx.gid && (exe.mode & 0o20) !== 0) || (exe.mode & 0o2) !== 0);
          if (ev.cwd !== undefined) p.cwd = ev.cwd;
          p.container = containerIdOf(ev.ctx);
          for (const [n, fd] of [...p.fds]) if (fd.cloexec) p.fds.delete(n);
        }
        const flags = (p.exeWritable ? 1 : 0) | (p.exeUpper ? 2 : 0) | (p.exeMemfd ? 4 : 0) | (p.exeLower ? 8 : 0);
        const params: Param[] = [res];
        if (ret === 0) {
          params.push(
            { name: 'exe', text: p.argv[0] ?? '' },
            { name: 'args', text: p.argv.slice(1).join(' ') },
            { name: 'tid', text: String(ev.ctx.tid), raw: ev.ctx.tid },
            { name: 'pid', text: String(ev.ctx.pid), raw: ev.ctx.pid },
            { name: 'ptid', text: String(ev.ctx.ppid), raw: ev.ctx.ppid },
            { name: 'cwd', text: p.cwd },
            { name: 'comm', text: p.comm },
            { name: 'tty', text: String(p.tty), raw: p.tty },
            { name: 'loginuid', text: String(p.loginuid), raw: p.loginuid },
            { name: 'flags', text: flagsString(EXECVE_FLAGS, flags), raw: flags, argsText: `${flags}(${flagsString(EXECVE_FLAGS, flags)})` },
            { name: 'uid', text: String(ev.ctx.euid), raw: ev.ctx.euid },
            { name: 'trusted_exepath', text: p.exepath },
          );
        }
        return { params: merge(params), fd: undefined, fdNum: null };
      }
      default:
        return { params: merge([res]), fd: undefined, fdNum: null };
    }
  }

  private socketFd(s: SocketInfo, role: 'client' | 'server', cloexec: boolean): Fd {
    if (s.family === 'unix') {
      return { kind: 'unix', name: `${s.self}->${s.peer} ${s.path}`, cloexec, role };
    }
    const kind: FdKind = s.family === 'inet' ? 'ipv4' : 'ipv6';
    const l4 = l4Of(s.type, s.proto);
    // The client is the connecting side: local for connect, remote for accept.
    const [cip, cport, sip, sport] = role === 'client' ? [s.localIp, s.localPort, s.remoteIp, s.remotePort] : [s.remoteIp, s.remotePort, s.localIp, s.localPort];
    return { kind, name: `${cip}:${cport}->${sip}:${sport}`, cloexec, role, ...(l4 ? { l4 } : {}), cip, cport, sip, sport, connected: true };
  }

  // --- emitting --------------------------------------------------------------------------------

  private emit(ev: SyscallEvent, p: Proc, t: bigint, params: Param[], fd: { fd: Fd | undefined; num: number } | undefined, _fdNum: number | null): void {
    const num = ++this.num;
    const type = ev.name === 'umount' ? 'umount2' : ev.name;
    const field = (ref: FieldRef): FieldValue => this.field(ref, { type, dir: ev.dir, num, t, ev, p, params, fd });
    const event: FalcoEvent = { num, type, dir: ev.dir, timeNs: t, tid: ev.ctx.tid, pid: ev.ctx.pid, kernel: ev, field };
    this.onEvent(event);
  }

  private emitContainerEvent(id: string, t: bigint): void {
    const num = ++this.num;
    const fake: Proc = {
      pid: -1,
      ppid: 0,
      vpid: -1,
      sid: -1,
      comm: `container:${id.slice(0, 12)}`,
      argv: [`container:${id.slice(0, 12)}`],
      exepath: '',
      exeWritable: false,
      exeUpper: false,
      exeLower: false,
      exeMemfd: false,
      cwd: '',
      uid: 4294967295,
      gid: 4294967295,
      loginuid: 4294967295,
      tty: 0,
      cap: 0n,
      container: id,
      cloneTs: t,
      fds: new Map(),
      lastCtx: null,
      alive: true,
    };
    const field = (ref: FieldRef): FieldValue => this.field(ref, { type: 'container', dir: '>', num, t, ev: null, p: fake, params: [], fd: undefined });
    this.onEvent({ num, type: 'container', dir: '>', timeNs: t, tid: -1, pid: -1, kernel: null, field });
  }

  // --- fields ----------------------------------------------------------------------------------

  /**
   * fd.* when libsinsp has no fd for the event (extract_from_null_fd): the type character guessed
   * from the event type, and for exit events of fd-creating syscalls the name the call was given
   * (a failed open still has its path; other creators give ""). Everything else has no value.
   */
  private nullFdField(name: string, e: { type: string; dir: '>' | '<'; params: Param[]; fd: { fd: Fd | undefined; num: number } | undefined }): FieldValue {
    const creator = ['open', 'openat', 'openat2', 'creat', 'socket', 'accept', 'accept4', 'pipe', 'pipe2', 'dup', 'dup2', 'dup3', 'socketpair'].includes(e.type);
    const isOpen = ['open', 'openat', 'openat2', 'creat'].includes(e.type);
    const creatorName = (): string | undefined => {
      if (e.dir !== '<' || !creator) return undefined;
      if (!isOpen) return '';
      const n = e.params.find((x) => x.name === 'name');
      const full = n?.argsText?.match(/\((.*)\)$/)?.[1];
      return full ?? n?.text ?? '';
    };
    switch (name) {
      case 'fd.num':
        return e.fd?.num ?? -1;
      case 'fd.typechar':
        if (isOpen) return 'f';
        if (['socket', 'accept', 'accept4'].includes(e.type)) return '4';
        if (['pipe', 'pipe2'].includes(e.type)) return 'p';
        return 'o';
      case 'fd.name':
      case 'fd.nameraw':
        return creatorName();
      case 'fd.directory': {
        const n = creatorName();
        if (n === undefined || n === '') return n;
        const i = n.lastIndexOf('/');
        return i <= 0 ? '/' : n.slice(0, i);
      }
      case 'fd.filename': {
        const n = creatorName();
        if (n === undefined || !isOpen) return undefined;
        return n.slice(n.lastIndexOf('/') + 1);
      }
      case 'fd.containername': {
        const n = creatorName();
        return n === undefined ? undefined : n;
      }
      default:
        return undefined;
    }
  }

  private ancestor(p: Proc, n: number): Proc | undefined {
    let cur: Proc | undefined = p;
    for (let i = 0; i < n && cur; i++) {
      if (cur.pid === -1 || cur.ppid <= 0 || cur.ppid === cur.pid) return undefined;
      cur = this.procs.get(cur.ppid);
    }
    return cur;
  }

  private userName(uid: number): string | undefined {
    if (uid === 4294967295) return '';
    return this.users.get(uid) ?? (uid === 0 ? 'root' : '');
  }

  private isLocal(ip: string | undefined, meta: ContainerMeta | undefined): boolean {
    if (ip === undefined) return false;
    return inCidr(ip, '127.0.0.0/8') || ip === '::1' || this.localIps.has(ip) || (meta !== undefined && meta.ip === ip);
  }

  private field(ref: FieldRef, e: { type: string; dir: '>' | '<'; num: number; t: bigint; ev: SyscallEvent | null; p: Proc; params: Param[]; fd: { fd: Fd | undefined; num: number } | undefined }): FieldValue {
    const { name, arg } = ref;
    const p = e.p;
    const isContainerEvt = e.type === 'container';
    const cid = p.container;
    const meta = this.meta(cid);
    const param = (n: string): Param | undefined => e.params.find((x) => x.name === n);
    const procField = (q: Proc | undefined, what: 'name' | 'pid' | 'exe' | 'exepath' | 'cmdline'): FieldValue => {
      if (!q) return undefined;
      switch (what) {
        case 'name':
          return q.comm;
        case 'pid':
          return q.pid;
        case 'exe':
          return q.argv[0] ?? q.comm;
        case 'exepath':
          return q.exepath;
        case 'cmdline':
          return [q.comm, ...q.argv.slice(1)].join(' ');
      }
    };
    const fd = e.fd?.fd;
    if (fd === undefined && name.startsWith('fd.')) return this.nullFdField(name, e);
    const stdio = (n: number, what: 'type' | 'name'): FieldValue => {
      const f = p.fds.get(n);
      if (!f) return undefined;
      return what === 'type' ? fdTypeString(f.kind) : f.name;
    };
    if (name.startsWith('evt.arg.') || name === 'evt.arg') {
      const pname = name === 'evt.arg' ? null : name.slice('evt.arg.'.length);
      const pr = pname === null ? e.params[Number(arg)] : param(pname);
      return pr?.text;
    }
    if (name.startsWith('evt.rawarg.')) {
      const pr = param(name.slice('evt.rawarg.'.length));
      return pr?.raw ?? pr?.text;
    }
    switch (name) {
      case 'evt.num':
        return e.num;
      case 'evt.time':
        return e.t;
      case 'evt.rawtime':
        return e.t;
      case 'evt.type':
        return e.type;
      case 'evt.dir':
        return e.dir;
      case 'evt.source':
        return 'syscall';
      case 'evt.args':
        return e.params.map((x) => `${x.name}=${x.argsText ?? x.text}`).join(' ');
      case 'evt.res': {
        if (e.dir !== '<') return undefined;
        const r = e.params.find((x) => x.name === 'res' || x.name === 'fd')?.raw;
        return r === undefined ? undefined : resString(Number(r));
      }
      case 'evt.rawres': {
        if (e.dir !== '<') return undefined;
        const r = e.params.find((x) => x.name === 'res' || x.name === 'fd')?.raw;
        return r === undefined ? undefined : Number(r);
      }
      case 'evt.failed': {
        if (e.dir !== '<') return undefined;
        const r = e.params.find((x) => x.name === 'res' || x.name === 'fd')?.raw;
        return r === undefined ? false : Number(r) < 0;
      }
      case 'evt.is_open_read':
      case 'evt.is_open_write':
      case 'evt.is_open_create':
      case 'evt.is_open_exec': {
        if (!['open', 'openat', 'openat2'].includes(e.type) || e.dir !== '<') return false;
        const f = Number(param('flags')?.raw ?? 0);
        if (name === 'evt.is_open_read') return (f & 1) !== 0;
        if (name === 'evt.is_open_write') return (f & 2) !== 0;
        if (name === 'evt.is_open_create') return (f & (1 << 14)) !== 0;
        return false;
      }
      case 'evt.category':
        return undefined;

      case 'proc.pid':
        return p.pid;
      case 'proc.vpid':
        return p.vpid;
      case 'proc.ppid':
        return isContainerEvt ? undefined : this.procs.has(p.ppid) || p.ppid > 0 ? p.ppid : undefined;
      case 'proc.sid':
        return p.sid;
      case 'proc.name':
        return p.comm;
      case 'proc.exe':
        return procField(p, 'exe');
      case 'proc.exepath':
        return p.exepath;
      case 'proc.cmdline':
        return procField(p, 'cmdline');
      case 'proc.args':
        return p.argv.slice(1).join(' ');
      case 'proc.cwd':
        return isContainerEvt ? undefined : p.cwd.endsWith('/') ? p.cwd : `${p.cwd}/`;
      case 'proc.tty':
        return p.tty;
      case 'proc.pname':
        return procField(this.ancestor(p, 1), 'name');
      case 'proc.pcmdline':
        return procField(this.ancestor(p, 1), 'cmdline');
      case 'proc.pexe':
        return procField(this.ancestor(p, 1), 'exe');
      case 'proc.pexepath':
        return procField(this.ancestor(p, 1), 'exepath');
      case 'proc.aname':
      case 'proc.apid':
      case 'proc.aexepath': {
        const what = name === 'proc.aname' ? 'name' : name === 'proc.apid' ? 'pid' : 'exepath';
        if (arg === null) {
          const out: Scalar[] = [];
          for (let i = 1; i < 64; i++) {
            const a = this.ancestor(p, i);
            if (!a) break;
            out.push(procField(a, what) as Scalar);
          }
          return out;
        }
        return procField(this.ancestor(p, Number(arg)), what);
      }
      case 'proc.sname': {
        for (let i = 0; i < 64; i++) {
          const a = this.ancestor(p, i);
          if (!a) return undefined;
          if (a.pid === p.sid || (a.container !== '' && a.vpid === p.sid)) return a.comm;
        }
        return undefined;
      }
      case 'proc.duration':
        return p.cloneTs === 0n ? undefined : e.t - p.cloneTs;
      case 'proc.is_exe_writable':
        return p.exeWritable;
      case 'proc.is_exe_upper_layer':
        return p.exeUpper;
      case 'proc.is_exe_from_memfd':
        return p.exeMemfd;
      case 'proc.stdin.type':
        return stdio(0, 'type');
      case 'proc.stdin.name':
        return stdio(0, 'name');
      case 'proc.stdout.type':
        return stdio(1, 'type');
      case 'proc.stdout.name':
        return stdio(1, 'name');
      case 'proc.stderr.type':
        return stdio(2, 'type');
      case 'proc.stderr.name':
        return stdio(2, 'name');
      case 'proc.is_container_healthcheck':
      case 'proc.is_container_liveness_probe':
      case 'proc.is_container_readiness_probe':
        return false;
      case 'thread.tid':
        return e.ev ? e.ev.ctx.tid : -1;
      case 'thread.vtid':
        return e.ev ? e.ev.ctx.vtid : -1;
      case 'thread.ismain':
        return e.ev ? e.ev.ctx.tid === e.ev.ctx.pid : true;
      case 'thread.cap_effective':
        return capabilitiesString(p.cap);

      case 'user.uid':
        return p.uid;
      case 'user.name':
        return this.userName(p.uid);
      case 'user.loginuid':
        return p.loginuid === 4294967295 ? -1 : p.loginuid;
      case 'user.loginname':
        return p.loginuid === 4294967295 ? '' : this.userName(p.loginuid);
      case 'group.gid':
        return p.gid;
      case 'group.name':
        return p.gid === 4294967295 ? '' : (this.groups.get(p.gid) ?? (p.gid === 0 ? 'root' : ''));

      case 'container.id':
        return cid === '' ? 'host' : cid.slice(0, 12);
      case 'container.full_id':
        return cid === '' ? 'host' : cid;
      case 'container.name':
        return cid === '' ? 'host' : meta?.name;
      case 'container.type':
        return cid === '' ? undefined : meta ? 'docker' : undefined;
      case 'container.image':
        return meta?.image;
      case 'container.image.id':
        return meta?.imageId.slice(0, 12);
      case 'container.image.repository':
        return meta?.repository;
      case 'container.image.tag':
        return meta?.tag;
      case 'container.image.digest':
        return meta?.digest ?? undefined;
      case 'container.privileged':
        return meta?.privileged;
      case 'container.host_pid':
        return meta?.hostPid;
      case 'container.host_network':
        return meta?.hostNetwork;
      case 'container.host_ipc':
        return meta?.hostIpc;
      case 'container.ip':
        return meta?.ip;
      case 'container.start_ts':
        return meta?.startTs;
      case 'container.mounts':
        return meta?.mounts.map((m) => `${m.source}:${m.destination}:${m.mode}:${m.rw}:${m.propagation}`).join(',');
      case 'container.mount.dest':
        return arg === null ? undefined : meta?.mounts.find((m) => globMatch(arg, m.source))?.destination;
      case 'container.mount.source':
        return arg === null ? undefined : meta?.mounts.find((m) => globMatch(arg, m.destination))?.source;
      case 'container.label':
        return arg === null ? undefined : meta?.labels[arg];

      case 'fd.num':
        return e.fd?.num;
      case 'fd.type':
        return fd ? fdTypeString(fd.kind) : undefined;
      case 'fd.typechar':
        return fd ? fdTypeChar(fd.kind) : undefined;
      case 'fd.name':
      case 'fd.nameraw':
        return fd?.name;
      case 'fd.directory': {
        if (!fd || (fd.kind !== 'file' && fd.kind !== 'directory')) return undefined;
        if (fd.kind === 'directory') return fd.name;
        const i = fd.name.lastIndexOf('/');
        return i <= 0 ? '/' : fd.name.slice(0, i);
      }
      case 'fd.filename': {
        if (!fd || fd.kind !== 'file') return undefined;
        const i = fd.name.lastIndexOf('/');
        return i < 0 ? '/' : fd.name.slice(i + 1);
      }
      case 'fd.l4proto':
        // libsinsp renders an fd without a known L4 protocol as the string "<NA>" (the recordings
        // show "fd.l4proto":"<NA>" for packet sockets); no fd at all is a missing value.
        if (!fd) return undefined;
        if (fd.kind === 'ipv4srv' || fd.kind === 'ipv6srv') return fd.l4 ?? '<NA>';
        if (fd.kind !== 'ipv4' && fd.kind !== 'ipv6') return '<NA>';
        if (fd.l4 === 'raw') return 'raw';
        return fd.role === undefined ? '<NA>' : (fd.l4 ?? '<NA>');
      case 'fd.sockfamily':
        return fd ? (fd.kind.startsWith('ipv') ? 'ip' : fd.kind === 'unix' ? 'unix' : undefined) : undefined;
      case 'fd.is_server':
        return fd ? fd.role === 'server' : undefined;
      case 'fd.connected':
        return fd ? fd.connected === true : undefined;
      case 'fd.name_changed':
        return e.type === 'connect' && e.dir === '<' && fd !== undefined;
      case 'fd.cip':
      case 'fd.cnet':
        return fd && (fd.kind === 'ipv4' || fd.kind === 'ipv6') && fd.role ? fd.cip : undefined;
      case 'fd.sip':
      case 'fd.snet':
        return fd && fd.role ? fd.sip : undefined;
      case 'fd.cport':
        return fd && (fd.kind === 'ipv4' || fd.kind === 'ipv6') && fd.role ? fd.cport : undefined;
      case 'fd.sport':
        return fd && fd.role ? fd.sport : undefined;
      case 'fd.ip':
      case 'fd.net':
        if (!fd || !fd.role) return undefined;
        return [fd.cip, fd.sip].filter((x): x is string => x !== undefined);
      case 'fd.port':
        if (!fd || !fd.role) return undefined;
        return [fd.cport, fd.sport].filter((x): x is number => x !== undefined);
      case 'fd.lip':
      case 'fd.rip':
      case 'fd.lnet':
      case 'fd.rnet':
      case 'fd.lport':
      case 'fd.rport': {
        if (!fd || (fd.kind !== 'ipv4' && fd.kind !== 'ipv6') || !fd.role) return undefined;
        const local = this.isLocal(fd.cip, meta);
        const wantLocal = name === 'fd.lip' || name === 'fd.lnet' || name === 'fd.lport';
        const useClient = local === wantLocal;
        if (name.endsWith('port')) return useClient ? fd.cport : fd.sport;
        return useClient ? fd.cip : fd.sip;
      }
      case 'fd.containername':
        return fd ? `${cid.slice(0, 12) || 'host'}:${fd.name}` : undefined;
      default:
        if (name.startsWith('k8s.')) return undefined;
        return undefined;
    }
  }
}
