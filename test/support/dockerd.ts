/**
 * Real Docker engine for tests (Debian docker.io): dockerd on a temp socket with no bridge and no
 * iptables, images from `docker import` of a busybox-static rootfs, containers with
 * `--network none`, and an optional Debian `docker-registry` on 127.0.0.1:<free port>.
 * Everything lives in one temp dir and is stopped by PID.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync, openSync, closeSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freeTcpPort } from './net.js';
import { until } from './wait.js';

const run = promisify(execFile);

export const DOCKERD = '/usr/sbin/dockerd';
export const BUSYBOX = '/usr/bin/busybox';
export const REGISTRY = '/usr/bin/docker-registry';

/** Why the real engine cannot be used here, or null when it can. */
export function dockerSkipReason(): string | null {
  if (process.platform !== 'linux') return 'dockerd tests need Linux';
  if (process.getuid?.() !== 0) return 'dockerd tests need root';
  for (const b of [DOCKERD, BUSYBOX]) if (!existsSync(b)) return `${b} not installed (Debian docker.io, busybox-static)`;
  return null;
}

export interface Dockerd {
  readonly dir: string;
  readonly socket: string;
  /** The daemon's pid (a new one after restart()). */
  readonly pid: number;
  /** Run the docker CLI against this engine. */
  docker(...args: string[]): Promise<string>;
  /** Import a busybox rootfs as `name`; `variant` changes the content (and so the digest). */
  importImage(name: string, variant?: string): Promise<string>;
  /** `docker run -d --network none IMAGE sleep 3600`; returns the 64-hex id. */
  runContainer(image: string): Promise<string>;
  /** Start the Debian registry on 127.0.0.1:<free port>; returns `127.0.0.1:<port>`. */
  startRegistry(): Promise<string>;
  /**
   * SIGSTOP the daemon (a hung runtime) and wait until every one of its threads has stopped:
   * kill() only queues the signal, and until the thread that takes it has run, dockerd's other
   * threads still answer requests.
   */
  pause(): Promise<void>;
  /** SIGCONT the daemon. */
  resume(): void;
  /** Stop dockerd (SIGTERM, then SIGKILL) and wait for it to exit. */
  stopDaemon(): Promise<void>;
  /**
   * Stop dockerd (SIGTERM) without removing anything, wait `downMs`, then start it again on the
   * same socket and data root: its containers are still known (stopped with the daemon). A
   * container whose PID 1 ignores SIGTERM (`sleep`) makes the stop take ~8 s here: give it a
   * TERM trap.
   */
  restart(opts?: { downMs?: number }): Promise<void>;
  /** Stop everything and remove the temp dir. */
  close(): Promise<void>;
}

function ping(socketPath: string, path = '/_ping'): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, path, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

function httpOk(port: number, path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, timeout: 1000 }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) < 500);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** Until `check()` holds; fails at once when `child` exits. */
function serving(what: string, check: () => Promise<boolean>, timeoutMs: number, child: ChildProcess): Promise<void> {
  const cond = async (): Promise<boolean> => {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    return check();
  };
  return until(cond, timeoutMs, `${what} serving`, 50);
}

/** True when every thread of `pid` is stopped (state T in /proc/PID/task/TID/stat). */
function allThreadsStopped(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).every((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      return true; // the thread is gone
    }
    const state = stat.charAt(stat.lastIndexOf(')') + 2); // "TID (comm) S ...": comm may hold spaces and parentheses
    return state === 'T' || state === 't';
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function stopChild(child: ChildProcess | null, ms = 8000): Promise<void> {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGCONT');
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  if (!(await waitExit(child, ms))) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone
    }
    await waitExit(child, 2000);
  }
}

/** Start dockerd on a temp socket; throws with dockerd's log tail when it cannot start. */
export async function startDockerd(): Promise<Dockerd> {
  const dir = mkdtempSync(join(tmpdir(), 'fc-dockerd-'));
  const socket = join(dir, 'docker.sock');
  const logPath = join(dir, 'dockerd.log');
  const spawnDaemon = (): ChildProcess => {
    const logFd = openSync(logPath, 'a');
    const c = spawn(
      DOCKERD,
      [
        '--host', `unix://${socket}`,
        '--data-root', join(dir, 'data'),
        '--exec-root', join(dir, 'exec'),
        '--pidfile', join(dir, 'dockerd.pid'),
        '--bridge', 'none',
        '--iptables=false',
        '--ip6tables=false',
        '--shutdown-timeout', '1',
      ],
      { stdio: ['ignore', logFd, logFd] },
    );
    closeSync(logFd);
    return c;
  };
  let child = spawnDaemon();
  let registry: ChildProcess | null = null;
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
  const docker = async (...args: string[]): Promise<string> => {
    const { stdout } = await run('docker', args, { env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout.trim();
  };
  const stopDaemon = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid as number, 'SIGCONT');
        const ids = (await docker('ps', '-aq')).split('\n').filter(Boolean);
        if (ids.length > 0) await docker('rm', '-f', ...ids);
      } catch {
        // daemon already unhealthy: stopping it kills the containers
      }
    }
    await stopChild(child);
  };
  const close = async (): Promise<void> => {
    await stopDaemon();
    await stopChild(registry);
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // dockerd bind-mounts its data root; a killed daemon leaves that mount behind.
      try {
        await run('umount', [join(dir, 'data')]);
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // leave the temp dir
      }
    }
  };
  try {
    await serving('dockerd', () => ping(socket), 30_000, child);
  } catch (err) {
    let tail = '';
    try {
      tail = (await run('tail', ['-n', '20', logPath])).stdout;
    } catch {
      // no log
    }
    await close();
    throw new Error(`${(err as Error).message}\n${tail}`);
  }

  let rootfs: string | null = null;
  const makeRootfs = (): string => {
    if (rootfs) return rootfs;
    rootfs = join(dir, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    mkdirSync(join(rootfs, 'etc'), { recursive: true });
    copyFileSync(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    for (const c of ['sh', 'sleep', 'cat', 'ls', 'echo']) symlinkSync('busybox', join(rootfs, 'bin', c));
    return rootfs;
  };

  return {
    dir,
    socket,
    get pid() {
      return child.pid as number;
    },
    docker,
    async importImage(name, variant = 'a') {
      const root = makeRootfs();
      writeFileSync(join(root, 'etc', 'variant'), `${variant}\n`);
      const tar = join(dir, `rootfs-${variant}.tar`);
      await run('tar', ['-C', root, '-cf', tar, '.']);
      return docker('import', '-c', 'CMD ["/bin/sleep","3600"]', tar, name);
    },
    async runContainer(image) {
      return docker('run', '-d', '--network', 'none', image, '/bin/sleep', '3600');
    },
    async startRegistry() {
      if (!existsSync(REGISTRY)) throw new Error(`${REGISTRY} not installed (Debian docker-registry)`);
      const port = await freeTcpPort();
      const cfg = join(dir, 'registry.yml');
      writeFileSync(cfg, `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${join(dir, 'registry')}}}\nhttp: {addr: 127.0.0.1:${port}}\n`);
      const fd = openSync(join(dir, 'registry.log'), 'a');
      registry = spawn(REGISTRY, ['serve', cfg], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      await serving('docker-registry', () => httpOk(port, '/v2/'), 15_000, registry);
      return `127.0.0.1:${port}`;
    },
    async pause() {
      const pid = child.pid as number;
      process.kill(pid, 'SIGSTOP');
      await until(() => allThreadsStopped(pid), 5000, 'every dockerd thread stopped by SIGSTOP', 2);
    },
    resume() {
      process.kill(child.pid as number, 'SIGCONT');
    },
    stopDaemon,
    async restart(opts = {}) {
      await stopChild(child);
      // dockerd's own containerd (started by it, under our exec root) must be gone before the
      // next dockerd starts one; a straggler is stopped by pid.
      const containerd = (): number[] =>
        readdirSync('/proc')
          .filter((p) => /^\d+$/.test(p))
          .filter((p) => {
            try {
              const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
              return /(^|\/)containerd$/.test(cmd[0] ?? '') && cmd.some((a) => a.includes(join(dir, 'exec', 'containerd')));
            } catch {
              return false;
            }
          })
          .map(Number);
      for (let i = 0; i < 100 && containerd().length > 0; i++) {
        if (i === 50) for (const pid of containerd()) process.kill(pid, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 100));
      }
      if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
      child = spawnDaemon();
      try {
        await serving('dockerd (restarted)', () => ping(socket), 30_000, child);
      } catch (err) {
        const tail = await run('tail', ['-n', '15', logPath]).then((r) => r.stdout, () => '');
        throw new Error(`${(err as Error).message}\n${tail}`);
      }
    },
    close,
  };
}
