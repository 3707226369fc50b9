/**
 * Real containerd (Debian `containerd`, with its CRI plugin) on a temp socket for tests: the
 * default config with root, state, the gRPC socket, CNI and opt paths moved into a temp dir.
 * Stopped by PID.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { poll } from './wait.js';

const run = promisify(execFile);
export const CONTAINERD = '/usr/bin/containerd';

export function containerdSkipReason(): string | null {
  if (process.platform !== 'linux') return 'containerd tests need Linux';
  if (process.getuid?.() !== 0) return 'containerd tests need root';
  if (!existsSync(CONTAINERD)) return `${CONTAINERD} not installed (Debian containerd)`;
  return null;
}

export interface Containerd {
  readonly dir: string;
  readonly socket: string;
  readonly pid: number;
  /** `ctr --address <socket> ARGS`. */
  ctr(...args: string[]): Promise<string>;
  close(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const dir = mkdtempSync(join(tmpdir(), 'fc-containerd-'));
  const socket = join(dir, 'containerd.sock');
  const { stdout } = await run(CONTAINERD, ['config', 'default'], { timeout: 10_000 });
  const cfg = stdout
    .replace(/^root = .*$/m, `root = "${join(dir, 'root')}"`)
    .replace(/^state = .*$/m, `state = "${join(dir, 'state')}"`)
    .replace(/^(\s*)address = "\/run\/containerd\/containerd\.sock"$/m, `$1address = "${socket}"`)
    .replace(/"\/opt\/cni\/bin"/g, JSON.stringify(join(dir, 'cni', 'bin')))
    .replace(/"\/etc\/cni\/net\.d"/g, JSON.stringify(join(dir, 'cni', 'net.d')))
    .replace(/"\/opt\/containerd"/g, JSON.stringify(join(dir, 'opt')));
  if (!cfg.includes(socket)) throw new Error('containerd config default: grpc address line not found');
  const cfgPath = join(dir, 'containerd.toml');
  writeFileSync(cfgPath, cfg);
  const fd = openSync(join(dir, 'containerd.log'), 'a');
  const child: ChildProcess = spawn(CONTAINERD, ['--config', cfgPath], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const ctr = async (...args: string[]): Promise<string> => (await run('ctr', ['--address', socket, ...args], { timeout: 60_000 })).stdout;
  const close = async (): Promise<void> => {
    if (child.pid && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(child.pid, 'SIGTERM');
      const t = setTimeout(() => child.pid && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 8000);
      await exited;
      clearTimeout(t);
    }
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // a leftover mount: leave it
    }
  };
  const state = await poll<'ok' | 'failed'>(
    async () => {
      if (child.exitCode !== null) return 'failed';
      if (!existsSync(socket)) return null;
      try {
        const plugins = await ctr('plugins', 'ls');
        if (/io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok/.test(plugins)) return 'ok';
        if (/io\.containerd\.grpc\.v1\s+cri\s+\S+\s+error/.test(plugins)) return 'failed';
      } catch {
        // not serving yet
      }
      return null;
    },
    { timeoutMs: 20_000, intervalMs: 50, what: 'containerd' },
  ).catch(() => 'failed' as const);
  if (state === 'ok') return { dir, socket, pid: child.pid as number, ctr, close };
  let tail = '';
  try {
    tail = (await run('tail', ['-n', '20', join(dir, 'containerd.log')])).stdout;
  } catch {
    // no log
  }
  await close();
  throw new Error(`containerd with the CRI plugin did not start\n${tail}`);
}
