/**
 * Where helper processes run:
 * - LocalExecutor: children of this process (the CLI runs on the host, or inside the container /
 *   Kubernetes Job being tested);
 * - DockerExecutor: a throwaway container started through the Engine API (`--docker`): the run
 *   directory (helper, journal, control files) is bind-mounted at /fc-run, helpers are started
 *   with exec, and the kernel footprint is read from the host's /proc.
 * Both kill what they started by pid and remove what they created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Engine } from './engine.js';
import { EmulateError } from './journal.js';
import type { NetRef } from './net.js';
import { ProcReader } from './proc.js';

export interface Spawned {
  readonly role: string;
  /** Pid as the runner's /proc shows it (the host pid for --docker). */
  readonly pid: number;
  /** Pid as the helper's own pid namespace numbers it (journal pids). */
  readonly innerPid: number;
  /** Exit code; undefined while running, null when killed by a signal. */
  exitCode(): number | null | undefined;
  stderr(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when gone. */
  kill(graceMs?: number): Promise<void>;
}

export interface SpawnSpec {
  readonly role: string;
  /** Executable as seen where it runs. */
  readonly exe: string;
  /** Arguments after the executable. */
  readonly args: readonly string[];
  readonly tty?: boolean;
}

export interface RunPaths {
  readonly runDir: string;
  readonly helper: string;
  readonly journal: string;
  readonly ctl: string;
  readonly bin: string;
}

export interface Executor {
  readonly kind: 'local' | 'docker';
  /** 64-hex id of the container the helpers run in, or null (host, or not detectable). */
  readonly containerId: string | null;
  /** Paths as the helpers see them. */
  readonly inside: RunPaths;
  /** The same paths as the runner sees them. */
  readonly outside: RunPaths;
  readonly proc: ProcReader;
  /** The helpers' network namespace. */
  readonly net: NetRef;
  /** An exec-capable tmpfs directory, as the helpers see it. */
  readonly tmpfs: string;
  spawn(spec: SpawnSpec): Promise<Spawned>;
  /** Runner-side pid of a journal pid (null when gone or unknown). */
  hostPid(inner: number): number | null;
  /** Runner-side path of a path inside the helpers' filesystem. */
  rootPath(p: string): string;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function killPid(proc: ProcReader, pid: number, graceMs: number): Promise<void> {
  const sig = (s: NodeJS.Signals): void => {
    try {
      process.kill(pid, s);
    } catch {
      // gone
    }
  };
  if (!proc.alive(pid)) return;
  sig('SIGTERM');
  const end = Date.now() + graceMs;
  while (Date.now() < end && proc.alive(pid)) await sleep(20);
  if (proc.alive(pid)) {
    sig('SIGKILL');
    const end2 = Date.now() + 2000;
    while (Date.now() < end2 && proc.alive(pid)) await sleep(20);
  }
}

/** Where named copies of the helper (tcpdump, dhclient, ...) go on a host: not a tmpfs directory. */
export const LOCAL_BIN_BASE = '/var/lib/falco-companion-emulate';

/**
 * The run directory (journal, control files). With `copyHelper` (--docker) the helper and its
 * named copies live in it too (it is bind-mounted into the container); otherwise the helper runs
 * from where it is and named copies go to `binDir` (not tmpfs: an exec from /tmp would itself be
 * a tmpfs-execution signal and muddy the benign twins).
 */
function makeRunDir(run: string, helper: string, copyHelper: boolean, binDir?: string): RunPaths {
  const runDir = mkdtempSync(join(tmpdir(), `fc-emulate-${run}-`));
  chmodSync(runDir, 0o755);
  const p: RunPaths = { runDir, helper: copyHelper ? join(runDir, 'fc-emulate') : helper, journal: join(runDir, 'journal.jsonl'), ctl: join(runDir, 'ctl'), bin: binDir ?? join(runDir, 'bin') };
  mkdirSync(p.ctl);
  mkdirSync(p.bin, { recursive: true });
  if (copyHelper) {
    copyFileSync(helper, p.helper);
    chmodSync(p.helper, 0o755);
  }
  writeFileSync(p.journal, '');
  chmodSync(p.journal, 0o666);
  return p;
}

/** `<base>/<run>` when it can be created, else null (the run directory's bin/ is used). */
export function localBinDir(run: string, base = process.env['FC_EMULATE_BIN_DIR'] ?? LOCAL_BIN_BASE): string | null {
  try {
    const d = join(base, run);
    mkdirSync(d, { recursive: true });
    return d;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------

export class LocalExecutor implements Executor {
  readonly kind = 'local' as const;
  readonly proc = new ProcReader('/proc');
  readonly net: NetRef = { kind: 'self' };
  readonly inside: RunPaths;
  readonly outside: RunPaths;
  private readonly children: ChildProcess[] = [];
  private readonly ownBin: string | null;

  constructor(
    run: string,
    helper: string,
    readonly containerId: string | null,
    readonly tmpfs: string,
  ) {
    this.ownBin = localBinDir(run);
    this.outside = makeRunDir(run, helper, false, this.ownBin ?? undefined);
    this.inside = this.outside;
  }

  async spawn(spec: SpawnSpec): Promise<Spawned> {
    const child = spawn(spec.exe, [...spec.args], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
    this.children.push(child);
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 4000) err += d;
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid as number));
      child.once('error', (e) => reject(new EmulateError('E_EMULATE_SPAWN', `${spec.role}: cannot start ${spec.exe}: ${e.message}`)));
    });
    let code: number | null | undefined;
    child.once('exit', (c) => (code = c));
    const proc = this.proc;
    return {
      role: spec.role,
      pid,
      innerPid: pid,
      exitCode: () => code,
      stderr: () => err,
      kill: (graceMs = 500) => killPid(proc, pid, graceMs),
    };
  }

  hostPid(inner: number): number | null {
    return inner;
  }

  rootPath(p: string): string {
    return p;
  }

  async close(): Promise<void> {
    for (const c of this.children) if (c.pid && c.exitCode === null && c.signalCode === null) await killPid(this.proc, c.pid, 300);
    rmSync(this.outside.runDir, { recursive: true, force: true });
    if (this.ownBin) {
      rmSync(this.ownBin, { recursive: true, force: true });
      try {
        rmdirSync(dirname(this.ownBin)); // the base too, when no other run uses it
      } catch {
        // not empty, or not ours to remove
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

export interface DockerOptions {
  readonly socket: string;
  readonly image: string;
  readonly capabilities: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** Upper bound of the container's life (its init exits after it). */
  readonly maxSeconds: number;
}

export class DockerExecutor implements Executor {
  readonly kind = 'docker' as const;
  readonly proc = new ProcReader('/proc');
  readonly inside: RunPaths = { runDir: '/fc-run', helper: '/fc-run/fc-emulate', journal: '/fc-run/journal.jsonl', ctl: '/fc-run/ctl', bin: '/fc-run/bin' };
  readonly outside: RunPaths;
  readonly tmpfs = '/tmp';
  readonly engine: Engine;
  containerId: string | null = null;
  net: NetRef = { kind: 'self' };
  private initPid = 0;
  private pidNs: number | null = null;
  private readonly pollers: NodeJS.Timeout[] = [];
  private readonly started: number[] = [];

  private constructor(
    private readonly run: string,
    helper: string,
    private readonly o: DockerOptions,
  ) {
    this.engine = new Engine(o.socket);
    this.outside = makeRunDir(run, helper, true);
  }

  /** Create and start the container (removed again by close(), also when this fails). */
  static async start(run: string, helper: string, o: DockerOptions): Promise<DockerExecutor> {
    const x = new DockerExecutor(run, helper, o);
    try {
      await x.engine.ping();
      x.containerId = await x.engine.createContainer(`fc-emulate-${run}`, {
        Image: o.image,
        Entrypoint: [x.inside.helper],
        Cmd: ['--journal', x.inside.journal, '--run', run, '--role', 'init', 'idle', '--max-s', String(Math.ceil(o.maxSeconds))],
        User: '0',
        WorkingDir: '/',
        Labels: { 'io.falco-companion.emulate.run': run, ...o.labels },
        HostConfig: {
          NetworkMode: 'none',
          CapDrop: ['ALL'],
          CapAdd: [...o.capabilities],
          Binds: [`${x.outside.runDir}:${x.inside.runDir}`],
          Tmpfs: { '/tmp': 'rw,exec,nosuid,nodev,size=32m' },
        },
      });
      await x.engine.start(x.containerId);
      const st = await x.engine.inspect(x.containerId);
      x.initPid = st.State.Pid;
      if (!x.initPid) throw new EmulateError('E_EMULATE_DOCKER', `container ${x.containerId.slice(0, 12)} did not start (no pid)`);
      x.pidNs = x.proc.pidNs(x.initPid);
      x.net = { kind: 'pid', pid: x.initPid };
      return x;
    } catch (err) {
      await x.close();
      throw err;
    }
  }

  async spawn(spec: SpawnSpec): Promise<Spawned> {
    if (!this.containerId) throw new EmulateError('E_EMULATE_DOCKER', 'container not started');
    const execId = await this.engine.exec(this.containerId, [spec.exe, ...spec.args], { tty: spec.tty ?? false });
    let pid = 0;
    let code: number | null | undefined;
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      const st = await this.engine.execInspect(execId);
      if (st.Pid > 0) pid = st.Pid;
      if (!st.Running && (st.Pid > 0 || st.ExitCode !== null)) {
        code = st.ExitCode;
        break;
      }
      if (pid > 0) break;
      await sleep(20);
    }
    if (pid === 0 && code === undefined) throw new EmulateError('E_EMULATE_SPAWN', `${spec.role}: exec did not start within 10 s`);
    if (pid > 0) this.started.push(pid);
    const poll = setInterval(() => {
      this.engine.execInspect(execId).then(
        (st) => {
          if (!st.Running) {
            code = st.ExitCode;
            clearInterval(poll);
          }
        },
        () => clearInterval(poll),
      );
    }, 200);
    poll.unref();
    if (code === undefined) this.pollers.push(poll);
    else clearInterval(poll);
    const inner = pid > 0 ? (this.proc.innerPid(pid) ?? pid) : 0;
    return {
      role: spec.role,
      pid,
      innerPid: inner,
      exitCode: () => code,
      stderr: () => '',
      kill: (graceMs = 500) => (pid > 0 ? killPid(this.proc, pid, graceMs) : Promise.resolve()),
    };
  }

  hostPid(inner: number): number | null {
    if (this.pidNs === null) return null;
    return this.proc.hostPidOf(inner, this.pidNs);
  }

  rootPath(p: string): string {
    return `/proc/${this.initPid}/root${p}`;
  }

  async close(): Promise<void> {
    for (const t of this.pollers) clearInterval(t);
    for (const pid of this.started) await killPid(this.proc, pid, 200);
    if (this.containerId) {
      try {
        await this.engine.remove(this.containerId);
      } finally {
        rmSync(this.outside.runDir, { recursive: true, force: true });
      }
    } else {
      rmSync(this.outside.runDir, { recursive: true, force: true });
    }
    void this.run;
  }
}
