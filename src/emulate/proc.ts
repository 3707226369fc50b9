/**
 * Reading the kernel's view of a process from /proc: its sockets (fd → socket inode), the socket
 * tables of its network namespace (/proc/<pid>/net/{packet,raw,tcp,unix}), its name and
 * executable, and the mount an executable lives on. Pure parsers plus thin readers; every reader
 * returns null instead of throwing when the process is gone.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

export interface PacketRow {
  readonly inode: number;
  /** SOCK_RAW 3, SOCK_DGRAM 2. */
  readonly type: number;
  /** Protocol as printed (hex, network order): 0800 = ETH_P_IP, 0003 = ETH_P_ALL. */
  readonly proto: string;
  readonly ifindex: number;
}

export interface InetRow {
  readonly local: string;
  readonly localPort: number;
  readonly remote: string;
  readonly remotePort: number;
  /** TCP state: 01 ESTABLISHED, 0A LISTEN; for raw sockets 07. */
  readonly state: string;
  readonly inode: number;
}

export interface UnixRow {
  readonly inode: number;
  /** 01 listening (__SO_ACCEPTCON flag 00010000), else 0. */
  readonly listening: boolean;
  readonly path: string | null;
}

/** `0100007F:A597` → `127.0.0.1`, 42391 (IPv4 only: what the scenarios use). */
export function parseHexAddr(s: string): { ip: string; port: number } {
  const [a = '', p = ''] = s.split(':');
  if (a.length !== 8) return { ip: a, port: parseInt(p, 16) };
  const n = parseInt(a, 16);
  const ip = [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
  return { ip, port: parseInt(p, 16) };
}

export function parsePacketTable(text: string): PacketRow[] {
  const out: PacketRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 9) continue;
    out.push({ type: Number(f[2]), proto: String(f[3]), ifindex: Number(f[4]), inode: Number(f[8]) });
  }
  return out;
}

/** /proc/net/{tcp,udp,raw}: for raw sockets the "port" of the local address is the protocol. */
export function parseInetTable(text: string): InetRow[] {
  const out: InetRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const l = parseHexAddr(String(f[1]));
    const r = parseHexAddr(String(f[2]));
    out.push({ local: l.ip, localPort: l.port, remote: r.ip, remotePort: r.port, state: String(f[3]).toUpperCase(), inode: Number(f[9]) });
  }
  return out;
}

export function parseUnixTable(text: string): UnixRow[] {
  const out: UnixRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7) continue;
    out.push({ inode: Number(f[6]), listening: (parseInt(String(f[3]), 16) & 0x10000) !== 0, path: f[7] ?? null });
  }
  return out;
}

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The procfs root a process is read from (`/proc`, or a host path for another pid namespace). */
export class ProcReader {
  constructor(readonly root = '/proc') {}

  alive(pid: number): boolean {
    const s = read(`${this.root}/${pid}/stat`);
    if (s === null) return false;
    // state field after the comm in parentheses: Z (zombie) and X (dead) count as gone
    const st = s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
    return st !== 'Z' && st !== 'X';
  }

  comm(pid: number): string | null {
    return read(`${this.root}/${pid}/comm`)?.trim() ?? null;
  }

  exe(pid: number): string | null {
    try {
      return readlinkSync(`${this.root}/${pid}/exe`);
    } catch {
      return null;
    }
  }

  /** fd number → socket inode, for the fds that are sockets. */
  sockets(pid: number): Map<number, number> {
    const out = new Map<number, number>();
    let fds: string[];
    try {
      fds = readdirSync(`${this.root}/${pid}/fd`);
    } catch {
      return out;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${this.root}/${pid}/fd/${fd}`));
        if (m) out.set(Number(fd), Number(m[1]));
      } catch {
        // closed meanwhile
      }
    }
    return out;
  }

  packet(pid: number): PacketRow[] | null {
    const t = read(`${this.root}/${pid}/net/packet`);
    return t === null ? null : parsePacketTable(t);
  }

  inet(pid: number, table: 'tcp' | 'raw' | 'udp'): InetRow[] | null {
    const t = read(`${this.root}/${pid}/net/${table}`);
    return t === null ? null : parseInetTable(t);
  }

  unix(pid: number): UnixRow[] | null {
    const t = read(`${this.root}/${pid}/net/unix`);
    return t === null ? null : parseUnixTable(t);
  }

  /** Filesystem type and options of the mount holding `path`, as `pid` sees it. */
  mountOf(pid: number, path: string): { mountPoint: string; fsType: string; options: string } | null {
    const t = read(`${this.root}/${pid}/mountinfo`);
    if (t === null) return null;
    let best: { mountPoint: string; fsType: string; options: string } | null = null;
    for (const line of t.split('\n')) {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      if (sep < 0 || f.length < sep + 3) continue;
      const mp = (f[4] ?? '').replace(/\\040/g, ' ');
      const inside = mp === '/' || path === mp || path.startsWith(mp.endsWith('/') ? mp : `${mp}/`);
      if (!inside) continue;
      if (best === null || mp.length >= best.mountPoint.length) best = { mountPoint: mp, fsType: f[sep + 1] ?? '', options: `${f[5] ?? ''},${f[sep + 3] ?? ''}` };
    }
    return best;
  }

  /** Inode of the pid namespace (`pid:[4026531836]` → 4026531836). */
  pidNs(pid: number): number | null {
    try {
      const m = /\[(\d+)\]/.exec(readlinkSync(`${this.root}/${pid}/ns/pid`));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  /** The pid as its innermost pid namespace numbers it (last NSpid field). */
  innerPid(pid: number): number | null {
    const s = read(`${this.root}/${pid}/status`);
    const m = s === null ? null : /^NSpid:\s*([\d\s]+)$/m.exec(s);
    if (!m) return null;
    const parts = (m[1] ?? '').trim().split(/\s+/);
    return Number(parts[parts.length - 1]);
  }

  /** Effective capability bits (CapEff) of a process. */
  capEff(pid: number | 'self'): bigint | null {
    const s = read(`${this.root}/${pid}/status`);
    const m = s === null ? null : /^CapEff:\s*([0-9a-f]+)$/m.exec(s);
    return m ? BigInt(`0x${m[1] ?? '0'}`) : null;
  }

  /** Host pid of `inner` in the pid namespace `nsInode` (scan of /proc; null when not found). */
  hostPidOf(inner: number, nsInode: number): number | null {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return null;
    }
    for (const n of names) {
      if (!/^\d+$/.test(n)) continue;
      const p = Number(n);
      if (this.innerPid(p) === inner && this.pidNs(p) === nsInode) return p;
    }
    return null;
  }
}

/** Linux capability numbers the scenarios name. */
export const CAPABILITY_BITS: Readonly<Record<string, number>> = {
  NET_ADMIN: 12,
  NET_RAW: 13,
  SYS_ADMIN: 21,
};

export function hasCapability(capEff: bigint, name: string): boolean {
  const bit = CAPABILITY_BITS[name];
  return bit === undefined ? false : (capEff & (1n << BigInt(bit))) !== 0n;
}
