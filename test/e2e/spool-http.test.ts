/**
 * End to end with the durable spool (default on), the built CLI and the sidekick stand-in:
 * sidekick down under steady load, SIGKILL mid-stream and restart, 429/503 with Retry-After,
 * 400 into the dead letters, and the `spool` command.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/db.js';
import { migrateSpool } from '../../src/store/spool-schema.js';
import { CLI, startHttpCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';
import { checkCovered, deliveries, markedAlert, post, until } from './spool-support.js';

const ENV = { FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_MAX: '300ms', FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_INITIAL: '50ms' };

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-e2e-spool-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function sidekick(): Promise<FakeSidekick> {
  const s = await new FakeSidekick().start();
  cleanup.push(() => s.close());
  return s;
}

async function run(stateDir: string, sk: FakeSidekick, env: Record<string, string> = {}): Promise<{ cli: RunningCli; base: string }> {
  const cli = startHttpCli(sk.url, stateDir, { ...ENV, ...env });
  cleanup.push(async () => void (await cli.stop('SIGKILL')));
  return { cli, base: `http://${await cli.httpAddress()}` };
}

function spoolCmd(stateDir: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'spool', ...args, '--state-dir', stateDir], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('e2e: durable spool over HTTP', () => {
  it('sidekick down for a while under steady load, then back: every acked alert delivered exactly once', async () => {
    const dir = tmp();
    const sk = await sidekick();
    const { cli, base } = await run(join(dir, 'state'), sk);
    await sk.down();
    const acked: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const codes = await Promise.all(Array.from({ length: 20 }, (_, i) => post(base, markedAlert(batch * 20 + i))));
      codes.forEach((c, i) => c === 200 && acked.push(batch * 20 + i));
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(acked).toHaveLength(200);
    const ready = await fetch(base + '/readyz');
    expect(ready.status).toBe(200); // sidekick failing, but the spool keeps accepting: still ready
    await until(async () => /delivery attempts failed/.test(await (await fetch(base + '/readyz')).text()), 10_000, 'readyz to report the failing sink');
    expect((await fetch(base + '/readyz')).status).toBe(200);
    await sk.up();
    await sk.waitForAccepted(200, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const c = checkCovered(sk, acked);
    expect(c.missing).toEqual([]);
    expect(c.duplicates).toBe(0);
    expect(new Set(deliveries(sk).map((d) => d.alertId)).size).toBe(200);
    await cli.stop('SIGTERM');
    expect(spoolCmd(join(dir, 'state'), 'stats', '--json').stdout).toMatch(/"received":0,"ready":0/);
  });

  it('SIGKILL mid-stream, restart: every acked alert is delivered (duplicates carry the same alert_id)', async () => {
    const dir = tmp();
    const state = join(dir, 'state');
    const sk = await sidekick();
    sk.delay(20); // keep deliveries in flight when the kill lands
    const first = await run(state, sk);
    const acked = new Set<number>();
    let n = 0;
    let killed = false;
    const senders = Array.from({ length: 8 }, async () => {
      while (!killed && n < 5000) {
        const seq = n++;
        if ((await post(first.base, markedAlert(seq))) === 200) acked.add(seq);
      }
    });
    await until(() => acked.size >= 300, 20_000, '300 acked alerts');
    first.cli.child.kill('SIGKILL');
    killed = true;
    await first.cli.exited;
    await Promise.all(senders);
    expect(sk.accepted.length).toBeLessThan(acked.size); // the kill landed with alerts still in the spool
    sk.delay(0);
    const second = await run(state, sk);
    const resumed = await second.cli.waitForLog((l) => typeof l['resumed'] === 'number');
    expect(Number(resumed['resumed'])).toBeGreaterThan(0);
    await until(() => checkCovered(sk, acked).missing.length === 0, 20_000, 'every acked alert delivered');
    const c = checkCovered(sk, acked);
    expect(c.idConflicts).toEqual([]);
  });

  it('honours Retry-After on 429 and 503, and moves a 400 to the dead letters without retrying it', async () => {
    const dir = tmp();
    const state = join(dir, 'state');
    const sk = await sidekick();
    const { cli, base } = await run(state, sk);
    sk.failNext(1, 429, { retryAfter: '1' });
    const t0 = Date.now();
    expect(await post(base, markedAlert(1))).toBe(200);
    await sk.waitForAccepted(1, 10_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(sk.attempts).toHaveLength(2);

    sk.failNext(1, 503, { retryAfter: '1' });
    const t1 = Date.now();
    expect(await post(base, markedAlert(2))).toBe(200);
    await sk.waitForAccepted(2, 10_000);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(900);
    expect(sk.attempts).toHaveLength(4);

    sk.failNext(1, 400, { body: '{"error":"bad"}' });
    expect(await post(base, markedAlert(3))).toBe(200);
    await until(() => sk.attempts.length === 5, 5000, 'the 400 attempt');
    expect(await post(base, markedAlert(4))).toBe(200);
    await sk.waitForAccepted(3, 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(sk.attempts).toHaveLength(6); // the 400 alert was not retried
    expect(deliveries(sk).map((d) => d.seq)).toEqual([1, 2, 4]);
    const metrics = await (await fetch(base + '/metrics')).text();
    expect(metrics).toMatch(/falco_companion_spool_dead_letters 1/);
    await cli.stop('SIGTERM');

    const list = spoolCmd(state, 'list', '--dead');
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/dead\s+\S+\s+attempts=1 status=400/);
    // retry --dead brings it back; the next start delivers it
    expect(spoolCmd(state, 'retry', '--dead').stdout).toMatch(/1 dead letter/);
    await run(state, sk);
    await sk.waitForAccepted(4, 10_000);
    expect(deliveries(sk).map((d) => d.seq).sort()).toEqual([1, 2, 3, 4]);
    expect(spoolCmd(state, 'purge').status).toBe(2); // needs --yes
  });
  it('when_full: block at spool.max_alerts: 503 + Retry-After while full, accepting again once delivered; every acked alert delivered', async () => {
    const dir = tmp();
    const sk = await sidekick();
    const { base } = await run(join(dir, 'state'), sk, { FALCO_COMPANION_SPOOL_MAX_ALERTS: '50' });
    await sk.down();
    const acked: number[] = [];
    let refused: Response | null = null;
    for (let i = 0; i < 200 && !refused; i++) {
      const res = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: markedAlert(i) });
      if (res.status === 200) {
        acked.push(i);
        await res.arrayBuffer();
      } else refused = res;
    }
    expect(acked).toHaveLength(50);
    expect(refused?.status).toBe(503);
    expect(refused?.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(((await refused?.json()) as { reason: string }).reason).toMatch(/spool \(alerts limit\)/);
    const metrics = await (await fetch(base + '/metrics')).text();
    expect(metrics).toMatch(/falco_companion_spool_refused_total\{limit="alerts"\} [1-9]/);
    await sk.up();
    await sk.waitForAccepted(50, 15_000);
    await until(async () => (await post(base, markedAlert(1000))) === 200, 10_000, 'accepting again');
    acked.push(1000);
    await until(() => checkCovered(sk, acked).missing.length === 0, 10_000, 'all acked delivered');
    expect(checkCovered(sk, acked).duplicates).toBe(0);
  });
});

describe('e2e: the spool command finds state_dir like run', () => {
  it('--state-dir, then FALCO_COMPANION_STATE_DIR, then state_dir in --config; a broken --config exits 2 with file:line:col', () => {
    const dir = tmp();
    // Two state directories told apart by their dead letters: one in A, none in B.
    const [a, b] = [join(dir, 'a'), join(dir, 'b')];
    for (const [d, dead] of [[a, 1], [b, 0]] as const) {
      const db = openStateDb(d);
      migrateSpool(db);
      if (dead) db.prepare(`INSERT INTO spool_dead_letters(id, payload, bytes, received_at, attempts, status, last_error, dead_at, rule, priority) VALUES ('01J0000000000000000000000A', '{}', 2, 0, 1, 400, 'http_400', 0, 'r', 'Warning')`).run();
      db.close();
    }
    const cfg = join(dir, 'config.yaml');
    writeFileSync(cfg, `state_dir: ${a}\n`);
    const stats = (args: string[], env: Record<string, string> = {}): { status: number | null; dead: number | null; stderr: string } => {
      const { FALCO_COMPANION_STATE_DIR: _, ...base } = process.env;
      const r = spawnSync(process.execPath, [CLI, 'spool', 'stats', '--json', ...args], { encoding: 'utf8', timeout: 15_000, env: { ...base, ...env } });
      const m = /"deadLetters":(\d+)/.exec(r.stdout);
      return { status: r.status, dead: m ? Number(m[1]) : null, stderr: r.stderr };
    };
    expect(stats(['--config', cfg])).toMatchObject({ status: 0, dead: 1 });
    expect(stats(['--config', cfg], { FALCO_COMPANION_STATE_DIR: b })).toMatchObject({ status: 0, dead: 0 });
    expect(stats(['--config', cfg, '--state-dir', b])).toMatchObject({ status: 0, dead: 0 });
    expect(stats(['--state-dir', a], { FALCO_COMPANION_STATE_DIR: b })).toMatchObject({ status: 0, dead: 1 });
    writeFileSync(cfg, `state_dir: ${a}\nspool:\n  when_full: sometimes\n`);
    const bad = stats(['--config', cfg]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/config\.yaml:3:\d+: spool\.when_full/);
  });
});
