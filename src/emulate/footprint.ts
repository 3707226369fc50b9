/**
 * Kernel footprint checks: while a scenario runs, confirm on this kernel that what the helper
 * journaled really happened (the packet socket and its filter, the raw socket, the process name
 * against its executable, the firewall rule, the listener, the shell's socket stdio). Each check
 * reads /proc of the helper's pids (from the host for container pids too) and `ss` / `iptables`
 * inside the run's network namespace; it passes or fails with what it saw.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { inNet, sh, type NetRef } from './net.js';
import type { ProcReader } from './proc.js';

export interface Check {
  readonly name: string;
  /** true pass, false fail, null skipped (a tool is missing). */
  readonly ok: boolean | null;
  readonly seen: string;
}

export interface FootprintEnv {
  readonly proc: ProcReader;
  readonly net: NetRef;
  /** `ss` is installed where the runner runs. */
  readonly ss: boolean;
}

const pass = (name: string, seen: string): Check => ({ name, ok: true, seen });
const fail = (name: string, seen: string): Check => ({ name, ok: false, seen });
const skip = (name: string, seen: string): Check => ({ name, ok: null, seen });

/** /proc/<pid>/comm differs from the executable's name (a prctl rename). */
export function processName(env: FootprintEnv, pid: number, expected: string): Check {
  const comm = env.proc.comm(pid);
  const exe = env.proc.exe(pid);
  const name = 'process name vs executable';
  if (comm === null || exe === null) return fail(name, `pid ${pid} is gone`);
  const seen = `/proc/${pid}/comm = "${comm}", exe -> ${exe}`;
  return comm === expected && comm !== basename(exe).slice(0, 15) ? pass(name, seen) : fail(name, `${seen} (expected comm "${expected}")`);
}

/** The process runs an executable that lives on a tmpfs mount. */
export function execFromTmpfs(env: FootprintEnv, pid: number): Check {
  const name = 'execution from tmpfs';
  const exe = env.proc.exe(pid);
  if (exe === null) return fail(name, `pid ${pid} is gone`);
  const m = env.proc.mountOf(pid, exe.replace(/ \(deleted\)$/, ''));
  if (!m) return fail(name, `no mount found for ${exe}`);
  const noexec = m.options.split(',').includes('noexec');
  const seen = `exe -> ${exe} on ${m.mountPoint} (${m.fsType}${noexec ? ', noexec' : ''})`;
  return m.fsType === 'tmpfs' && !noexec ? pass(name, seen) : fail(name, seen);
}

/** A pid file holding `pid` (path as the runner sees it). */
export function pidFile(path: string, shownAs: string, pid: number, innerPid: number): Check {
  const name = 'pid file';
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    return fail(name, `${shownAs}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return text === String(innerPid) || text === String(pid) ? pass(name, `${shownAs} holds ${text}`) : fail(name, `${shownAs} holds "${text}", expected ${innerPid}`);
}

function fdOf(env: FootprintEnv, pid: number, inode: number): number | null {
  for (const [fd, ino] of env.proc.sockets(pid)) if (ino === inode) return fd;
  return null;
}

/** ss output: the `bpf filter (N)` line under the socket owned by `pid`. */
export function ssFilterFor(text: string, pid: number): number | null {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!new RegExp(`pid=${pid},`).test(lines[i] ?? '')) continue;
    for (let j = i + 1; j < Math.min(lines.length, i + 3); j++) {
      const m = /bpf filter \((\d+)\)/.exec(lines[j] ?? '');
      if (m) return Number(m[1]);
    }
  }
  return null;
}

/** An AF_PACKET socket of `pid` (by inode) and, with ss, its attached classic BPF filter. */
export async function packetSocket(env: FootprintEnv, pid: number, inode: number, insns: number | null): Promise<Check[]> {
  const out: Check[] = [];
  const rows = env.proc.packet(pid);
  const row = rows?.find((r) => r.inode === inode);
  const fd = fdOf(env, pid, inode);
  out.push(
    row && fd !== null
      ? pass('packet socket', `inode ${inode} in /proc/${pid}/net/packet (type ${row.type}, proto 0x${row.proto}, ifindex ${row.ifindex}), fd ${fd} of pid ${pid}`)
      : fail('packet socket', `inode ${inode}: ${row ? 'in' : 'not in'} /proc/${pid}/net/packet, ${fd !== null ? `fd ${fd}` : 'no fd'} of pid ${pid}`),
  );
  if (!env.ss) {
    out.push(skip('socket filter attached', '`ss` is not installed (iproute2): the packet socket was seen in /proc, its filter cannot be read there'));
    return out;
  }
  const r = await sh(inNet(env.net, ['ss', '-0', '-b', '-p', '-n']));
  const n = ssFilterFor(r.stdout, pid);
  if (n === 0 && insns !== null && insns > 0) {
    // The kernel reports filter programs to sock_diag only for CAP_NET_ADMIN (packet_diag).
    out.push(skip('socket filter attached', `ss shows "bpf filter (0)": reading a socket's filter needs CAP_NET_ADMIN where ss runs; the journal has setsockopt(SO_ATTACH_FILTER) = 0 with ${insns} instructions`));
    return out;
  }
  const shown = r.stdout.split('\n').filter((l) => l.includes(`pid=${pid},`) || /bpf filter/.test(l)).slice(0, 2).map((l) => l.trim().replace(/\s+/g, ' ').slice(0, 160)).join(' | ');
  out.push(
    n !== null && (insns === null || n === insns)
      ? pass('socket filter attached', `ss -0 -b -p: ${shown}`)
      : fail('socket filter attached', n === null ? `ss -0 -b -p shows no filter for pid ${pid}${r.code !== 0 ? ` (${r.stderr.trim().slice(0, 100)})` : ''}` : `filter of ${n} instructions, expected ${insns ?? '?'}`),
  );
  return out;
}

const PROTO: Readonly<Record<number, string>> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP' };

/** An AF_INET SOCK_RAW socket of `pid` for `proto`; its filter from the journaled setsockopt. */
export function rawInetSocket(env: FootprintEnv, pid: number, inode: number, proto: number, attach: { ret: number; insns?: unknown } | undefined): Check[] {
  const rows = env.proc.inet(pid, 'raw');
  const row = rows?.find((r) => r.inode === inode);
  const fd = fdOf(env, pid, inode);
  return [
    row && fd !== null && row.localPort === proto
      ? pass('raw socket', `inode ${inode} in /proc/${pid}/net/raw (protocol ${proto} ${PROTO[proto] ?? ''}), fd ${fd} of pid ${pid}`)
      : fail('raw socket', `inode ${inode}: ${row ? `protocol ${row.localPort}` : `not in /proc/${pid}/net/raw`}, ${fd !== null ? `fd ${fd}` : 'no fd'} of pid ${pid}`),
    attach && attach.ret === 0
      ? pass('socket filter attached', `setsockopt(SO_ATTACH_FILTER) returned 0 on that socket (${String(attach.insns ?? '?')} instructions; inet sockets do not expose filters to ss)`)
      : fail('socket filter attached', 'no successful setsockopt(SO_ATTACH_FILTER) in the journal'),
  ];
}

/** A TCP listener of `pid` on `port`. */
export function tcpListener(env: FootprintEnv, pid: number, port: number, inode?: number): Check {
  const rows = env.proc.inet(pid, 'tcp') ?? [];
  const row = rows.find((r) => r.state === '0A' && r.localPort === port && (inode === undefined || r.inode === inode));
  const fd = row ? fdOf(env, pid, row.inode) : null;
  return row && fd !== null
    ? pass('listener', `${row.local}:${port} LISTEN in /proc/${pid}/net/tcp, inode ${row.inode} = fd ${fd} of pid ${pid}`)
    : fail('listener', `no LISTEN socket of pid ${pid} on port ${port} in /proc/${pid}/net/tcp`);
}

/** A shell whose fds 0, 1 and 2 are one established TCP connection. */
export function shellOnSocket(env: FootprintEnv, pid: number): Check {
  const name = 'shell with socket stdio';
  const comm = env.proc.comm(pid);
  const exe = env.proc.exe(pid);
  const socks = env.proc.sockets(pid);
  const ino = socks.get(0);
  const same = ino !== undefined && socks.get(1) === ino && socks.get(2) === ino;
  const row = ino === undefined ? undefined : (env.proc.inet(pid, 'tcp') ?? []).find((r) => r.inode === ino);
  const seen = `pid ${pid} comm "${comm ?? '?'}" exe ${exe ?? '?'}; fd 0/1/2 -> ${ino !== undefined ? `socket:[${ino}]` : 'not a socket'}${same ? '' : ' (not all three)'}${row ? `, ${row.local}:${row.localPort} <-> ${row.remote}:${row.remotePort} state ${row.state === '01' ? 'ESTABLISHED' : row.state}` : ''}`;
  return comm === 'sh' && same && row?.state === '01' ? pass(name, seen) : fail(name, seen);
}

/** A unix-socket listener of `pid` bound on `path`. */
export function unixListener(env: FootprintEnv, pid: number, path: string): Check {
  const rows = env.proc.unix(pid) ?? [];
  const row = rows.find((r) => r.path === path && r.listening);
  const fd = row ? fdOf(env, pid, row.inode) : null;
  return row && fd !== null ? pass('runtime socket listener', `${path} listening, inode ${row.inode} = fd ${fd} of pid ${pid}`) : fail('runtime socket listener', `no listening unix socket on ${path} for pid ${pid}`);
}

/** `iptables -S` (filter table) in the run's namespace contains (or not) `rule`. */
export async function firewallRule(env: FootprintEnv, iptables: string, rule: string, present: boolean, name: string): Promise<Check> {
  const r = await sh(inNet(env.net, [iptables, '-S', 'INPUT']));
  if (r.code !== 0) return fail(name, `iptables -S failed: ${r.stderr.trim().slice(0, 200)}`);
  const has = r.stdout.split('\n').some((l) => l.trim() === rule);
  const listing = r.stdout.trim().split('\n').filter((l) => l.startsWith('-A')).join(' | ') || '(no rules)';
  return has === present ? pass(name, `iptables -S INPUT: ${listing}`) : fail(name, `iptables -S INPUT: ${listing} (expected ${present ? '' : 'no '}"${rule}")`);
}

/** An address is configured in the run's namespace. */
export async function addressPresent(env: FootprintEnv, addr: string): Promise<Check> {
  const r = await sh(inNet(env.net, ['ip', '-o', '-4', 'addr', 'show']));
  const line = r.stdout.split('\n').find((l) => l.includes(` ${addr}/`));
  return line ? pass('address in the run’s namespace', line.trim().replace(/\s+/g, ' ').slice(0, 160)) : fail('address in the run’s namespace', `${addr} not configured (${r.stderr.trim().slice(0, 100)})`);
}

/** A journaled syscall, as evidence: passes when the step ran (with its result). */
export function journaled(name: string, e: { ret: number; errno: string | null; syscall: string | null; args: string | null } | undefined, expect: 'ok' | 'any' = 'any'): Check {
  if (!e) return fail(name, 'not in the journal');
  const res = e.ret < 0 ? `-1 ${e.errno ?? ''}`.trim() : `${e.ret}`;
  const seen = `${e.syscall ?? ''}(${e.args ?? ''}) = ${res}`;
  return expect === 'ok' && e.ret < 0 ? fail(name, seen) : pass(name, seen);
}
