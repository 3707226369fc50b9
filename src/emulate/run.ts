/**
 * Runs one scenario: preflight (platform, privileges, capabilities, tools), the executor (local
 * process tree or a throwaway container), the scenario's plan (src/emulate/plans.ts) with its
 * footprint checks, and cleanup on every exit path (each step recorded: processes killed by pid,
 * namespaces and veth pairs deleted, addresses and firewall rules removed, temp files removed).
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, chmodSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { errorCode, errorMessage } from '../errors.js';
import { DockerExecutor, LocalExecutor, type Executor, type Spawned } from './executor.js';
import type { Check } from './footprint.js';
import { findHelper } from './helper.js';
import { EmulateError, Journal, type JournalEntry } from './journal.js';
import { helperNetns, inNet, isHostNetns, must, ownContainerId, sh } from './net.js';
import { DEFAULTS, type RunCtx, type RunOptions } from './context.js';
import { PLANS } from './plans.js';
import { hasCapability, ProcReader } from './proc.js';
import type { Scenario } from './scenarios.js';

export interface CleanupRecord {
  readonly what: string;
  readonly ok: boolean;
  readonly error?: string;
}

export interface RunReport {
  readonly run: string;
  readonly scenario: string;
  readonly where: Scenario['where'];
  readonly mode: 'local' | 'docker';
  readonly hostRun: boolean;
  readonly host: string;
  readonly containerId: string | null;
  /** k8s pod name when the run is inside a Kubernetes pod. */
  readonly pod: string | null;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** Runner-side pids of every helper process and what they exec'd into. */
  readonly pids: readonly number[];
  readonly journal: readonly JournalEntry[];
  readonly footprint: readonly Check[];
  readonly cleanup: readonly CleanupRecord[];
  readonly notes: readonly string[];
  readonly ok: boolean;
  readonly error: { readonly code: string; readonly message: string } | null;
}


export function newRunId(): string {
  return `fc-emul-${randomBytes(4).toString('hex')}`;
}

function expand(template: readonly string[], vars: Readonly<Record<string, string>>, role: string): string[] {
  return template.map((a) =>
    a.replace(/\{([a-z_]+)\}/g, (_m, k: string) => {
      const v = vars[k];
      if (v === undefined) throw new EmulateError('E_EMULATE_TEMPLATE', `role ${role}: no value for {${k}}`);
      return v;
    }),
  );
}

/** First tmpfs directory that allows exec and is writable (as this process sees it). */
export function execTmpfs(proc = new ProcReader('/proc')): string | null {
  for (const d of ['/dev/shm', '/run', '/tmp']) {
    const m = proc.mountOf(process.pid, d);
    if (!m || m.fsType !== 'tmpfs' || m.options.split(',').includes('noexec')) continue;
    try {
      const probe = join(d, `.fc-emulate-probe-${process.pid}`);
      writeFileSync(probe, '');
      rmSync(probe, { force: true });
      return d;
    } catch {
      // not writable
    }
  }
  return null;
}

function which(bin: string, dirs = ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']): string | null {
  if (bin.includes('/')) return existsSync(bin) ? bin : null;
  for (const d of dirs) if (existsSync(join(d, bin))) return join(d, bin);
  return null;
}

/** Everything that must hold before anything is started (all problems at once). */
export function preflight(opts: RunOptions): string[] {
  const s = opts.scenario;
  const problems: string[] = [];
  if (process.platform !== 'linux') return [`emulation runs on Linux only (this is ${process.platform})`];
  const root = process.getuid?.() === 0;
  const docker = opts.docker !== undefined || s.where === 'docker-registry';
  if (s.where === 'host' && opts.docker) problems.push(`${s.name} is a host scenario: run it without --docker`);
  if (s.needs.includes('root') && !root && !docker) problems.push(`${s.name} needs uid 0 (pid file under /var/run, raw sockets): run as root${s.where === 'container' ? ' in the container (the default user of the emulate image for this scenario)' : ''}`);
  if (docker && !root) problems.push('--docker reads the container’s processes from /proc and enters its network namespace: run as root on the node');
  if (!docker) {
    const cap = new ProcReader('/proc').capEff('self');
    const missing = cap === null ? [] : s.capabilities.filter((c) => !hasCapability(cap, c));
    if (missing.length > 0) {
      problems.push(
        `${s.name} needs capabilities ${missing.map((c) => `CAP_${c}`).join(', ')} (docker run --cap-add ${missing.join(' --cap-add ')}; Kubernetes: securityContext.capabilities.add [${missing.join(', ')}])`,
      );
    }
  }
  const tools = s.needs.filter((n) => n === 'ip' || n === 'iptables');
  if (tools.includes('ip') && !which('ip')) problems.push(`${s.name} needs iproute2 (\`ip\`) where the runner runs`);
  if (s.needs.includes('iptables') && !docker && !which(opts.iptables ?? 'iptables')) problems.push(`${s.name} needs the iptables binary (Debian: iptables) or --iptables PATH`);
  if (docker && !which('nsenter') && s.needs.includes('ip')) problems.push('--docker sets up the container’s network from the host with nsenter (util-linux)');
  return problems;
}

/** Run cleanup steps newest first, recording each (a failing step never stops the others). */
async function undo(steps: readonly { what: string; fn: () => Promise<unknown> | unknown }[], done: CleanupRecord[]): Promise<void> {
  for (const c of [...steps].reverse()) {
    try {
      await c.fn();
      done.push({ what: c.what, ok: true });
    } catch (err) {
      done.push({ what: c.what, ok: false, error: errorMessage(err) });
    }
  }
}

export async function runScenario(opts: RunOptions): Promise<RunReport> {
  const s = opts.scenario;
  const plan = PLANS[s.name];
  const run = newRunId();
  const startedAt = new Date().toISOString();
  const progress = (t: string): void => opts.progress?.(t);
  const notes: string[] = [];
  const footprint: Check[] = [];
  const cleanups: { what: string; fn: () => Promise<unknown> | unknown }[] = [];
  /** Undone after the executor is gone (images its container used). */
  const lateCleanups: { what: string; fn: () => Promise<unknown> | unknown }[] = [];
  const cleaned: CleanupRecord[] = [];
  const spawned: Spawned[] = [];
  const pids = new Set<number>();
  let exec: Executor | null = null;
  let journal: Journal | null = null;
  let error: RunReport['error'] = null;
  let hostRun = false;

  const timeoutS = opts.timeoutS ?? Math.ceil(Math.max(s.timeoutS, plan?.estimateS?.(opts) ?? 0));
  const ac = new AbortController();
  const onAbort = (): void => ac.abort();
  opts.signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => ac.abort(new EmulateError('E_EMULATE_TIMEOUT', `${s.name} did not finish within ${timeoutS} s (--timeout)`)), timeoutS * 1000);
  const signal = ac.signal;

  try {
    if (!plan) throw new EmulateError('E_EMULATE_SCENARIO', `no plan for scenario ${s.name}`);
    const problems = preflight(opts);
    if (problems.length > 0) throw new EmulateError('E_EMULATE_PREFLIGHT', problems.join('; '));
    const helper = findHelper(opts.helper);
    const useDocker = opts.docker !== undefined || s.where === 'docker-registry';
    const env = { socket: opts.docker?.socket ?? DEFAULTS.runtimeSocket, image: opts.docker?.image ?? '' };
    let image = env.image;
    let prepared: Readonly<Record<string, string>> = {};
    if (plan.prepare) {
      ({ image, facts: prepared } = await plan.prepare({ run, opts, socket: env.socket, note: (t) => notes.push(t), cleanup: (what, fn) => lateCleanups.push({ what, fn }), progress }));
    }
    if (useDocker) {
      if (!image) throw new EmulateError('E_EMULATE_PREFLIGHT', '--docker needs --image IMAGE (any image with /bin/sh; the helper is mounted in)');
      progress(`starting a throwaway container from ${image} (capabilities: ${s.capabilities.join(', ') || 'none'})`);
      exec = await DockerExecutor.start(run, helper, { socket: env.socket, image, capabilities: s.capabilities, labels: s.labels ?? {}, maxSeconds: timeoutS + 60 });
    } else {
      const tmpfs = execTmpfs();
      const hostNet = isHostNetns();
      hostRun = hostNet.host && !ownContainerId();
      const cid = opts.containerId ?? ownContainerId();
      if (s.needs.includes('tmpfs-exec') && !tmpfs) throw new EmulateError('E_EMULATE_PREFLIGHT', 'no writable tmpfs that allows exec (/dev/shm, /run, /tmp): docker run --tmpfs /tmp:exec, or a Kubernetes emptyDir {medium: Memory} at /tmp');
      if (!hostRun && hostNet.host && plan.changesNet) throw new EmulateError('E_EMULATE_UNSAFE', `${s.name} changes its network namespace, and this container shares the node’s (${hostNet.why}): run it in a container with its own network namespace, or on the node itself (the runner then creates namespaces)`);
      exec = new LocalExecutor(run, helper, cid, tmpfs ?? '/tmp');
      if (s.labels && !hostRun) notes.push(`declared with labels ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(', ')}: give the container / pod these labels (with --docker the runner sets them)`);
      if (s.where === 'container' && hostRun) notes.push(`${s.name} is declared for a container; on a host the container-scoped rules (listen, accept, connect) stay silent: run it in a container or with --docker`);
    }
    const ex = exec;
    const j = (journal = new Journal(ex.outside.journal));
    const ss = (await sh(['ss', '-V'])).code === 0;
    const waitS = Math.max(5, timeoutS);
    const ctx: RunCtx = {
      scenario: s,
      run,
      exec: ex,
      journal: j,
      signal,
      opts,
      hostRun,
      waitS,
      prepared,
      foot: { proc: ex.proc, net: ex.net, ss },
      net: { target: ex.net, peer: ex.net },
      vars: {
        run,
        journal: ex.inside.journal,
        ctl: ex.inside.ctl,
        tmpfs: `${ex.tmpfs}/fc-emulate-${run}`,
        wait: String(waitS),
        magic: '7255',
        delay_ms: String(opts.delayMs ?? DEFAULTS.delayMs),
      },
      async role(name, o = {}) {
        const decl = s.roles.find((r) => r.role === name);
        if (!decl) throw new EmulateError('E_EMULATE_SCENARIO', `${s.name} declares no role ${name}`);
        if (signal.aborted) throw new EmulateError('E_EMULATE_ABORTED', 'interrupted');
        const args = expand(decl.argv, ctx.vars, name);
        let exe = ex.inside.helper;
        if (decl.exeName) {
          const named = join(ex.outside.bin, decl.exeName);
          if (!existsSync(named)) {
            copyFileSync(ex.kind === 'docker' ? ex.outside.helper : ex.inside.helper, named);
            chmodSync(named, 0o755);
          }
          exe = join(ex.inside.bin, decl.exeName);
        }
        const netRef = o.netns ?? (decl.netns === 'peer' ? ctx.net.peer : ctx.net.target);
        const nsPath = ex.kind === 'local' ? helperNetns(netRef) : null;
        const globals = ['--journal', ex.inside.journal, '--run', run, '--role', name, ...(ex.kind === 'local' ? ['--die-with-parent', '1'] : []), ...(nsPath ? ['--netns', nsPath] : [])];
        progress(`${name}: ${decl.does}`);
        const sp = await ex.spawn({ role: name, exe, args: [...globals, ...args], ...(o.tty ? { tty: true } : {}) });
        spawned.push(sp);
        if (sp.pid > 0) pids.add(sp.pid);
        return sp;
      },
      async step(role, step, timeoutMs) {
        const sp = spawned.filter((x) => x.role === role);
        const e = await j.waitFor(`${role} ${step}`, (x) => x.role === role && x.step === step, {
          timeoutMs: timeoutMs ?? waitS * 1000,
          signal,
          role,
          failed: () => {
            const dead = sp.find((x) => x.exitCode() !== undefined);
            if (!dead) return null;
            j.poll();
            if (j.entries.some((x) => x.role === role && x.step === step)) return null;
            return `${role} exited (${String(dead.exitCode())})${dead.stderr() ? `: ${dead.stderr().trim().slice(0, 200)}` : ''}`;
          },
        });
        const hp = ex.hostPid(e.pid);
        if (hp !== null) pids.add(hp);
        return e;
      },
      pidOf(e) {
        const hp = ex.hostPid(e.pid);
        if (hp === null) throw new EmulateError('E_EMULATE_STEP', `${e.role} (pid ${e.pid}) is gone`);
        return hp;
      },
      release(name) {
        writeFileSync(join(ex.outside.ctl, name), '');
      },
      async check(c) {
        const r = await c;
        for (const x of Array.isArray(r) ? r : [r]) {
          footprint.push(x);
          progress(`  ${x.ok === true ? 'PASS' : x.ok === false ? 'FAIL' : 'SKIP'}  ${x.name}: ${x.seen}`);
        }
      },
      cleanup(what, fn) {
        cleanups.push({ what, fn });
      },
      note(text) {
        notes.push(text);
      },
      progress,
      async exited(sp, timeoutMs = waitS * 1000) {
        const end = Date.now() + timeoutMs;
        while (sp.exitCode() === undefined && Date.now() < end && !signal.aborted) await new Promise((r) => setTimeout(r, 20));
        return sp.exitCode();
      },
      async netRun(ref, argv, what) {
        return (await must(inNet(ref, argv), what)).stdout;
      },
      async newNetns(suffix) {
        const name = `${run}-${suffix}`.slice(0, 32);
        await must(['ip', 'netns', 'add', name], 'create a network namespace');
        cleanups.push({ what: `delete network namespace ${name}`, fn: () => must(['ip', 'netns', 'del', name], 'delete network namespace') });
        await must(['ip', '-n', name, 'link', 'set', 'lo', 'up'], 'bring lo up');
        return { kind: 'named', name };
      },
      rootPath: (p) => ex.rootPath(p),
    };
    progress(`${s.name}: run ${run}${ex.containerId ? ` in container ${ex.containerId.slice(0, 12)}` : hostRun ? ' on the host' : ''} (${ex.kind})`);
    if (ex instanceof DockerExecutor && s.labels && ex.containerId) {
      const labels = (await ex.engine.inspect(ex.containerId)).Config?.Labels ?? {};
      const want = Object.entries(s.labels);
      const seen = want.map(([k]) => `${k}=${labels[k] ?? '(none)'}`).join(', ');
      await ctx.check({ name: 'container labels', ok: want.every(([k, v]) => labels[k] === v), seen });
    }
    await plan.run(ctx);
  } catch (err) {
    const reason = signal.reason instanceof EmulateError ? signal.reason : null;
    error = reason && err instanceof EmulateError && err.code === 'E_EMULATE_ABORTED' ? { code: reason.code, message: reason.message } : { code: errorCode(err), message: errorMessage(err) };
    if (opts.signal.aborted) error = { code: 'E_EMULATE_INTERRUPTED', message: `interrupted (${String(opts.signal.reason ?? 'signal')}); cleaned up` };
    progress(`error: ${error.message}`);
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener('abort', onAbort);
    journal?.poll();
    // 1. every helper process, by pid (the shells they became included)
    for (const sp of spawned.reverse()) {
      if (sp.pid > 0 && sp.exitCode() === undefined) {
        try {
          await sp.kill(300);
          cleaned.push({ what: `stop ${sp.role} (pid ${sp.pid})`, ok: true });
        } catch (err) {
          cleaned.push({ what: `stop ${sp.role} (pid ${sp.pid})`, ok: false, error: errorMessage(err) });
        }
      }
    }
    // 2. what the plan set up, newest first
    await undo(cleanups, cleaned);
    // 3. the executor: container, run directory
    if (exec) {
      try {
        await exec.close();
        cleaned.push({ what: exec.kind === 'docker' ? `remove container ${exec.containerId?.slice(0, 12) ?? ''} and the run directory` : 'remove the run directory', ok: true });
      } catch (err) {
        cleaned.push({ what: 'remove the run directory / container', ok: false, error: errorMessage(err) });
      }
    }
    // 4. what was prepared before the executor (images), newest first
    await undo(lateCleanups, cleaned);
    for (const c of cleaned) if (!c.ok) progress(`cleanup failed: ${c.what}: ${c.error ?? ''}`);
  }
  const failedChecks = footprint.filter((c) => c.ok === false);
  if (!error && failedChecks.length > 0) error = { code: 'E_EMULATE_FOOTPRINT', message: `${failedChecks.length} footprint check(s) failed: ${failedChecks.map((c) => c.name).join(', ')}` };
  if (!error && cleaned.some((c) => !c.ok)) error = { code: 'E_EMULATE_CLEANUP', message: 'cleanup incomplete (see the cleanup list)' };
  const inPod = process.env['KUBERNETES_SERVICE_HOST'] !== undefined && exec?.kind === 'local' && !hostRun;
  return {
    run,
    scenario: s.name,
    where: s.where,
    mode: exec?.kind ?? (opts.docker ? 'docker' : 'local'),
    hostRun,
    host: hostname(),
    containerId: exec?.containerId ?? null,
    pod: inPod ? hostname() : null,
    startedAt,
    finishedAt: new Date().toISOString(),
    pids: [...pids],
    journal: journal?.entries ?? [],
    footprint,
    cleanup: cleaned,
    notes,
    ok: error === null,
    error,
  };
}
