/**
 * End to end with the built CLI, real files and the Falcosidekick stand-in: the file input keeps
 * its read position across restarts (SIGTERM and SIGKILL while a writer keeps appending, as
 * Falco's file_output does), across what happens to the file while the companion is stopped
 * (rotation, truncation, a new file with the old inode, deletion), from a state directory of the
 * version before checkpoints; and a finite input (stdin, replay) is delivered before the exit.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, renameSync, statSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/db.js';
import { CLI, requireBuilt, startCli, type RunningCli } from '../support/cli.js';
import type { FakeSidekick } from '../support/sidekick.js';
import { wait } from '../support/wait.js';
import { checkCovered, deliveries, e2eScope, markedAlert, until } from './spool-support.js';

const ENV = {
  FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false',
  FALCO_COMPANION_INPUT_POLL_INTERVAL: '50ms',
  FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_INITIAL: '50ms',
  FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_MAX: '300ms',
};

const { cleanup, tmp, sidekick } = e2eScope('fc-e2e-file-');

/** What the file source logs once it knows where it reads (or that it waits for the file). */
const POSITIONED = new Set(['input file opened', 'waiting for the input file to appear', 'finishing a rotated input file', 'finishing a rotated input file (gzip)']);

/** `run --input FILE` forwarding to the stand-in; resolves once the file source is positioned. */
async function follow(file: string, state: string, sk: FakeSidekick, env: Record<string, string> = {}): Promise<RunningCli> {
  const cli = startCli(['run', '--input', file, '--sidekick-url', sk.url, '--state-dir', state, '--http-listen', '127.0.0.1:0'], { env: { ...ENV, ...env } });
  cleanup.push(async () => void (await cli.stop('SIGKILL')));
  await cli.waitForLog((l) => l['component'] === 'source/file' && POSITIONED.has(String(l['msg'])));
  return cli;
}

const seqs = (sk: FakeSidekick): number[] => deliveries(sk).map((d) => d.seq).filter((n) => Number.isFinite(n));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const text = (from: number, to: number): string => range(from, to).map((n) => markedAlert(n) + '\n').join('');

/** Every seq in [from, to) reached the stand-in (at least once). */
async function delivered(sk: FakeSidekick, from: number, to: number, timeoutMs = 20_000): Promise<void> {
  await until(() => range(from, to).every((n) => seqs(sk).includes(n)), timeoutMs, `seqs ${from}..${to - 1} delivered (have ${[...new Set(seqs(sk))].sort((a, b) => a - b).join(',')})`);
}

async function reopens(cli: RunningCli, reason: string): Promise<number> {
  const l = await cli.waitForLog((x) => x['component'] === 'source/file' && (x['reason'] === reason || (reason === 'gone' && /is gone/.test(String(x['msg'])))));
  return l ? 1 : 0;
}

describe('e2e: the file input keeps its position across restarts', () => {
  it('1,000 lines written by a writer that keeps appending across a SIGTERM and a SIGKILL restart all reach Falcosidekick', async () => {
    requireBuilt();
    const dir = tmp();
    const file = join(dir, 'events.json');
    const state = join(dir, 'state');
    const sk = await sidekick();
    let cli = await follow(file, state, sk);

    // The writer: one open file, one write per alert, every few ms, like Falco's file_output. It
    // never runs ahead of `allowed`, so each phase below has lines written in it, however slow
    // the machine is: while the companion stops, while it is stopped, while it starts.
    const fd = openSync(file, 'a');
    let written = 0;
    let allowed = 0;
    const writer = (async () => {
      for (let spins = 0; written < 1000 && spins < 100_000; spins++) {
        if (written < allowed) {
          writeSync(fd, markedAlert(written) + '\n');
          written++;
        }
        if (written % 4 === 0 || written >= allowed) await wait(5);
      }
      closeSync(fd);
    })();
    const phase = async (upTo: number): Promise<void> => {
      allowed = upTo;
      await until(() => written >= upTo, 30_000, `${upTo} lines written`);
    };

    await phase(250);
    allowed = 400; // written during the graceful stop and while stopped
    expect(await cli.stop('SIGTERM')).toBe(0);
    await phase(400);
    allowed = 600; // written while it starts and runs
    cli = await follow(file, state, sk);
    await phase(600);
    allowed = 750; // written while it is killed and stays down
    cli.child.kill('SIGKILL');
    await cli.exited;
    await phase(750);
    allowed = 1000;
    cli = await follow(file, state, sk);
    await phase(1000);
    await writer;
    await delivered(sk, 0, 1000, 30_000);
    expect(await cli.stop('SIGTERM')).toBe(0);

    const c = checkCovered(sk, range(0, 1000));
    expect(c.missing).toEqual([]);
    expect(c.idConflicts).toEqual([]); // a line read twice after the SIGKILL gets a new id; one delivery of a kept row keeps its id
    // At least once: only what the SIGKILL caught between commit and checkpoint can come twice.
    expect(c.duplicates).toBeLessThan(100);
  }, 120_000);

  it('rotated while stopped (rename, writes go on in the renamed file, then a new file): the rest of the old file, then the new one', async () => {
    const dir = tmp();
    const file = join(dir, 'events.json');
    const state = join(dir, 'state');
    const sk = await sidekick();
    let cli = await follow(file, state, sk);
    writeFileSync(file, text(0, 3));
    await delivered(sk, 0, 3);
    expect(await cli.stop('SIGTERM')).toBe(0);
    appendFileSync(file, text(3, 5));
    renameSync(file, file + '.1');
    appendFileSync(file + '.1', text(5, 7));
    writeFileSync(file, text(7, 9));
    cli = await follow(file, state, sk);
    await delivered(sk, 0, 9);
    expect(await reopens(cli, 'rotated')).toBe(1);
    expect(await cli.stop('SIGTERM')).toBe(0);
    expect(checkCovered(sk, range(0, 9)).duplicates).toBe(0);
  });

  it('truncated, then rewritten under the same inode, then deleted, each while stopped (SIGKILL, SIGKILL, SIGTERM): read again from the start each time', async () => {
    const dir = tmp();
    const file = join(dir, 'events.json');
    const state = join(dir, 'state');
    const sk = await sidekick();
    let cli = await follow(file, state, sk);
    appendFileSync(file, text(0, 4));
    await delivered(sk, 0, 4);
    cli.child.kill('SIGKILL');
    await cli.exited;

    truncateSync(file, 0);
    appendFileSync(file, text(10, 11)); // shorter than what was read
    cli = await follow(file, state, sk);
    await delivered(sk, 10, 11);
    expect(await reopens(cli, 'truncated')).toBe(1);
    cli.child.kill('SIGKILL');
    await cli.exited;

    // A new file under the old inode (what a replaced file looks like when the filesystem hands
    // the freed inode to it): longer than what was read, so only the first bytes tell.
    const ino = statSync(file).ino;
    writeFileSync(file, text(20, 26));
    expect(statSync(file).ino).toBe(ino);
    cli = await follow(file, state, sk);
    await delivered(sk, 20, 26);
    expect(await reopens(cli, 'replaced')).toBe(1);
    expect(await cli.stop('SIGTERM')).toBe(0);

    unlinkSync(file);
    cli = await follow(file, state, sk);
    expect(await reopens(cli, 'gone')).toBe(1);
    writeFileSync(file, text(30, 32));
    await delivered(sk, 30, 32);
    expect(await cli.stop('SIGTERM')).toBe(0);
    expect(seqs(sk).filter((n) => n >= 20 && n < 26).length).toBe(6); // the new file was not read from the old offset
  });

  it('a state directory of the version before checkpoints starts cleanly and delivers what its spool kept', async () => {
    const dir = tmp();
    const file = join(dir, 'events.json');
    const state = join(dir, 'state');
    const sk = await sidekick();
    await sk.down();
    let cli = await follow(file, state, sk);
    writeFileSync(file, text(0, 3));
    await until(() => cli.logs.some((l) => l['msg'] === 'delivery failed; alerts stay in the spool and are retried'), 10_000, 'a failed delivery');
    expect(await cli.stop('SIGTERM')).toBe(0);
    // What the previous version left: spool namespace at version 2, no checkpoint table, alerts kept.
    const db = openStateDb(state);
    db.exec("DROP TABLE input_checkpoints; UPDATE schema_versions SET version = 2 WHERE namespace = 'spool'");
    db.close();
    await sk.up();
    appendFileSync(file, text(3, 5));
    cli = await follow(file, state, sk); // a file never seen by this version: from its end
    appendFileSync(file, text(5, 7));
    await delivered(sk, 0, 3);
    await delivered(sk, 5, 7);
    expect(seqs(sk)).not.toContain(3); // written between the versions, before this version had a position
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});

/** Run the CLI with `input` on its stdin; resolves with the exit code and stderr log lines. */
function pipeInto(args: string[], input: string, env: Record<string, string> = {}): Promise<{ code: number | null; logs: string[]; stdout: string }> {
  requireBuilt();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...ENV, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve({ code, logs: err.split('\n').filter(Boolean), stdout: out });
    });
    child.stdin.end(input);
  });
}

describe('e2e: the end of a finite input', () => {
  it('stdin EOF (`run --input -`): everything is delivered to Falcosidekick, then exit 0', async () => {
    const dir = tmp();
    const sk = await sidekick();
    sk.delay(30); // deliveries still in flight when stdin ends
    const r = await pipeInto(['run', '--input', '-', '--sidekick-url', sk.url, '--state-dir', join(dir, 'state'), '--http-listen', '127.0.0.1:0'], 'Falco startup line\n' + text(0, 40));
    expect(r.code).toBe(0);
    expect(checkCovered(sk, range(0, 40)).missing).toEqual([]);
    expect(r.logs.join('\n')).toMatch(/everything accepted was delivered/);
    expect(r.logs.join('\n')).toMatch(/stopped cleanly/);
  });

  it('stdin EOF with Falcosidekick down: waits input.drain_timeout, keeps the rest in the spool, exit 0; the next start delivers it', async () => {
    const dir = tmp();
    const state = join(dir, 'state');
    const sk = await sidekick();
    await sk.down();
    const t0 = Date.now();
    const r = await pipeInto(['run', '--input', '-', '--sidekick-url', sk.url, '--state-dir', state, '--http-listen', '127.0.0.1:0'], text(0, 5), { FALCO_COMPANION_INPUT_DRAIN_TIMEOUT: '1s' });
    expect(r.code).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
    expect(r.logs.join('\n')).toMatch(/5 alert\(s\) not delivered within input.drain_timeout, kept in the spool/);
    await sk.up();
    const again = await pipeInto(['run', '--input', '-', '--sidekick-url', sk.url, '--state-dir', state, '--http-listen', '127.0.0.1:0'], '');
    expect(again.code).toBe(0);
    expect(checkCovered(sk, range(0, 5)).missing).toEqual([]);
  });

  it('stdin EOF with the spool off and Falcosidekick down: says what is lost and exits 1', async () => {
    const dir = tmp();
    const sk = await sidekick();
    await sk.down();
    const r = await pipeInto(['run', '--input', '-', '--sidekick-url', sk.url, '--state-dir', join(dir, 'state'), '--http-listen', '127.0.0.1:0'], text(0, 3), {
      FALCO_COMPANION_INPUT_DRAIN_TIMEOUT: '500ms',
      FALCO_COMPANION_SPOOL_ENABLED: 'false',
      FALCO_COMPANION_SHUTDOWN_DEADLINE: '200ms',
    });
    expect(r.code).toBe(1);
    expect(r.logs.join('\n')).toMatch(/3 alert\(s\) not delivered within input.drain_timeout, lost \(spool off\)/);
  });

  it('replay delivers every alert of the file to Falcosidekick before it exits', async () => {
    const dir = tmp();
    const file = join(dir, 'capture.jsonl');
    writeFileSync(file, text(0, 50));
    const sk = await sidekick();
    sk.delay(20);
    const r = await pipeInto(['replay', file, '--sidekick-url', sk.url, '--state-dir', join(dir, 'state')], '');
    expect(r.code).toBe(0);
    expect(checkCovered(sk, range(0, 50)).missing).toEqual([]);
  });
});
