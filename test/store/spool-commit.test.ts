/**
 * The spool writer's adaptive group commit (src/store/spool-writer.ts `schedule()`), on a real
 * SQLite file: a lone submit commits in the turn it was made (no timer, not the next turn), what
 * arrives together shares one commit, the pipeline's `done` rides with the next commit, and a lone
 * `done` still commits on its own after LAZY_MS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Spool, type SpoolConfig } from '../../src/store/spool.js';
import { LAZY_MS } from '../../src/store/spool-writer.js';

const base: SpoolConfig = { enabled: true, max_alerts: 1000, max_bytes: 64 * 1024 * 1024, max_age: 0, when_full: 'block', commit_interval: 0, commit_batch: 1024 };

const alert = (i: number): Alert =>
  createAlert({ time: '2026-01-01T00:00:00.123456789Z', rule: `rule ${i}`, priority: 'Warning', outputFields: { seq: i }, origin: { kind: 'http', component: 'source/http' } });

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function open(over: Partial<SpoolConfig> = {}): Promise<{ spool: Spool; db: Db; metrics: Metrics }> {
  const dir = mkdtempSync(join(tmpdir(), 'fc-commit-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const db = openStateDb(dir);
  cleanup.push(() => void db.close());
  const metrics = new Metrics({ collectDefault: false });
  const spool = new Spool({ db, path: join(dir, 'falco-companion.db'), config: { ...base, ...over } as SpoolConfig, logger: silentLogger(), metrics });
  await spool.start();
  cleanup.push(() => spool.stop(Date.now() + 1000));
  return { spool, db, metrics };
}

const commits = async (m: Metrics): Promise<number> => Number(/falco_companion_spool_commit_seconds_count (\d+)/.exec(await m.text())?.[1] ?? 0);
const rows = (db: Db): number => (db.prepare('SELECT count(*) AS n FROM spool_alerts').get() as { n: number }).n;
/** Resolves in the check phase of this event-loop turn (after its I/O and microtasks). */
const endOfTurn = (): Promise<'turn'> => new Promise((r) => setImmediate(() => r('turn')));

describe('spool writer: adaptive group commit', () => {
  it('a lone submit is committed before the turn ends: no timer, no wait for the next turn', async () => {
    const { spool, db, metrics } = await open();
    const order: string[] = [];
    const turn = endOfTurn().then(() => order.push('turn')); // queued first
    const kept = spool.submit(alert(0)).then(() => order.push('kept'));
    await Promise.all([kept, turn]);
    expect(order).toEqual(['kept', 'turn']);
    expect(rows(db)).toBe(1);
    expect(await commits(metrics)).toBe(1);
  });

  it('with commit_interval set, a lone submit still does not wait for it', async () => {
    const { spool } = await open({ commit_interval: 1000 });
    const t0 = performance.now();
    await spool.submit(alert(0));
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it('submits made together share one commit; a burst right after it shares the next one', async () => {
    const { spool, metrics } = await open();
    await Promise.all([0, 1, 2].map((i) => spool.submit(alert(i))));
    expect(await commits(metrics)).toBe(1);
    // The commit above opened a window until the end of the turn: these two join it together.
    await Promise.all([spool.submit(alert(3)), spool.submit(alert(4))]);
    expect(await commits(metrics)).toBe(2);
    expect(spool.size).toBe(5);
  });

  it("the pipeline's done rides with the next commit instead of committing alone", async () => {
    const { spool, db, metrics } = await open();
    await spool.submit(alert(0));
    const a = (await spool.take()) as Alert;
    spool.done(a);
    await endOfTurn();
    await endOfTurn();
    expect(rows(db)).toBe(1); // the delete waits (nobody waits for it)
    const before = await commits(metrics);
    await spool.submit(alert(1));
    expect(await commits(metrics)).toBe(before + 1); // one transaction: the delete and the insert
    expect(rows(db)).toBe(1);
    expect(spool.size).toBe(1);
  });

  it('a lone done is committed after LAZY_MS', async () => {
    const { spool, db } = await open();
    await spool.submit(alert(0));
    spool.done((await spool.take()) as Alert);
    const until = Date.now() + 5000;
    while (rows(db) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, LAZY_MS));
    expect(rows(db)).toBe(0);
    expect(spool.size).toBe(0);
  });

  it('a full spool (block) frees its room at once: done is not deferred while a source waits', async () => {
    const { spool, db } = await open({ max_alerts: 1 });
    await spool.submit(alert(0));
    expect(spool.full).toBe(true);
    const freed = spool.whenNotFull();
    spool.done((await spool.take()) as Alert);
    const t0 = performance.now();
    await freed;
    expect(performance.now() - t0).toBeLessThan(LAZY_MS);
    expect(rows(db)).toBe(0);
  });
});
