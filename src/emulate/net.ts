/**
 * Network namespaces for a run: which namespace the helpers use, commands run inside it (`ip`,
 * `iptables`, `ss`), and the setup a scenario needs (an address on lo, a veth pair, namespaces of
 * its own on a host). Everything created is torn down by the run's cleanup; nothing here ever
 * touches the host's own namespace (the runner refuses to: see isHostNetns).
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Where commands run: this process's namespace, one the runner created, or a process's. */
export type NetRef = { readonly kind: 'self' } | { readonly kind: 'named'; readonly name: string } | { readonly kind: 'pid'; readonly pid: number };

export interface ShResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly argv: readonly string[];
}

/** Run a command; never throws (a missing binary is code null with the error in stderr). */
export function sh(argv: readonly string[], timeoutMs = 10_000, input?: string): Promise<ShResult> {
  return new Promise((resolve) => {
    const child = execFile(argv[0] as string, argv.slice(1), { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? ((err as unknown as { code: number }).code) : null) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === null ? err.message : ''), argv });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** The command line that runs `argv` inside `ref`. */
export function inNet(ref: NetRef, argv: readonly string[]): string[] {
  if (ref.kind === 'named') return ['ip', 'netns', 'exec', ref.name, ...argv];
  if (ref.kind === 'pid') return ['nsenter', `--net=/proc/${ref.pid}/ns/net`, ...argv];
  return [...argv];
}

/** The `--netns` path a helper enters (null: it already runs there). */
export function helperNetns(ref: NetRef): string | null {
  return ref.kind === 'named' ? `/run/netns/${ref.name}` : null;
}

export async function must(argv: readonly string[], what: string): Promise<ShResult> {
  const r = await sh(argv);
  if (r.code !== 0) throw new Error(`${what}: \`${argv.join(' ')}\` failed (${r.code ?? 'not run'}): ${r.stderr.trim().slice(0, 300)}`);
  return r;
}

/** Initial network namespace inode on kernels that fix it (PROC_NET_INIT_INO). */
const INIT_NET_INO = 0xeffffff9;
/** Initial pid namespace inode (PROC_PID_INIT_INO). */
const INIT_PID_INO = 0xeffffffc;
/** Interface names that only a node's own namespace has. */
const HOST_IFACES = /^(docker\d+|cni\d+|cali|flannel|cilium_|kube-ipvs|weave|vxlan\.calico|tunl0$|en[ospx]|wl)/;

function nsIno(path: string): number | null {
  try {
    const m = /\[(\d+)\]/.exec(readlinkSync(path));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * True when this process shares the node's network namespace (a host process, or a container
 * with host networking): scenarios then create namespaces of their own instead of changing it.
 */
export function isHostNetns(): { host: boolean; why: string } {
  const net = nsIno('/proc/self/ns/net');
  if (net === INIT_NET_INO) return { host: true, why: `network namespace ${net} is the initial one` };
  const pid = nsIno('/proc/self/ns/pid');
  if (pid === INIT_PID_INO && net !== null && net === nsIno('/proc/1/ns/net')) return { host: true, why: 'same network namespace as init (pid 1)' };
  let ifaces: string[] = [];
  try {
    ifaces = readdirSync('/sys/class/net');
  } catch {
    // no sysfs: judge by the namespaces only
  }
  const hostLike = ifaces.filter((i) => HOST_IFACES.test(i));
  if (hostLike.length > 0) return { host: true, why: `node interfaces present (${hostLike.slice(0, 3).join(', ')})` };
  return { host: false, why: `own network namespace ${net ?? '?'}` };
}

/** 64-hex container id of this process, from its cgroup paths or its mounts (null: not found). */
export function ownContainerId(): string | null {
  const texts: string[] = [];
  for (const p of ['/proc/self/cgroup', '/proc/self/mountinfo']) {
    try {
      texts.push(readFileSync(p, 'utf8'));
    } catch {
      // not Linux
    }
  }
  for (const t of texts) {
    const m = /(?:docker|cri-containerd|crio|libpod|containers)[/-]([0-9a-f]{64})/.exec(t);
    if (m) return m[1] ?? null;
  }
  return null;
}
