/**
 * Shared by the emulation tests: run the BUILT CLI's `emulate` command as a child process, read
 * its JSON report, and look for anything a run left behind (processes, network namespaces,
 * temp files, pid files, containers).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import { compileHelper } from '../support/emulate-image.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, requireBuilt } from '../support/cli.js';
import type { RunReport } from '../../src/emulate/run.js';
import type { VerifyReport } from '../../src/emulate/verify.js';

const run = promisify(execFile);

export interface EmulateResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly report: RunReport | null;
  readonly verify: VerifyReport | null;
}

function parse(stdout: string): { report: RunReport | null; verify: VerifyReport | null } {
  try {
    const v = JSON.parse(stdout) as { report?: RunReport; verify?: VerifyReport | null };
    return { report: v.report ?? null, verify: v.verify ?? null };
  } catch {
    return { report: null, verify: null };
  }
}

/** `falco-companion emulate <args>`; resolves with the exit code (never rejects on non-zero). */
export async function emulate(args: readonly string[], timeoutMs = 120_000): Promise<EmulateResult> {
  requireBuilt();
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'emulate', ...args], { timeout: timeoutMs, maxBuffer: 32 * 1024 * 1024 });
    return { code: 0, stdout, stderr, ...parse(stdout) };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    const stdout = e.stdout ?? '';
    return { code: typeof e.code === 'number' ? e.code : null, stdout, stderr: e.stderr ?? String(err), ...parse(stdout) };
  }
}

/** A running `emulate run` (for signal tests): its output so far and its exit. */
export function emulateChild(args: readonly string[]): { child: ChildProcess; stdout: () => string; stderr: () => string; exited: Promise<number | null>; waitStderr(re: RegExp, ms: number): Promise<RegExpExecArray> } {
  requireBuilt();
  const child = spawn(process.execPath, [CLI, 'emulate', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code, sig) => r(code ?? (sig ? 128 : null))));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitStderr(re, ms) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const m = re.exec(err);
        if (m) return m;
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`stderr never matched ${re} within ${ms} ms:\n${err}`);
    },
  };
}

export function parseReport(stdout: string): RunReport | null {
  return parse(stdout).report;
}

/** Everything of run `id` still on this machine (empty when the cleanup was complete). */
export async function leftovers(id: string, pids: readonly number[] = [], docker?: (...a: string[]) => Promise<string>): Promise<string[]> {
  const out: string[] = [];
  for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(id)) out.push(`process ${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z') out.push(`pid ${pid} still alive (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()})`);
    } catch {
      // gone
    }
  }
  const { stdout } = await run('ip', ['netns', 'list']);
  for (const l of stdout.split('\n')) if (l.includes(id)) out.push(`network namespace ${l.trim()}`);
  for (const dir of [tmpdir(), '/dev/shm', '/run', '/var/lib/falco-companion-emulate', '/var/run/secrets/tokens', '/tmp']) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.includes(id)) out.push(`file ${join(dir, f)}`);
  }
  if (docker) {
    const ids = (await docker('ps', '-aq', '--filter', `label=io.falco-companion.emulate.run=${id}`)).trim();
    if (ids) out.push(`containers ${ids.replace(/\n/g, ' ')}`);
  }
  return [...new Set(out)];
}

/** True when iproute2, iptables and root are available (the host-run tests need them). */
export function hostSkipReason(): string | null {
  if (process.platform !== 'linux') return 'emulation runs on Linux only';
  if (process.getuid?.() !== 0) return 'host emulation tests need root';
  for (const b of ['/usr/sbin/ip', '/usr/sbin/iptables', '/usr/bin/nsenter']) if (!existsSync(b)) return `${b} not installed`;
  return null;
}

/** The helper compiled by the system compiler for this test file (beforeAll), removed afterwards. */
export function useCompiledHelper(): { path(): string } {
  let dir = '';
  let helper = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-emulate-test-'));
    helper = await compileHelper(dir);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return { path: () => helper };
}
