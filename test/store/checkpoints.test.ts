/**
 * File input checkpoints in the spool (real SQLite files): committed with the alerts before them,
 * never without them (also when a failed commit splits them across batches), pruned, and a state
 * directory from the version before checkpoints opens cleanly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import type { FileCheckpoint } from '../../src/store/checkpoints.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Spool, type SpoolConfig } from '../../src/store/spool.js';
import { SpoolUnavailableError } from '../../src/store/spool-writer.js';

const base: SpoolConfig = { enabled: true, max_alerts: 1000, max_bytes: 64 * 1024 * 1024, max_age: 0, when_full: 'block', commit_interval: 0, commit_batch: 1024 };

const alert = (i: number): Alert =>
  createAlert({ time: '2026-01-01T00:00:00.123456789Z', rule: `rule ${i}`, priority: 'Warning', source: 'syscall', hostname: 'h', outputFields: { seq: i }, origin: { kind: 'file', component: 'source/file' } });

const cp = (offset: number, path = '/var/log/falco/events.json', updatedAt = Date.now()): FileCheckpoint => ({ path, dev: '2049', ino: '18446744073709551000', offset, fpLen: 12, fp: 'ab'.repeat(32), updatedAt });

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function open(dir: string, over: Partial<SpoolConfig> = {}): Promise<{ spool: Spool; db: Db; metrics: Metrics }> {
  const db = openStateDb(dir);
  const metrics = new Metrics({ collectDefault: false });
  const spool = new Spool({ db, path: join(dir, 'falco-companion.db'), config: { ...base, ...over } as SpoolConfig, logger: silentLogger(), metrics, recoverIntervalMs: 50 });
  await spool.start();
  cleanup.push(() => void db.close());
  cleanup.push(() => spool.stop(Date.now() + 1000));
  return { spool, db, metrics };
}

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-cp-'));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const commits = async (m: Metrics): Promise<number> => Number(/falco_companion_spool_commit_seconds_count (\d+)/.exec(await m.text())?.[1] ?? 0);

describe('input checkpoints in the spool', () => {
  it('a checkpoint saved right behind its alerts commits in their transaction, and survives a reopen', async () => {
    const dir = tmp();
    const { spool, metrics } = await open(dir);
    expect(spool.checkpoints.load('/var/log/falco/events.json')).toBeNull();
    const before = await commits(metrics);
    const kept = [spool.submit(alert(0)), spool.submit(alert(1))];
    spool.checkpoints.save(cp(100));
    await Promise.all(kept);
    expect(await commits(metrics)).toBe(before + 1);
    expect(spool.checkpoints.load('/var/log/falco/events.json')).toMatchObject({ offset: 100, ino: '18446744073709551000', fpLen: 12 });
    spool.checkpoints.save(cp(200));
    await spool.stop(Date.now() + 1000);
    const again = await open(dir);
    expect(again.spool.checkpoints.load('/var/log/falco/events.json')?.offset).toBe(200);
  });

  it('a failed commit refuses the alerts and drops the checkpoints waiting behind it, also past the batch boundary', async () => {
    const { spool, db } = await open(tmp(), { commit_batch: 2 });
    spool.checkpoints.save(cp(10));
    spool.flushNow();
    db.pragma('query_only = ON'); // the next commit fails with SQLITE_READONLY
    const results = [0, 1, 2].map((i) => spool.submit(alert(i)).then(() => 'kept', (e: unknown) => e));
    spool.checkpoints.save(cp(300)); // behind alert 2, in the next batch
    spool.flushNow(); // batch [0, 1] fails
    for (const r of await Promise.all(results)) expect(r).toBeInstanceOf(SpoolUnavailableError);
    db.pragma('query_only = OFF');
    await spool.whenNotFull(); // recovered: whatever was kept for a retry is committed
    spool.flushNow();
    // The position did not move past alerts that were never kept.
    expect(spool.checkpoints.load('/var/log/falco/events.json')?.offset).toBe(10);
    expect(spool.size).toBe(0);
  });

  it('prunes checkpoints of other paths not updated for long, and caps their number; the current path is kept', async () => {
    const { spool } = await open(tmp());
    const old = Date.now() - 40 * 86_400_000;
    spool.checkpoints.save(cp(1, '/current', old));
    spool.checkpoints.save(cp(2, '/old', old));
    for (let i = 0; i < 5; i++) spool.checkpoints.save(cp(3, `/recent-${i}`, Date.now() - i * 1000));
    spool.checkpoints.prune('/current', 30 * 86_400_000, 3);
    spool.flushNow();
    expect(spool.checkpoints.load('/current')?.offset).toBe(1);
    expect(spool.checkpoints.load('/old')).toBeNull();
    const recent = [0, 1, 2, 3, 4].filter((i) => spool.checkpoints.load(`/recent-${i}`) !== null);
    expect(recent).toEqual([0, 1, 2]);
  });

  it('a state directory from the version before checkpoints (no table) opens, migrates and keeps its alerts', async () => {
    const dir = tmp();
    const first = await open(dir);
    await first.spool.submit(alert(7));
    await first.spool.stop(Date.now() + 1000);
    // Exactly what the previous version left: the spool namespace at version 2, no checkpoint table.
    first.db.exec("DROP TABLE input_checkpoints; UPDATE schema_versions SET version = 2 WHERE namespace = 'spool'");
    const { spool, db } = await open(dir);
    expect(spool.resumedCount()).toBe(1);
    expect(spool.checkpoints.load('/var/log/falco/events.json')).toBeNull();
    expect((db.prepare("SELECT version FROM schema_versions WHERE namespace = 'spool'").get() as { version: number }).version).toBe(3);
    spool.checkpoints.save(cp(5));
    await spool.submit(alert(8));
    expect(spool.checkpoints.load('/var/log/falco/events.json')?.offset).toBe(5);
  });
});
