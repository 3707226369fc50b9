/**
 * The kernel observer: a bpftrace program (./program.ts) started by a test before a scenario runs,
 * tracing the syscalls Falco's rules key on for a pid subtree only, bounded in time and events,
 * stopped by PID. Its output (bpftrace `-f json`, one record per line) is parsed into KernelEvents.
 *
 * Needs root, kernel BTF, tracefs and Debian's bpftrace (0.17): `observerSkipReason()` says which
 * is missing so tests can skip with a clear message. The RLIMIT_MEMLOCK warning bpftrace prints on
 * this kernel is harmless (memcg accounting replaced the limit in 5.11).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExeInfo, KernelEvent, ProcSnapshot, SocketInfo, SyscallEvent, TaskContext, Trace } from './events.js';
import { FIELD_SEP, layoutCheck, observerProgram } from './program.js';

const run = promisify(execFile);

export const BPFTRACE = '/usr/bin/bpftrace';
const TRACEFS = '/sys/kernel/tracing';
/** bpftrace's string and buffer size (also its per-string stack cost: the 512-byte BPF stack limits it). */
const STRLEN = 128;

/** Why the observer cannot run here, or null when it can. */
export function observerSkipReason(): string | null {
  if (process.platform !== 'linux') return 'the kernel observer needs Linux';
  if (process.getuid?.() !== 0) return 'the kernel observer needs root (bpftrace)';
  if (!existsSync(BPFTRACE)) return `${BPFTRACE} not installed (Debian bpftrace)`;
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'the kernel has no BTF (/sys/kernel/btf/vmlinux)';
  if (!existsSync(`${TRACEFS}/events/syscalls`)) {
    try {
      execFileSync('mount', ['-t', 'tracefs', 'tracefs', TRACEFS], { stdio: 'ignore' });
    } catch {
      // reported below
    }
    if (!existsSync(`${TRACEFS}/events/syscalls`)) return `tracefs not mounted at ${TRACEFS} (mount -t tracefs tracefs ${TRACEFS}) or no syscall tracepoints`;
  }
  return null;
}

/** Which cgroup the program reads for container ids: the v1 `cpu` controller, else the unified one. */
export function cgroupSelector(): string {
  try {
    for (const line of readFileSync('/proc/cgroups', 'utf8').split('\n').slice(1)) {
      const [name, hierarchy, , enabled] = line.split('\t');
      if (name === 'cpu' && hierarchy !== '0' && enabled === '1') {
        // /proc/cgroups lists subsystems in cgroup_subsys_id order
        const ids = readFileSync('/proc/cgroups', 'utf8').split('\n').slice(1).filter(Boolean).map((l) => l.split('\t')[0]);
        return `v1:${ids.indexOf('cpu')}`;
      }
    }
  } catch {
    // no /proc/cgroups: unified only
  }
  return 'v2';
}

async function structLayout(name: string): Promise<string> {
  try {
    return (await run(BPFTRACE, ['-lv', `struct ${name}`], { timeout: 30_000 })).stdout;
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------------------------------------
// /proc snapshot (what Falco reads at start for processes that already exist)
// ------------------------------------------------------------------------------------------------

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function link(path: string): string | null {
  try {
    return readlinkSync(path);
  } catch {
    return null;
  }
}

function socketInodes(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  const tables: [string, string, number][] = [
    ['tcp', 'ipv4', 9],
    ['udp', 'ipv4', 9],
    ['raw', 'ipv4', 9],
    ['tcp6', 'ipv6', 9],
    ['udp6', 'ipv6', 9],
    ['raw6', 'ipv6', 9],
    ['unix', 'unix', 6],
    ['netlink', 'netlink', 8],
    ['packet', 'packet', 8],
  ];
  for (const [file, kind, col] of tables) {
    const text = read(`/proc/${pid}/net/${file}`);
    if (text === null) continue;
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const ino = cols[col];
      if (ino !== undefined && ino !== '0') out.set(ino, kind);
    }
  }
  return out;
}

export function snapshotProcess(pid: number, cgroupIndexName = 'cpu'): ProcSnapshot | null {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === null) return null;
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  const ppid = Number(rest[1]);
  const sid = Number(rest[3]);
  const comm = (read(`/proc/${pid}/comm`) ?? '').replace(/\n$/, '');
  const exe = (link(`/proc/${pid}/exe`) ?? '').replace(/ \(deleted\)$/, '');
  const argv = (read(`/proc/${pid}/cmdline`) ?? '').split('\0');
  if (argv.length > 0 && argv[argv.length - 1] === '') argv.pop();
  const status = read(`/proc/${pid}/status`) ?? '';
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
  const vpid = Number(nspid[nspid.length - 1] ?? pid);
  let cgroup = '';
  let cgroupParent = '';
  for (const line of (read(`/proc/${pid}/cgroup`) ?? '').split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls === undefined || path === undefined) continue;
    if (ctrls.split(',').includes(cgroupIndexName) || (cgroupIndexName === '' && ctrls === '')) {
      const parts = path.split('/').filter(Boolean);
      cgroup = parts[parts.length - 1] ?? '/';
      cgroupParent = parts[parts.length - 2] ?? '/';
    }
  }
  const fds = new Map<number, string>();
  let sockets: Map<string, string> | null = null;
  let entries: string[] = [];
  try {
    entries = readdirSync(`/proc/${pid}/fd`);
  } catch {
    entries = [];
  }
  for (const e of entries.slice(0, 4096)) {
    const target = link(`/proc/${pid}/fd/${e}`);
    if (target === null) continue;
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) {
      sockets ??= socketInodes(pid);
      fds.set(Number(e), sockets.get(m[1] as string) ?? 'other');
    } else if (target.startsWith('pipe:')) fds.set(Number(e), 'pipe');
    else if (target.startsWith('/')) fds.set(Number(e), `file:${target}`);
    else fds.set(Number(e), 'other');
  }
  return { pid, ppid, comm, exe, argv, cwd: link(`/proc/${pid}/cwd`) ?? '/', sid, uid, vpid, cgroup, cgroupParent, fds };
}

/** The seeds, their live descendants, and every ancestor up to pid 1. */
export function snapshotTree(seeds: readonly number[], withDescendants = true): { snapshot: ProcSnapshot[]; descendants: number[] } {
  const all = new Map<number, ProcSnapshot>();
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const stat = read(`/proc/${e}/stat`);
    if (stat === null) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(e));
    children.set(ppid, list);
  }
  const descendants: number[] = [];
  const queue = [...seeds];
  for (let i = 0; withDescendants && i < queue.length && i < 10_000; i++) {
    const p = queue[i] as number;
    for (const c of children.get(p) ?? []) {
      descendants.push(c);
      queue.push(c);
    }
  }
  for (const p of [...seeds, ...descendants]) {
    const s = snapshotProcess(p);
    if (s) all.set(p, s);
  }
  for (const p of seeds) {
    let cur = all.get(p)?.ppid ?? 0;
    for (let n = 0; cur > 0 && n < 64 && !all.has(cur); n++) {
      const s = snapshotProcess(cur);
      if (!s) break;
      all.set(cur, s);
      cur = s.ppid;
    }
  }
  return { snapshot: [...all.values()], descendants };
}

// ------------------------------------------------------------------------------------------------
// Output parsing
// ------------------------------------------------------------------------------------------------

/** bpftrace's `%r` escapes non-printable bytes as \xNN. */
export function unescapeBuf(s: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      bytes.push(...Buffer.from(s[i] as string, 'utf8'));
    }
  }
  return Buffer.from(bytes);
}

interface Pending {
  kind?: 'E' | 'R';
  name?: string;
  args?: string[];
  ret?: number;
  ctx?: Partial<TaskContext>;
  argvChunks?: Map<number, { len: number; data: Buffer }>;
  exePath?: Map<number, string>;
  cwdPath?: Map<number, string>;
  exeTruncated?: boolean;
  inode?: string[];
  strings?: Map<number, string>;
  socket?: SocketInfo;
  filterLen?: number;
  fileMode?: number;
}

function pathOf(parts: Map<number, string> | undefined): string | undefined {
  if (!parts) return undefined;
  const comps = [...parts.entries()]
    .filter(([i]) => i >= 0)
    .sort((a, b) => b[0] - a[0])
    .map(([, c]) => c);
  return `/${comps.join('/')}`;
}

export interface ParsedOutput {
  readonly events: KernelEvent[];
  readonly lost: number;
  readonly stopReason: string;
  readonly noise: string[];
  readonly attached: boolean;
}

/** Parse bpftrace `-f json` lines into events (sorted by kernel time). */
export function parseObserverOutput(lines: readonly string[]): ParsedOutput {
  const pending = new Map<string, Pending>();
  const order: string[] = [];
  const simple: KernelEvent[] = [];
  const noise: string[] = [];
  let lost = 0;
  let stopReason = 'killed';
  let attached = false;
  const get = (ts: string, tid: string): Pending => {
    const key = `${ts}:${tid}`;
    let p = pending.get(key);
    if (!p) {
      p = {};
      pending.set(key, p);
      order.push(key);
    }
    return p;
  };
  for (const line of lines) {
    if (line.trim() === '') continue;
    let msg: { type?: string; data?: unknown };
    try {
      msg = JSON.parse(line) as { type?: string; data?: unknown };
    } catch {
      noise.push(line);
      continue;
    }
    if (msg.type === 'attached_probes') attached = true;
    if (msg.type === 'lost_events') lost += Number((msg.data as { events?: number } | undefined)?.events ?? 0);
    if (msg.type !== 'printf' || typeof msg.data !== 'string') continue;
    const rec = msg.data.replace(/\n$/, '').split(FIELD_SEP);
    const tag = rec[0];
    const ts = rec[1] ?? '0';
    const tid = rec[2] ?? '0';
    switch (tag) {
      case 'B':
      case 'M':
        break;
      case 'Z':
        // the first reason wins (END prints `end` after a budget stop)
        if (stopReason === 'killed') stopReason = rec[1] ?? 'end';
        break;
      case 'F':
        simple.push({ kind: 'fork', mono: BigInt(ts), tid: Number(tid), pid: Number(rec[3]), childTid: Number(rec[4]), cloneFlags: BigInt(rec[5] ?? 0), childComm: rec[6] ?? '' });
        break;
      case 'X':
        simple.push({ kind: 'exit', mono: BigInt(ts), tid: Number(tid), pid: Number(rec[3]) });
        break;
      case 'H': {
        const p = get(ts, tid);
        p.ctx = {
          ...p.ctx,
          tid: Number(tid),
          pid: Number(rec[3]),
          ppid: Number(rec[4]),
          comm: rec[5] ?? '',
          uid: Number(rec[6]),
          gid: Number(rec[7]),
          euid: Number(rec[8]),
          vpid: Number(rec[9]),
          vtid: Number(rec[10]),
          sid: Number(rec[11]),
          loginuid: Number(rec[12]),
          capEffective: BigInt(`0x${rec[13] ?? '0'}`),
          tty: Number(rec[14]),
        };
        break;
      }
      case 'C': {
        const p = get(ts, tid);
        p.ctx = { ...p.ctx, cgroup: rec[3] ?? '' };
        break;
      }
      case 'D': {
        const p = get(ts, tid);
        p.ctx = { ...p.ctx, cgroupParent: rec[3] ?? '' };
        break;
      }
      case 'E': {
        const p = get(ts, tid);
        p.kind = 'E';
        p.name = rec[3] ?? '';
        p.args = rec.slice(4);
        break;
      }
      case 'R': {
        const p = get(ts, tid);
        p.kind = 'R';
        p.name = rec[3] ?? '';
        p.ret = Number(rec[4]);
        p.args = rec.slice(5);
        break;
      }
      case 'S': {
        const p = get(ts, tid);
        p.strings ??= new Map();
        p.strings.set(Number(rec[3]), rec.slice(4).join(FIELD_SEP));
        break;
      }
      case 'A': {
        const p = get(ts, tid);
        p.argvChunks ??= new Map();
        p.argvChunks.set(Number(rec[3]), { len: Number(rec[4]), data: unescapeBuf(rec.slice(5).join(FIELD_SEP)) });
        break;
      }
      case 'P': {
        const p = get(ts, tid);
        const what = rec[3];
        const idx = Number(rec[4]);
        const comp = rec.slice(5).join(FIELD_SEP);
        const map = what === 'exe' ? (p.exePath ??= new Map()) : (p.cwdPath ??= new Map());
        if (idx < 0 && what === 'exe') p.exeTruncated = true;
        map.set(idx, comp);
        break;
      }
      case 'I':
        get(ts, tid).inode = rec.slice(3);
        break;
      case 'K': {
        const p = get(ts, tid);
        // the classic filter's length when the kernel kept it (orig_prog), else the eBPF program's
        if (rec[3] === 'filter') p.filterLen = Number(rec[5] ?? 0) > 0 ? Number(rec[5]) : Number(rec[4]);
        else if (rec[3] === 'file') p.fileMode = Number(rec[4]);
        else if (rec[3] === 'unix') p.socket = { family: 'unix', type: Number(rec[4]), self: rec[5] ?? '', peer: rec[6] ?? '', path: rec.slice(7).join(FIELD_SEP) };
        else if (rec[3] === 'inet' || rec[3] === 'inet6')
          p.socket = { family: rec[3], type: Number(rec[4]), proto: Number(rec[5]), localIp: rec[6] ?? '', localPort: Number(rec[7]), remoteIp: rec[8] ?? '', remotePort: Number(rec[9]) };
        break;
      }
      default:
        noise.push(msg.data);
    }
  }
  const events: KernelEvent[] = [...simple];
  for (const key of order) {
    const p = pending.get(key) as Pending;
    if (p.kind === undefined || p.ctx === undefined || p.name === undefined) continue;
    const mono = BigInt(key.slice(0, key.indexOf(':')));
    const ctx = { cgroup: '', cgroupParent: '', ...p.ctx } as TaskContext;
    let argv: string[] | undefined;
    if (p.argvChunks) {
      const chunks = [...p.argvChunks.entries()].sort((a, b) => a[0] - b[0]);
      const len = chunks[0]?.[1].len ?? 0;
      const buf = Buffer.concat(chunks.map(([, c]) => c.data)).subarray(0, len);
      argv = buf.toString('utf8').split('\0');
      if (argv.length > 0 && argv[argv.length - 1] === '') argv.pop();
    }
    let exe: ExeInfo | undefined;
    if (p.inode) {
      const [magic, upper, mode, iuid, igid, ino, ...name] = p.inode;
      exe = {
        path: pathOf(p.exePath) ?? '',
        fsMagic: parseInt(magic ?? '0', 16),
        upperLayer: (upper ?? '0') !== '0',
        mode: parseInt(mode ?? '0', 8),
        inodeUid: Number(iuid),
        inodeGid: Number(igid),
        ino: BigInt(ino ?? 0),
        dentryName: name.join(FIELD_SEP),
      };
    }
    const ev: SyscallEvent = {
      kind: 'syscall',
      dir: p.kind === 'E' ? '>' : '<',
      name: p.name,
      mono,
      ctx,
      args: [...(p.args ?? []), ...[...(p.strings ?? new Map<number, string>()).entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v)],
      ret: p.kind === 'R' ? (p.ret ?? null) : null,
      ...(p.socket ? { socket: p.socket } : {}),
      ...(p.filterLen !== undefined ? { filterLen: p.filterLen } : {}),
      ...(p.fileMode !== undefined ? { fileMode: p.fileMode } : {}),
      ...(argv ? { argv } : {}),
      ...(exe ? { exe } : {}),
      ...(p.cwdPath ? { cwd: pathOf(p.cwdPath) as string } : {}),
    };
    events.push(ev);
  }
  // Kernel order; a fork sorts before the child's first event even at the same ns.
  events.sort((a, b) => (a.mono < b.mono ? -1 : a.mono > b.mono ? 1 : (a.kind === 'fork' ? 0 : 1) - (b.kind === 'fork' ? 0 : 1)));
  return { events, lost, stopReason, noise, attached };
}

// ------------------------------------------------------------------------------------------------
// Running
// ------------------------------------------------------------------------------------------------

export interface ObserverOptions {
  /** Processes whose descendants (created after the start) are traced; not traced themselves. */
  readonly spawners?: readonly number[];
  /** Already-running processes traced with all their live descendants (e.g. a test's dockerd). */
  readonly roots?: readonly number[];
  readonly maxSeconds?: number;
  readonly maxEvents?: number;
  /** Cap on output lines kept (each event is several lines). */
  readonly maxLines?: number;
}

export interface Observer {
  readonly pid: number;
  /** Stop (SIGINT, then SIGKILL by PID) and parse everything seen. */
  stop(): Promise<Trace>;
  /** Lines received so far (for waiting on a condition). */
  lineCount(): number;
  /** Everything seen so far, parsed, while the observer keeps running. */
  snapshot(): Trace;
}

/** Start the observer and wait until its probes are attached. */
export async function startObserver(opts: ObserverOptions): Promise<Observer> {
  const reason = observerSkipReason();
  if (reason) throw new Error(reason);
  const layouts: Record<string, string> = {};
  for (const s of ['mount', 'kernfs_node', 'ovl_inode']) layouts[s] = await structLayout(s);
  const problems = layoutCheck(layouts);
  if (problems.length > 0) throw new Error(`kernel layout: ${problems.join('; ')}`);
  const roots = opts.roots ?? [];
  // Live descendants of the roots are traced; live children of the spawners are not (the spawner
  // is typically the test process, whose earlier children, such as the companion, stay untraced).
  const { snapshot, descendants } = snapshotTree(roots);
  const spawnerInfo = snapshotTree(opts.spawners ?? [], false).snapshot;
  const known = new Set(snapshot.map((s) => s.pid));
  for (const s of spawnerInfo) if (!known.has(s.pid)) snapshot.push(s);
  const tracedSeeds = [...new Set([...roots, ...descendants])];
  const maxEvents = opts.maxEvents ?? 200_000;
  const program = observerProgram({
    seeds: opts.spawners ?? [],
    tracedSeeds,
    maxSeconds: opts.maxSeconds ?? 600,
    maxEvents,
    cgroup: cgroupSelector(),
    markerPid: process.pid,
  });
  const dir = mkdtempSync(join(tmpdir(), 'fc-kobs-'));
  const file = join(dir, 'observer.bt');
  writeFileSync(file, program);
  const child: ChildProcess = spawn(BPFTRACE, ['-f', 'json', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BPFTRACE_PERF_RB_PAGES: '1024', BPFTRACE_STRLEN: String(STRLEN) },
  });
  const maxLines = opts.maxLines ?? maxEvents * 12;
  const lines: string[] = [];
  const errLines: string[] = [];
  let dropped = 0;
  let buf = '';
  let attachedResolve: (() => void) | null = null;
  const attached = new Promise<void>((r) => (attachedResolve = r));
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (lines.length < maxLines) lines.push(line);
      else dropped++;
      if (attachedResolve && line.includes('"M\\u001f')) {
        attachedResolve();
        attachedResolve = null;
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    for (const l of d.split('\n')) if (l.trim() !== '' && errLines.length < 200) errLines.push(l);
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // Realtime = monotonic + offset (bpf_ktime_get_ns and libuv's hrtime are both CLOCK_MONOTONIC).
  const clockOffset = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)) - process.hrtime.bigint();
  // bpftrace announces its probes before they are attached: poke the marker probe (attached last)
  // with getppid() (process.ppid calls it on every read) until it answers.
  const poke = setInterval(() => void process.ppid, 100);
  const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000).unref());
  const first = await Promise.race([attached.then(() => 'ok' as const), exited.then(() => 'exited' as const), timeout]);
  clearInterval(poke);
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  if (first !== 'ok') {
    if (child.pid && child.exitCode === null) child.kill('SIGKILL');
    cleanup();
    throw new Error(`bpftrace did not attach (${first}): ${errLines.filter((l) => !/RLIMIT_MEMLOCK|Addrspace|^\s*~|^\s+\S/.test(l)).slice(0, 12).join('\n')}`);
  }
  const traceOf = (all: readonly string[], extraLost: number, reason?: string): Trace => {
    const parsed = parseObserverOutput(all);
    return { events: parsed.events, clockOffset, snapshot, lost: parsed.lost + extraLost, stopReason: reason ?? parsed.stopReason, noise: parsed.noise };
  };
  return {
    pid: child.pid as number,
    lineCount: () => lines.length,
    snapshot: () => traceOf(lines, dropped, 'running'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(t);
      }
      if (buf.trim() !== '') lines.push(buf);
      cleanup();
      // Debugging aid: KCI_OBSERVER_DUMP=/path keeps the raw bpftrace output of the last run.
      if (process.env['KCI_OBSERVER_DUMP']) writeFileSync(process.env['KCI_OBSERVER_DUMP'], `${lines.join('\n')}\n${errLines.join('\n')}\n`);
      return traceOf(lines, dropped, dropped > 0 ? 'lines' : undefined);
    },
  };
}
