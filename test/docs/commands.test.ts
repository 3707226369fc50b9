/**
 * Every shell command block (```sh, bash, shell, console) of README.md and docs/**\/*.md runs
 * against the built CLI, as a user would type it, so the documentation and the command line cannot
 * drift apart. New blocks are picked up on their own. A block that cannot run on this machine says
 * so right above its fence, with the reason:
 *
 *     <!-- not-run: needs a Kubernetes cluster -->
 *
 * A command fails the block when it exits non-zero or prints a usage error. The machine here has no
 * Falco, no Falcosidekick and no cluster, so each block runs in a sandbox that stands in for them:
 * - `falco` is a script printing a recorded Falco stdout (test/fixtures/falco-stdout.log, then the
 *   real Falco 0.40 recording of ../shared/falco-reference/recorded/ when present, else the
 *   project's scenario of the same attack);
 * - a "running Falco" appends recorded alerts to <sandbox>/var/log/falco/events.json (its
 *   file_output) and queues them on a Falco gRPC emulator at <sandbox>/run/falco/falco.sock; any
 *   other *.json / *.jsonl file under /var/log/falco/ a command names holds recorded alerts;
 * - Falcosidekick (`falcosidekick:2801`) is the stand-in of test/support/sidekick.ts;
 * - absolute paths under /tmp, /var, /run and /etc move into the sandbox, port 2804 to a free
 *   loopback port, `sudo` is dropped (root here), `falco-companion` is the built CLI on PATH;
 * - commands run in a directory of links to the checkout's entries, so what they write stays in
 *   the sandbox;
 * - `npm ci` and `npm run build` do nothing (the suite runs in an installed, freshly built
 *   checkout: rebuilding dist/ would race the other tests), `npm run demo` runs what the script
 *   runs without its pre-build.
 * A command that starts the daemon (`run` without `--input -`, or any command ending in `&`) runs
 * until it logs that it started (and, when it forwards to Falcosidekick, until the stand-in got an
 * alert), then gets SIGTERM and must exit 0.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { CLI, requireBuilt } from '../support/cli.js';
import { freeTcpPort } from '../support/net.js';
import { FakeSidekick } from '../support/sidekick.js';

const ROOT = resolve('.');
const RUNNABLE = new Set(['sh', 'bash', 'shell', 'console', 'zsh']);
const USAGE_ERROR = /Unknown arguments?:|Not enough (non-option )?arguments|Missing required arguments?:|Invalid values?:|needs a value, got the option|Did you mean|Implications failed/;
const NOT_RUN = /^\s*<!--\s*not-run:\s*(.*?)\s*-->\s*$/;

interface Block {
  readonly file: string;
  readonly line: number;
  readonly lang: string;
  readonly commands: readonly string[];
  /** The reason given in a not-run marker, or null. */
  readonly notRun: string | null;
}

function markdownFiles(): string[] {
  const out = ['README.md'];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.md')) out.push(relative(ROOT, p));
    }
  };
  walk(join(ROOT, 'docs'));
  return out;
}

/** The command lines of a block: comments and blank lines dropped, `\` continuations joined, `$ ` prompts (console) stripped. */
function commandsOf(lang: string, body: readonly string[]): string[] {
  const out: string[] = [];
  let cur: string | null = null;
  for (const raw of body) {
    let l = raw;
    if (cur === null) {
      if (lang === 'console') {
        if (!/^\s*\$ /.test(l)) continue;
        l = l.replace(/^\s*\$ /, '');
      }
      if (/^\s*(#|$)/.test(l)) continue;
    }
    const joined: string = cur === null ? l.trim() : `${cur} ${l.trim()}`;
    if (/\\$/.test(joined)) cur = joined.slice(0, -1).trimEnd();
    else {
      out.push(joined);
      cur = null;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*$/.exec(lines[i] as string);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) end++;
    const lang = (open[2] as string).toLowerCase();
    if (RUNNABLE.has(lang)) {
      let k = i - 1;
      while (k >= 0 && (lines[k] as string).trim() === '') k--;
      const marker = k >= 0 ? NOT_RUN.exec(lines[k] as string) : null;
      out.push({ file, line: i + 1, lang, commands: commandsOf(lang, lines.slice(i + 1, end)), notRun: marker ? (marker[1] as string) : null });
    }
    i = end;
  }
  return out;
}

const BLOCKS = markdownFiles().flatMap(blocksOf);

// ------------------------------------------------------------------------------------------------
// The sandbox

interface Sandbox {
  readonly root: string;
  /** The commands' working directory (see beforeAll). */
  readonly work: string;
  readonly env: NodeJS.ProcessEnv;
  readonly sidekickPort: number;
}

let sandbox: Sandbox;
let sidekick: FakeSidekick;
let emulator: FalcoGrpcEmulator;
let falcoTimer: NodeJS.Timeout | null = null;
let recorded: string[] = [];

/**
 * Falco's stdout as a pipe would carry it: startup lines, then alerts of an attack, so that the
 * blocks reading the journal find detections: the real Falco 0.40 recording when present, else
 * the project's own scenario of the same chain (a checkout without ../shared).
 */
function recordedStream(): string {
  const real = resolve(ROOT, '../shared/falco-reference/recorded/bind-shell-container.jsonl');
  const attack = existsSync(real) ? real : join(ROOT, 'test/fixtures/scenarios/socket-filter-bind-shell/alerts.jsonl');
  return readFileSync(join(ROOT, 'test/fixtures/falco-stdout.log'), 'utf8') + readFileSync(attack, 'utf8');
}

beforeAll(async () => {
  requireBuilt();
  const root = mkdtempSync(join(tmpdir(), 'fc-docs-'));
  const bin = join(root, 'bin');
  mkdirSync(bin);
  const stream = join(root, 'falco-stdout.log');
  writeFileSync(stream, recordedStream());
  recorded = recordedStream()
    .split('\n')
    .filter((l) => l.startsWith('{'));
  // Stand-ins on PATH: the built CLI, and a `falco` that prints a recorded stdout and exits.
  writeFileSync(join(bin, 'falco-companion'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  writeFileSync(join(bin, 'falco'), `#!/bin/sh\n# stand-in for Falco: its recorded stdout (arguments ignored)\ncat "${stream}"\n`);
  chmodSync(join(bin, 'falco-companion'), 0o755);
  chmodSync(join(bin, 'falco'), 0o755);
  // A running Falco's outputs: file_output and the gRPC socket.
  mkdirSync(join(root, 'var/log/falco'), { recursive: true });
  mkdirSync(join(root, 'run/falco'), { recursive: true });
  mkdirSync(join(root, 'tmp'), { recursive: true });
  mkdirSync(join(root, 'etc/falco-companion'), { recursive: true });
  // The working directory: the checkout's entries linked in, so relative paths (examples/, dist/,
  // package.json) resolve while files a command writes (`--out last5.html`) stay in the sandbox.
  const work = join(root, 'work');
  mkdirSync(work);
  for (const e of readdirSync(ROOT)) if (e !== '.git') symlinkSync(join(ROOT, e), join(work, e));
  writeFileSync(join(root, 'var/log/falco/events.json'), recorded.join('\n') + '\n');
  emulator = new FalcoGrpcEmulator({ address: `unix://${join(root, 'run/falco/falco.sock')}`, version: '0.40.0', jsonOutput: true });
  await emulator.start();
  let n = 0;
  falcoTimer = setInterval(() => {
    const line = recorded[n++ % recorded.length];
    if (line === undefined) return;
    appendFileSync(join(root, 'var/log/falco/events.json'), line + '\n');
    emulator.push(line);
  }, 200);
  sidekick = await new FakeSidekick().start();
  const sidekickPort = Number(new URL(sidekick.url).port);
  sandbox = {
    root,
    work,
    sidekickPort,
    env: {
      ...process.env,
      PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      // Defaults a command does not name: the sandbox's state directory and a free loopback port.
      FALCO_COMPANION_STATE_DIR: join(root, 'var/lib/falco-companion'),
      FALCO_COMPANION_HTTP_LISTEN: `127.0.0.1:${await freeTcpPort()}`,
      // `npm run demo` runs the script without `predemo` (a rebuild of dist/ under the running suite).
      npm_config_ignore_scripts: 'true',
    },
  };
});

afterAll(async () => {
  for (const p of running) p.child.kill('SIGKILL');
  await Promise.all([...running].map((p) => p.exited));
  if (falcoTimer) clearInterval(falcoTimer);
  await emulator?.stop();
  await sidekick?.close();
  if (sandbox) rmSync(sandbox.root, { recursive: true, force: true });
});

/** The command as it runs here (see the file header). */
function localise(cmd: string, port: number): string {
  return cmd
    .replace(/(^|[;&|(]\s*)sudo\s+/g, '$1')
    .replace(/\bnpm ci\b/g, 'true')
    .replace(/\bnpm run build\b/g, 'true')
    .replace(/\bfalcosidekick:2801\b/g, `127.0.0.1:${sandbox.sidekickPort}`)
    .replace(/\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0|NODE)?:2804\b/g, `127.0.0.1:${port}`)
    .replace(/(?<![\w.~-])\/(?:tmp|var|run|etc)\/[\w.@%+=:,/-]*/g, (p) => {
      const local = join(sandbox.root, p);
      // Any JSON-lines file under /var/log/falco/ a command names is one Falco wrote: recorded alerts.
      if (/^\/var\/log\/falco\/[^/]+\.jsonl?$/.test(p) && !existsSync(local)) writeFileSync(local, recorded.join('\n') + '\n');
      return local;
    });
}

// ------------------------------------------------------------------------------------------------
// Running commands

interface Proc {
  readonly cmd: string;
  readonly child: ReturnType<typeof spawn>;
  out: string;
  exited: Promise<number | null>;
  code: number | null | undefined;
}

/** Every process a block started and that has not exited: killed after all (a timed-out test leaves them). */
const running = new Set<Proc>();

function start(cmd: string, exec: boolean): Proc {
  const child = spawn('bash', ['-o', 'pipefail', '-c', exec ? `exec ${cmd}` : cmd], { cwd: sandbox.work, env: sandbox.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { cmd, child, out: '', code: undefined, exited: Promise.resolve(null) };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (p.out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (p.out += d));
  p.exited = new Promise((r) =>
    child.once('exit', (code, signal) => {
      p.code = code ?? (signal ? 128 : null);
      running.delete(p);
      r(p.code);
    }),
  );
  running.add(p);
  return p;
}

const tail = (s: string): string => s.split('\n').slice(-25).join('\n');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function finite(cmd: string): Promise<void> {
  const p = start(cmd, false);
  const t = setTimeout(() => p.child.kill('SIGKILL'), 120_000);
  const code = await p.exited;
  clearTimeout(t);
  expect(p.out, `usage error from: ${cmd}`).not.toMatch(USAGE_ERROR);
  expect(code, `exit code of: ${cmd}\n${tail(p.out)}`).toBe(0);
}

/** A daemon: wait until it started (and, forwarding to the stand-in, delivered), then it keeps running. */
async function daemon(cmd: string): Promise<Proc> {
  const simple = !/[|;<>]|&&/.test(cmd);
  const p = start(cmd, simple);
  const before = sidekick.accepted.length;
  const started = Date.now();
  // Told to log less than info, it never says it started: alive after a while is all we can see.
  const quiet = /--log-level(?:=|\s+)(?:warn|error|fatal|silent)\b/.test(cmd);
  while (Date.now() - started < 60_000) {
    if (p.code !== undefined || /"msg":"falco-companion started"/.test(p.out)) break;
    if (quiet && Date.now() - started > 10_000) break;
    await sleep(50);
  }
  expect(p.code !== undefined || quiet || /"msg":"falco-companion started"/.test(p.out), `${cmd} did not start within 60 s\n${tail(p.out)}`).toBe(true);
  try {
    expect(p.out, `usage error from: ${cmd}`).not.toMatch(USAGE_ERROR);
    expect(p.code, `${cmd} exited while it should run\n${tail(p.out)}`).toBeUndefined();
    if (cmd.includes(`127.0.0.1:${sandbox.sidekickPort}`)) {
      for (let i = 0; i < 200 && sidekick.accepted.length === before; i++) await sleep(50);
      expect(sidekick.accepted.length, `nothing reached Falcosidekick from: ${cmd}\n${tail(p.out)}`).toBeGreaterThan(before);
    }
  } catch (err) {
    p.child.kill('SIGKILL'); // a failed block leaves nothing running
    throw err;
  }
  return p;
}

async function terminate(p: Proc): Promise<void> {
  if (p.code === undefined) p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  const code = await p.exited;
  clearTimeout(t);
  expect(p.out, `usage error from: ${p.cmd}`).not.toMatch(USAGE_ERROR);
  expect(code, `exit code of ${p.cmd} after SIGTERM\n${tail(p.out)}`).toBe(0);
}

const isRun = (cmd: string): boolean => /(?:falco-companion|cli\.js)\s+run\b/.test(cmd);
const readsStdin = (cmd: string): boolean => /--input(?:=|\s+)-(?:\s|$)/.test(cmd);

async function runBlock(b: Block): Promise<void> {
  const port = await freeTcpPort();
  const background: Proc[] = [];
  try {
    for (const raw of b.commands) {
      // The suite cannot run itself (it would run this test again, or re-run other test files).
      expect(raw, `${b.file}:${b.line} runs the test suite: mark the block <!-- not-run: runs the test suite -->`).not.toMatch(/\bnpm (?:run )?test\b|\bvitest\b/);
      const cmd = localise(raw, port);
      const bare = cmd.replace(/\s+#[^'"]*$/, '').trim();
      if (/[^&]&$/.test(bare)) background.push(await daemon(bare.slice(0, -1).trim()));
      else if (isRun(bare) && !readsStdin(bare)) await terminate(await daemon(bare));
      else {
        const before = sidekick.accepted.length;
        await finite(cmd);
        if (isRun(bare) && bare.includes(`127.0.0.1:${sandbox.sidekickPort}`)) {
          expect(sidekick.accepted.length, `a finished run delivers what it read: ${cmd}`).toBeGreaterThan(before);
        }
      }
    }
  } finally {
    for (const p of background.reverse()) await terminate(p);
  }
}

// ------------------------------------------------------------------------------------------------

describe('command blocks of README.md and docs/', () => {
  it('finds the blocks, and every not-run marker gives a reason', () => {
    expect(BLOCKS.length).toBeGreaterThan(5);
    expect(BLOCKS.filter((b) => b.file === 'README.md' && b.notRun === null).length).toBeGreaterThan(2);
    for (const b of BLOCKS) if (b.notRun !== null) expect(b.notRun, `${b.file}:${b.line}`).not.toBe('');
    expect(blocksOf('docs/input-file.md').some((b) => b.notRun === null && b.commands.some((c) => readsStdin(c))), 'the documented pipe runs').toBe(true);
  });

  for (const b of BLOCKS) {
    const title = `${b.file}:${b.line}: ${b.commands[0] ?? '(empty)'}`;
    if (b.notRun !== null) it.skip(`${title} (not run: ${b.notRun})`, () => undefined);
    else it(title, () => runBlock(b), 300_000);
  }
});
