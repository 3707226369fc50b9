/**
 * Runs the BUILT CLI (dist/src/cli.js) as a child process, as users do. `npm test` builds first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

export const CLI = resolve('dist/src/cli.js');

export function requireBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build (npm test does it first)`);
}

export interface RunningCli {
  readonly child: ChildProcess;
  /** Log lines (pino JSON parsed when possible). */
  readonly logs: Record<string, unknown>[];
  readonly stdoutLines: string[];
  /** HOST:PORT the receiver bound (from the log). */
  httpAddress(): Promise<string>;
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Send a signal and wait for exit; returns the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export function startCli(args: string[], opts: { env?: Record<string, string>; stdin?: 'pipe' | 'ignore' } = {}): RunningCli {
  requireBuilt();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const stdoutLines: string[] = [];
  const listeners: (() => void)[] = [];
  let errBuf = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    errBuf += d;
    let i: number;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i);
      errBuf = errBuf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ raw: line });
      }
      for (const l of listeners.splice(0)) l();
    }
  });
  let outBuf = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    outBuf += d;
    let i: number;
    while ((i = outBuf.indexOf('\n')) >= 0) {
      stdoutLines.push(outBuf.slice(0, i));
      outBuf = outBuf.slice(i + 1);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> =>
    new Promise((resolveP, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; logs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`)), timeoutMs);
      const check = (): void => {
        const hit = logs.find(pred);
        if (hit) {
          clearTimeout(t);
          resolveP(hit);
        } else listeners.push(check);
      };
      void exited.then(() => {
        const hit = logs.find(pred);
        if (!hit) {
          clearTimeout(t);
          reject(new Error(`CLI exited; logs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`));
        }
      });
      check();
    });
  return {
    child,
    logs,
    stdoutLines,
    exited,
    waitForLog,
    async httpAddress() {
      const l = await waitForLog((x) => x['msg'] === 'listening' && x['component'] === 'source/http' && typeof x['port'] === 'number');
      return `${String(l['host'])}:${String(l['port'])}`;
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/**
 * `run` with the HTTP receiver on 127.0.0.1:0 forwarding to `sidekickUrl`, state in `stateDir`,
 * container enrichment off (the test host has no runtime); `env` adds or overrides variables.
 */
export function startHttpCli(sidekickUrl: string, stateDir: string, env: Record<string, string> = {}): RunningCli {
  return startCli(['run', '--http-listen', '127.0.0.1:0', '--sidekick-url', sidekickUrl, '--state-dir', stateDir], {
    env: { FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', ...env },
  });
}
