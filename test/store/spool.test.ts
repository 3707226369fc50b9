/**
 * The durable spool on real SQLite files: group commits, resume after a
 * reopen, limits (block / drop_oldest / drop_newest), the done() hook, a database that refuses
 * writes and recovers, and the operator functions behind `falco-companion spool`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, serializeAlert, type Alert } from '../../src/alert.js';
import { QueueFullError } from '../../src/errors.js';
import { LosslessNumber } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { alertIdOf } from '../../src/store/alert-id.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Spool, type SpoolConfig } from '../../src/store/spool.js';
import { spoolList, spoolPurge, spoolRetry, spoolStats } from '../../src/store/spool-admin.js';
import { SpoolUnavailableError } from '../../src/store/spool-writer.js';

const base: SpoolConfig = { enabled: true, max_alerts: 1000, max_bytes: 64 * 1024 * 1024, max_age: 0, when_full: 'block', commit_interval: 0, commit_batch: 1024 };

function alert(i: number): Alert {
  return createAlert({
    time: '2026-01-01T00:00:00.123456789Z',
    rule: `rule ${i}`,
    priority: 'Warning',
    source: 'syscall',
    hostname: 'h',
    tags: ['t'],
    outputFields: { seq: i, 'evt.time': new LosslessNumber('1767225600123456789') },
    origin: { kind: 'http', component: 'source/http' },
  });
}

const dirs: string[] = [];
const dbs: Db[] = [];
const spools: Spool[] = [];
afterEach(async () => {
  for (const s of spools.splice(0)) await s.stop(Date.now() + 1000);
  for (const d of dbs.splice(0)) d.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-spool-'));
  dirs.push(d);
  return d;
}

async function open(dir: string, over: Partial<SpoolConfig> = {}, metrics = new Metrics({ collectDefault: false })): Promise<{ spool: Spool; db: Db; metrics: Metrics }> {
  const db = openStateDb(dir);
  dbs.push(db);
  const spool = new Spool({ db, path: join(dir, 'falco-companion.db'), config: { ...base, ...over } as SpoolConfig, logger: silentLogger(), metrics, recoverIntervalMs: 100 });
  spools.push(spool);
  await spool.start();
  return { spool, db, metrics };
}

async function reopen(dir: string, s: { spool: Spool; db: Db }, over: Partial<SpoolConfig> = {}): Promise<{ spool: Spool; db: Db; metrics: Metrics }> {
  await s.spool.stop(Date.now() + 1000);
  s.db.close();
  dbs.splice(dbs.indexOf(s.db), 1);
  return open(dir, over);
}

describe('Spool', () => {
  it('accepts only after the commit, hands alerts to the pipeline in order, delivers and forgets them', async () => {
    const dir = tmp();
    const { spool, db } = await open(dir);
    await Promise.all([0, 1, 2].map((i) => spool.submit(alert(i))));
    // committed: visible through a second connection
    const other = openStateDb(dir);
    dbs.push(other);
    expect((other.prepare('SELECT count(*) AS n FROM spool_alerts').get() as { n: number }).n).toBe(3);
    expect(spool.depth).toBe(3);
    const got: Alert[] = [];
    for (let i = 0; i < 3; i++) got.push((await spool.take()) as Alert);
    expect(got.map((a) => a.outputFields?.['seq'])).toEqual([0, 1, 2]);
    expect(got.every((a) => typeof alertIdOf(a) === 'string')).toBe(true);
    // first: delivered; second: routed away (done without a sink); third: dead letter
    await spool.delivery.markReady(got[0] as Alert, serializeAlert(got[0] as Alert));
    spool.done(got[0] as Alert);
    spool.done(got[1] as Alert);
    await spool.delivery.markReady(got[2] as Alert, serializeAlert(got[2] as Alert));
    spool.done(got[2] as Alert);
    spool.flushNow();
    expect(spool.delivery.readyCount).toBe(2);
    const due = spool.delivery.due(Date.now(), 10);
    expect(due.map((r) => r.id)).toEqual([alertIdOf(got[0] as Alert), alertIdOf(got[2] as Alert)]);
    await spool.delivery.ack(due[0]?.id as string);
    await spool.delivery.deadLetter(due[1]?.id as string, 400, 'http_400: bad');
    expect(spool.size).toBe(0);
    const st = spoolStats(db);
    expect(st).toMatchObject({ received: 0, ready: 0, deadLetters: 1 });
    expect(spoolList(db, { dead: true, limit: 10 })[0]).toMatchObject({ id: due[1]?.id, status: 400, state: 'dead' });
  });

  it('resumes received and ready rows after a reopen (as after a crash)', async () => {
    const dir = tmp();
    const s1 = await open(dir);
    for (let i = 0; i < 5; i++) await s1.spool.submit(alert(i));
    const first = (await s1.spool.take()) as Alert;
    await s1.spool.delivery.markReady(first, serializeAlert(first));
    s1.spool.flushNow();
    const s2 = await reopen(dir, s1);
    expect(s2.spool.resumedCount()).toBe(5);
    expect(s2.spool.delivery.readyCount).toBe(1);
    expect(s2.spool.depth).toBe(4);
    const again: Alert[] = [];
    for (let i = 0; i < 4; i++) again.push((await s2.spool.take()) as Alert);
    expect(again.map((a) => a.outputFields?.['seq'])).toEqual([1, 2, 3, 4]);
    expect(s2.spool.delivery.due(Date.now(), 10).map((r) => r.id)).toEqual([alertIdOf(first)]);
    // new submits after the backlog come next, still in order
    await s2.spool.submit(alert(5));
    expect(((await s2.spool.take()) as Alert).outputFields?.['seq']).toBe(5);
  });

  it('reads a backlog larger than its memory window back from disk without loss or repeats', async () => {
    const dir = tmp();
    const db = openStateDb(dir);
    dbs.push(db);
    const spool = new Spool({ db, path: dir, config: base, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), memoryLimit: 7 });
    spools.push(spool);
    await spool.start();
    await Promise.all(Array.from({ length: 50 }, (_, i) => spool.submit(alert(i))));
    const seqs: unknown[] = [];
    for (let i = 0; i < 50; i++) seqs.push(((await spool.take()) as Alert).outputFields?.['seq']);
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(spool.depth).toBe(0);
  });

  it('block: refuses with QueueFullError at max_alerts, and frees up when rows leave', async () => {
    const { spool } = await open(tmp(), { max_alerts: 3 });
    for (let i = 0; i < 3; i++) await spool.submit(alert(i));
    expect(spool.full).toBe(true);
    await expect(spool.submit(alert(3))).rejects.toBeInstanceOf(QueueFullError);
    let freed = false;
    const w = spool.whenNotFull().then(() => (freed = true));
    const a = (await spool.take()) as Alert;
    spool.done(a);
    await w;
    expect(freed).toBe(true);
    await spool.submit(alert(4));
  });

  it('block: max_bytes counts payload bytes', async () => {
    const { spool } = await open(tmp(), { max_bytes: 64 * 1024 });
    let n = 0;
    let refused = false;
    for (let i = 0; i < 1000 && !refused; i++) {
      try {
        await spool.submit(alert(i));
        n++;
      } catch (err) {
        expect(err).toBeInstanceOf(QueueFullError);
        refused = true;
      }
    }
    expect(refused).toBe(true);
    expect(n).toBeGreaterThan(10);
    expect(n).toBeLessThan(1000);
  });

  it('drop_oldest deletes the oldest rows and counts them; drop_newest accepts and drops the new alert', async () => {
    const m1 = new Metrics({ collectDefault: false });
    const a = await open(tmp(), { max_alerts: 3, when_full: 'drop_oldest' }, m1);
    for (let i = 0; i < 5; i++) await a.spool.submit(alert(i));
    expect(a.spool.size).toBe(3);
    expect(spoolList(a.db, { dead: false, limit: 10 }).map((r) => r.rule)).toEqual(['rule 2', 'rule 3', 'rule 4']);
    expect(await m1.text()).toMatch(/falco_companion_discarded_total\{component="spool",reason="drop_oldest"\} 2/);

    const m2 = new Metrics({ collectDefault: false });
    const b = await open(tmp(), { max_alerts: 3, when_full: 'drop_newest' }, m2);
    for (let i = 0; i < 5; i++) await b.spool.submit(alert(i));
    expect(b.spool.full).toBe(false);
    expect(spoolList(b.db, { dead: false, limit: 10 }).map((r) => r.rule)).toEqual(['rule 0', 'rule 1', 'rule 2']);
    expect(await m2.text()).toMatch(/falco_companion_discarded_total\{component="spool",reason="drop_newest"\} 2/);
  });

  it('a database that refuses writes: submits rejected (503), not ready, ready rows kept; recovers without a restart', async () => {
    const { spool, db } = await open(tmp());
    await spool.submit(alert(0));
    const a = (await spool.take()) as Alert;
    db.pragma('query_only = ON'); // every write now fails with SQLITE_READONLY
    const p = spool.delivery.markReady(a, serializeAlert(a));
    spool.flushNow();
    const err = await spool.submit(alert(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpoolUnavailableError);
    expect(err).toBeInstanceOf(QueueFullError);
    expect(String((err as Error).message)).toMatch(/SQLITE_READONLY/);
    expect(spool.health().ready).toBe(false);
    expect(spool.full).toBe(true);
    await expect(spool.submit(alert(2))).rejects.toBeInstanceOf(SpoolUnavailableError);
    db.pragma('query_only = OFF');
    await spool.whenNotFull();
    await p;
    expect(spool.health().ready).toBe(true);
    expect(spool.delivery.readyCount).toBe(1);
    await spool.submit(alert(3));
    expect(spool.size).toBe(2);
  });

  it('operator functions: retry makes ready rows due now and brings dead letters back; purge empties', async () => {
    const { spool, db } = await open(tmp());
    for (let i = 0; i < 2; i++) await spool.submit(alert(i));
    const x = (await spool.take()) as Alert;
    const y = (await spool.take()) as Alert;
    await spool.delivery.markReady(x, serializeAlert(x));
    await spool.delivery.markReady(y, serializeAlert(y));
    spool.flushNow();
    await spool.delivery.retryLater(alertIdOf(x) as string, Date.now() + 3_600_000, 'http_503: later');
    await spool.delivery.deadLetter(alertIdOf(y) as string, 422, 'http_422');
    expect(spool.delivery.due(Date.now(), 10)).toHaveLength(0);
    expect(spoolStats(db).deadLetters).toBe(1);
    expect(spoolRetry(db, { dead: false })).toBe(1);
    expect(spool.delivery.due(Date.now(), 10)).toHaveLength(1);
    expect(spoolRetry(db, { dead: true })).toBe(1);
    expect(spoolStats(db)).toMatchObject({ ready: 2, deadLetters: 0 });
    expect(spoolPurge(db, { dead: false })).toBe(2);
    expect(spoolStats(db).ready).toBe(0);
  });
  it('a database locked by another process beyond busy_timeout: refused with SQLITE_BUSY, recovers when the lock is released', async () => {
    const dir = tmp();
    const { spool, db } = await open(dir);
    db.pragma('busy_timeout = 50');
    const other = openStateDb(dir);
    dbs.push(other);
    other.exec('BEGIN IMMEDIATE');
    const err = await spool.submit(alert(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpoolUnavailableError);
    expect((err as SpoolUnavailableError).sqliteCode).toMatch(/^SQLITE_BUSY/);
    expect((err as Error).message).toContain(dir);
    expect(spool.health().ready).toBe(false);
    other.exec('COMMIT');
    await spool.whenNotFull();
    await spool.submit(alert(2));
    expect(spool.size).toBe(1);
  });

  it('a corrupt database file: opening fails with the path and the cause', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'falco-companion.db'), Buffer.alloc(8192, 7));
    expect(() => openStateDb(dir)).toThrow(new RegExp(`${join(dir, 'falco-companion.db').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*(not a database|malformed)`));
  });
});
