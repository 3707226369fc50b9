/**
 * Resource counters from the kernel's files, for any runtime: the container's cgroup (v2:
 * `cpu.stat`, `memory.current` - `inactive_file`, `pids.current`; v1: `cpuacct.usage`,
 * `memory.usage_in_bytes` - `total_inactive_file`, `pids.current` in their hierarchies) and
 * `/proc/<pid>/net/dev` of one of its processes (summed over its interfaces, loopback optional).
 *
 * The cgroup of a container is found by its id in the directory names (Docker `docker/<id>` or
 * `docker-<id>.scope`, containerd `cri-containerd-<id>.scope` or `<pod>/<id>`, CRI-O
 * `crio-<id>.scope`): a bounded scan of the hierarchy builds an index, rebuilt (rate-limited) when
 * a container is not in it. Reads are synchronous (cgroupfs and procfs answer from memory, a few
 * microseconds each); every failure is a {@link ResourceFileError} with a stable code.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CompanionError } from '../errors.js';
import type { ContainerMeta, RawSample } from './types.js';

export type ResourceFileErrorCode = 'E_CGROUP_NOT_FOUND' | 'E_CGROUP_GONE' | 'E_CGROUP_FILE_MISSING' | 'E_CGROUP_MALFORMED' | 'E_CGROUP_READ' | 'E_PROC_NET';

export class ResourceFileError extends CompanionError {
  readonly path: string;
  constructor(code: ResourceFileErrorCode, path: string, message: string, cause?: unknown) {
    super(code, `${path}: ${message}`, { cause });
    this.name = 'ResourceFileError';
    this.path = path;
  }
}

export type CgroupLayout =
  | { readonly version: 2; readonly root: string }
  | { readonly version: 1; readonly root: string; readonly cpuacct: string; readonly memory: string; readonly pids: string | null };

/** Which cgroup version is mounted at `root` (v2 unified, or v1 with cpuacct and memory hierarchies); null when neither. */
export function detectCgroups(root: string): CgroupLayout | null {
  if (existsSync(join(root, 'cgroup.controllers'))) return { version: 2, root };
  const dir = (names: readonly string[]): string | null => {
    for (const n of names) if (existsSync(join(root, n))) return join(root, n);
    return null;
  };
  const cpuacct = dir(['cpuacct', 'cpu,cpuacct', 'cpuacct,cpu']);
  const memory = dir(['memory']);
  if (!cpuacct || !memory) return null;
  return { version: 1, root, cpuacct, memory, pids: dir(['pids']) };
}

const ID_RUN = /[0-9a-f]{64}/;

/**
 * Container id → cgroup path relative to the hierarchy root, from a bounded breadth-first scan of
 * directory names (the same relative path exists in every v1 hierarchy).
 */
export class CgroupIndex {
  private readonly paths = new Map<string, string>();
  private lastScanMs = -Infinity;
  /** Directories visited by the last scan, and whether it stopped at the cap. */
  scanned = 0;
  truncated = false;

  constructor(
    private readonly scanRoot: string,
    private readonly opts: { readonly maxDirs: number; readonly maxDepth: number; readonly minRescanMs: number },
  ) {}

  get size(): number {
    return this.paths.size;
  }

  /** The relative path of a container (full or 12+ hex id prefix), rescanning once if unknown and allowed. */
  find(id: string, nowMs: number): string | null {
    const hit = this.lookup(id);
    if (hit !== null) return hit;
    if (nowMs - this.lastScanMs < this.opts.minRescanMs) return null;
    this.scan(nowMs);
    return this.lookup(id);
  }

  private lookup(id: string): string | null {
    const p = this.paths.get(id);
    if (p !== undefined) return p;
    if (id.length < 64) for (const [k, v] of this.paths) if (k.startsWith(id)) return v;
    return null;
  }

  /** Forget a container (its cgroup is gone). */
  drop(id: string): void {
    this.paths.delete(id);
  }

  scan(nowMs: number): void {
    this.lastScanMs = nowMs;
    this.paths.clear();
    this.scanned = 0;
    this.truncated = false;
    let level: string[] = [''];
    for (let depth = 0; depth < this.opts.maxDepth && level.length > 0; depth++) {
      const next: string[] = [];
      for (const rel of level) {
        let names: import('node:fs').Dirent[];
        try {
          names = readdirSync(join(this.scanRoot, rel), { withFileTypes: true });
        } catch {
          continue; // removed while scanning
        }
        for (const d of names) {
          if (!d.isDirectory()) continue;
          if (++this.scanned > this.opts.maxDirs) {
            this.truncated = true;
            return;
          }
          const child = rel === '' ? d.name : `${rel}/${d.name}`;
          const m = ID_RUN.exec(d.name);
          // A container's own cgroup: the deepest directory naming it (systemd puts `init.scope`-like children below some).
          if (m) this.paths.set(m[0], child);
          else next.push(child);
        }
      }
      level = next;
    }
  }
}

/** Parse an integer file (`123\n`); throws E_CGROUP_MALFORMED. */
export function parseIntFile(path: string, text: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new ResourceFileError('E_CGROUP_MALFORMED', path, `expected an integer, got ${JSON.stringify(t.slice(0, 40))}`);
  return Number(t);
}

/** The value of `key` in a flat-keyed file (`key value` lines: cpu.stat, memory.stat); throws when absent or not an integer. */
export function parseKeyed(path: string, text: string, key: string): number {
  for (const line of text.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp > 0 && line.slice(0, sp) === key) {
      const v = line.slice(sp + 1).trim();
      if (!/^\d+$/.test(v)) throw new ResourceFileError('E_CGROUP_MALFORMED', path, `${key} is not an integer: ${JSON.stringify(v.slice(0, 40))}`);
      return Number(v);
    }
  }
  throw new ResourceFileError('E_CGROUP_MALFORMED', path, `no ${key} line`);
}

export interface NetCounters {
  readonly rxBytes: number;
  readonly rxPackets: number;
  readonly txBytes: number;
  readonly txPackets: number;
  /** Interface names seen. */
  readonly interfaces: readonly string[];
}

/** Parse /proc/<pid>/net/dev; sums every interface but `lo` unless `includeLoopback`. Throws E_PROC_NET when malformed. */
export function parseNetDev(path: string, text: string, includeLoopback: boolean): NetCounters {
  const lines = text.split('\n');
  if (!lines[0]?.includes('Receive') || !lines[1]?.includes('bytes')) throw new ResourceFileError('E_PROC_NET', path, 'not a net/dev table (header missing)');
  let rxBytes = 0;
  let rxPackets = 0;
  let txBytes = 0;
  let txPackets = 0;
  const interfaces: string[] = [];
  for (const line of lines.slice(2)) {
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon < 0) throw new ResourceFileError('E_PROC_NET', path, `line without interface: ${JSON.stringify(line.slice(0, 60))}`);
    const name = line.slice(0, colon).trim();
    const cols = line.slice(colon + 1).trim().split(/\s+/);
    if (cols.length < 16 || cols.some((c) => !/^\d+$/.test(c))) throw new ResourceFileError('E_PROC_NET', path, `malformed counters for ${name}`);
    interfaces.push(name);
    if (name === 'lo' && !includeLoopback) continue;
    rxBytes += Number(cols[0]);
    rxPackets += Number(cols[1]);
    txBytes += Number(cols[8]);
    txPackets += Number(cols[9]);
  }
  return { rxBytes, rxPackets, txBytes, txPackets, interfaces };
}

/** Interfaces that only exist in a node's own network namespace (a host-network container sees them). */
const HOST_ONLY_IFACE = /^(veth|cali|cni|docker\d|br-|flannel|cilium_|vxlan|tunl0|kube-ipvs0|weave|virbr|lxc)/;

export interface FileReaderOptions {
  readonly cgroupRoot: string;
  readonly procRoot: string;
  readonly includeLoopback: boolean;
  /** Index scans: directories visited at most, depth, and the least time between two rescans. */
  readonly maxDirs?: number;
  readonly minRescanMs?: number;
}

/** Reads one container's counters from the cgroup and proc files. */
export class FileReader {
  readonly layout: CgroupLayout;
  private readonly index: CgroupIndex;
  /** Per container: host pid used for net/dev and whether it is in the node's network namespace. */
  private readonly net = new Map<string, { pid: number; host: boolean }>();
  private hostNetNs: string | null | undefined;

  constructor(
    layout: CgroupLayout,
    private readonly o: FileReaderOptions,
  ) {
    this.layout = layout;
    const scanRoot = layout.version === 2 ? layout.root : layout.memory;
    this.index = new CgroupIndex(scanRoot, { maxDirs: o.maxDirs ?? 50_000, maxDepth: 10, minRescanMs: o.minRescanMs ?? 5000 });
  }

  get source(): 'cgroup_v1' | 'cgroup_v2' {
    return this.layout.version === 2 ? 'cgroup_v2' : 'cgroup_v1';
  }

  /** Whether the container has a cgroup here (rescans at most every minRescanMs). */
  has(id: string, nowMs: number): boolean {
    return this.index.find(id, nowMs) !== null;
  }

  forget(id: string): void {
    this.index.drop(id);
    this.net.delete(id);
  }

  private read(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENODEV' || code === 'ESRCH') {
        // The directory still there: this file is missing (a controller not enabled, a bad mount).
        if (code === 'ENOENT' && existsSync(dirname(path))) throw new ResourceFileError('E_CGROUP_FILE_MISSING', path, 'missing (is the controller enabled and the whole hierarchy mounted?)', err);
        throw new ResourceFileError('E_CGROUP_GONE', path, `gone (${code ?? '?'}): the container stopped`, err);
      }
      throw new ResourceFileError('E_CGROUP_READ', path, `${code ?? 'read failed'}: ${(err as Error).message}`, err);
    }
  }

  /** One reading; throws {@link ResourceFileError} (E_CGROUP_NOT_FOUND, E_CGROUP_GONE, E_CGROUP_MALFORMED, ...). */
  sample(meta: ContainerMeta, nowMs: number, timeNs: bigint): RawSample {
    const rel = this.index.find(meta.id, nowMs);
    if (rel === null) throw new ResourceFileError('E_CGROUP_NOT_FOUND', join(this.layout.root, '…', meta.id.slice(0, 12)), 'no cgroup directory names this container');
    let cpuNs: number;
    let memoryBytes: number;
    let pids: number | null = null;
    let procsPath: string;
    if (this.layout.version === 2) {
      const dir = join(this.layout.root, rel);
      const cpuPath = join(dir, 'cpu.stat');
      cpuNs = parseKeyed(cpuPath, this.read(cpuPath), 'usage_usec') * 1000;
      const memPath = join(dir, 'memory.current');
      const usage = parseIntFile(memPath, this.read(memPath));
      const statPath = join(dir, 'memory.stat');
      memoryBytes = Math.max(0, usage - parseKeyed(statPath, this.read(statPath), 'inactive_file'));
      const pidsPath = join(dir, 'pids.current');
      if (existsSync(pidsPath)) pids = parseIntFile(pidsPath, this.read(pidsPath));
      procsPath = join(dir, 'cgroup.procs');
    } else {
      const cpuPath = join(this.layout.cpuacct, rel, 'cpuacct.usage');
      cpuNs = parseIntFile(cpuPath, this.read(cpuPath));
      const memDir = join(this.layout.memory, rel);
      const memPath = join(memDir, 'memory.usage_in_bytes');
      const usage = parseIntFile(memPath, this.read(memPath));
      const statPath = join(memDir, 'memory.stat');
      memoryBytes = Math.max(0, usage - parseKeyed(statPath, this.read(statPath), 'total_inactive_file'));
      if (this.layout.pids) {
        const pidsPath = join(this.layout.pids, rel, 'pids.current');
        pids = parseIntFile(pidsPath, this.read(pidsPath));
      }
      procsPath = join(memDir, 'cgroup.procs');
    }
    let rxBytes: number | null = null;
    let txBytes: number | null = null;
    let rxPackets: number | null = null;
    let txPackets: number | null = null;
    const n = this.netOf(meta, procsPath);
    if (n && !n.host) {
      const path = join(this.o.procRoot, String(n.pid), 'net', 'dev');
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (err) {
        // The process exited: look for another one next time.
        this.net.delete(meta.id);
        throw new ResourceFileError('E_CGROUP_GONE', path, `${(err as NodeJS.ErrnoException).code ?? 'read failed'}: the process left`, err);
      }
      const c = parseNetDev(path, text, this.o.includeLoopback);
      if (c.interfaces.some((i) => HOST_ONLY_IFACE.test(i))) {
        this.net.set(meta.id, { pid: n.pid, host: true });
      } else {
        rxBytes = c.rxBytes;
        txBytes = c.txBytes;
        rxPackets = c.rxPackets;
        txPackets = c.txPackets;
      }
    }
    return { id: meta.id, timeNs, source: this.source, cpuNs, memoryBytes, pids, rxBytes, txBytes, rxPackets, txPackets };
  }

  /** A process of the container (the runtime's pid, else the first one the cgroup lists) and whether it runs in the node's network namespace. */
  private netOf(meta: ContainerMeta, procsPath: string): { pid: number; host: boolean } | null {
    if (meta.hostNetwork) return { pid: 0, host: true };
    const known = this.net.get(meta.id);
    if (known) return known;
    let pid = meta.pid !== null && meta.pid > 0 ? meta.pid : 0;
    if (pid === 0) {
      // cgroup.procs lists pids of our pid namespace only (0 or nothing for the others).
      for (const line of this.read(procsPath).split('\n')) {
        const p = Number(line.trim());
        if (Number.isInteger(p) && p > 0) {
          pid = p;
          break;
        }
      }
    }
    if (pid === 0) return null;
    const entry = { pid, host: this.inHostNetns(pid) };
    this.net.set(meta.id, entry);
    return entry;
  }

  private inHostNetns(pid: number): boolean {
    if (this.hostNetNs === undefined) {
      try {
        this.hostNetNs = readlinkSync(join(this.o.procRoot, '1', 'ns', 'net'));
      } catch {
        this.hostNetNs = null; // not allowed (no CAP_SYS_PTRACE): the interface names decide
      }
    }
    if (this.hostNetNs === null) return false;
    try {
      return readlinkSync(join(this.o.procRoot, String(pid), 'ns', 'net')) === this.hostNetNs;
    } catch {
      return false;
    }
  }
}
