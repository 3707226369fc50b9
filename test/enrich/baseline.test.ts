import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EgressBaseline, type BaselineOptions } from '../../src/enrich/baseline.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { BASE_NS as T0, secNs } from '../support/falco-alerts.js';

const S = secNs(1);

let dir: string;
const dbs: Db[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-baseline-'));
});
afterEach(() => {
  for (const d of dbs.splice(0)) if (d.open) d.close();
  rmSync(dir, { recursive: true, force: true });
});

function make(over: Partial<BaselineOptions> = {}): { b: EgressBaseline; db: Db; m: Metrics } {
  const db = openStateDb(dir);
  dbs.push(db);
  const m = new Metrics({ collectDefault: false });
  const b = new EgressBaseline({ db, learningPeriodMs: 3_600_000, maxPerImage: 100, maxTotal: 1000, maxImages: 100, flushIntervalMs: 60_000, logger: silentLogger(), metrics: m, ...over });
  b.load();
  return { b, db, m };
}

async function evictions(m: Metrics, reason: string): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => l.startsWith(`falco_companion_egress_baseline_evictions_total{reason="${reason}"}`));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('EgressBaseline', () => {
  it('learning period runs on event time from the image’s first destination', () => {
    const { b } = make();
    expect(b.isNew('nginx', '93.184.216.34', 443, T0)).toEqual({ newForImage: true, learning: true });
    expect(b.isNew('nginx', '93.184.216.34', 443, T0 + 10n * S)).toEqual({ newForImage: false, learning: true });
    expect(b.isNew('nginx', 'api.example.com', 443, T0 + 3599n * S)).toEqual({ newForImage: true, learning: true });
    expect(b.isNew('nginx', '93.184.216.34', 80, T0 + 3600n * S)).toEqual({ newForImage: true, learning: false }); // other port
    expect(b.isNew('nginx', '93.184.216.34', 443, T0 + 7200n * S)).toEqual({ newForImage: false, learning: false });
    // Another image has its own learning period, starting at its own first event.
    expect(b.isNew('redis', '93.184.216.34', 443, T0 + 7200n * S)).toEqual({ newForImage: true, learning: true });
    // A late, older event moves the learning start back.
    expect(b.isNew('redis', '10.0.0.1', 6379, T0)).toEqual({ newForImage: true, learning: true });
    expect(b.isNew('redis', '10.0.0.2', 6379, T0 + 3601n * S)).toEqual({ newForImage: true, learning: false });
  });

  it('writes in batches and survives a reopen', () => {
    const first = make();
    first.b.isNew('app', '1.1.1.1', 53, T0);
    first.b.isNew('app', 'c2.example', 8443, T0 + 5n * S);
    // Nothing is written on the hot path.
    expect((first.db.prepare('SELECT COUNT(*) AS n FROM egress_baseline').get() as { n: number }).n).toBe(0);
    expect(first.b.pendingWrites).toBe(3);
    expect(first.b.flush()).toBe(3);
    expect(first.b.pendingWrites).toBe(0);
    expect((first.db.prepare('SELECT COUNT(*) AS n FROM egress_baseline').get() as { n: number }).n).toBe(2);
    first.b.isNew('app', '8.8.8.8', 53, T0 + 6n * S);
    return first.b.stop(Date.now() + 1000).then(() => {
      first.db.close();
      const again = make();
      expect(again.b.size).toBe(3);
      expect(again.b.isNew('app', 'c2.example', 8443, T0 + 100n * S)).toEqual({ newForImage: false, learning: true });
      expect(again.b.isNew('app', '8.8.8.8', 53, T0 + 100n * S).newForImage).toBe(false);
      // The learning start (first destination of the image) was persisted too.
      expect(again.b.isNew('app', '9.9.9.9', 53, T0 + 3600n * S)).toEqual({ newForImage: true, learning: false });
      const row = again.db.prepare('SELECT first_ns FROM egress_baseline_images WHERE image = ?').safeIntegers(true).get('app') as { first_ns: bigint };
      expect(row.first_ns).toBe(T0);
    });
  });

  it('bounds per image, in total and in images; least recently seen goes first; evictions counted', async () => {
    const { b, m } = make({ maxPerImage: 3, maxTotal: 5, maxImages: 3 });
    for (let i = 1; i <= 3; i++) b.isNew('a', `10.0.0.${i}`, 80, T0 + BigInt(i) * S);
    b.isNew('a', '10.0.0.1', 80, T0 + 10n * S); // touch .1: .2 is now the oldest of image a
    b.isNew('a', '10.0.0.4', 80, T0 + 11n * S);
    expect(await evictions(m, 'per_image')).toBe(1);
    expect(b.isNew('a', '10.0.0.1', 80, T0 + 12n * S).newForImage).toBe(false);
    expect(b.isNew('a', '10.0.0.2', 80, T0 + 13n * S).newForImage).toBe(true); // was evicted
    expect(await evictions(m, 'per_image')).toBe(2); // .3 went this time
    // Total bound: 3 in a, then 3 in b → the least recently seen overall (in a) is evicted.
    b.isNew('b', '10.1.0.1', 80, T0 + 20n * S);
    b.isNew('b', '10.1.0.2', 80, T0 + 21n * S);
    b.isNew('b', '10.1.0.3', 80, T0 + 22n * S);
    expect(b.size).toBe(5);
    expect(await evictions(m, 'total')).toBe(1);
    // Images bound: a fourth image evicts the least recently seen image with its destinations.
    b.isNew('c', '10.2.0.1', 80, T0 + 30n * S);
    b.isNew('d', '10.3.0.1', 80, T0 + 31n * S);
    expect(b.imageCount).toBe(3);
    expect(await evictions(m, 'image')).toBe(1);
    expect(b.isNew('a', '10.0.0.1', 80, T0 + 40n * S)).toEqual({ newForImage: true, learning: true }); // a starts over
    expect(b.size).toBeLessThanOrEqual(5);
  });

  it('evictions reach the database and shrunk bounds apply at load', async () => {
    const first = make({ maxPerImage: 2 });
    first.b.isNew('x', 'one.example', 443, T0);
    first.b.isNew('x', 'two.example', 443, T0 + S);
    first.b.flush();
    first.b.isNew('x', 'three.example', 443, T0 + 2n * S);
    first.b.flush();
    const rows = first.db.prepare('SELECT dest FROM egress_baseline ORDER BY dest').all() as { dest: string }[];
    expect(rows.map((r) => r.dest)).toEqual(['three.example', 'two.example']);
    first.db.close();
    const again = make({ maxPerImage: 1 });
    expect(again.b.size).toBe(1);
    expect(await evictions(again.m, 'per_image')).toBe(1);
    expect(again.b.isNew('x', 'three.example', 443, T0 + 3n * S).newForImage).toBe(false); // most recent kept
  });

  it('a failing flush keeps the changes for the next one', async () => {
    const { b, db, m } = make();
    b.isNew('y', '192.0.2.1', 1, T0);
    db.exec('ALTER TABLE egress_baseline RENAME TO egress_baseline_moved');
    expect(b.flush()).toBe(0);
    expect(b.pendingWrites).toBe(2);
    expect(b.health().detail).toMatch(/flush failing/);
    db.exec('ALTER TABLE egress_baseline_moved RENAME TO egress_baseline');
    expect(b.flush()).toBe(2);
    expect(await m.text()).toMatch(/falco_companion_egress_baseline_flushes_total\{result="error"\} 1/);
  });
  it('a flood between two timer ticks keeps the pending set bounded (flushes at maxPending) and writes no deletes for rows never written', async () => {
    const { b, db, m } = make({ maxPerImage: 50, maxTotal: 200, maxPending: 100 });
    for (let i = 0; i < 5000; i++) {
      b.isNew(`img-${i % 7}`, `203.0.${(i >> 8) & 255}.${i & 255}`, 1024 + i, T0 + BigInt(i) * S);
      expect(b.pendingWrites).toBeLessThan(100);
    }
    expect(b.size).toBeLessThanOrEqual(200);
    b.flush();
    // The table holds exactly what memory holds: evicted rows were deleted, never-written ones skipped.
    expect((db.prepare('SELECT COUNT(*) AS n FROM egress_baseline').get() as { n: number }).n).toBe(b.size);
    expect((await evictions(m, 'per_image')) + (await evictions(m, 'total'))).toBe(5000 - b.size);
  });
});

describe('EgressBaseline as a replica of the cluster store', () => {
  const MIN = 60n * S;
  function withSink(): { b: EgressBaseline; puts: { group: string; field: string; tuple: readonly unknown[] }[] } {
    const puts: { group: string; field: string; tuple: readonly unknown[] }[] = [];
    const { b } = make({ cluster: { put: (_ns, group, field, _ops, tuple) => puts.push({ group, field, tuple }) } });
    return { b, puts };
  }
  const ms = (ns: bigint): number => Number(ns / 1_000_000n);

  it('tells the shared store what it learned at a flush; a newer last seen alone at most every 10 minutes, with the counts since', () => {
    const { b, puts } = withSink();
    b.isNew('app', '192.0.2.1', 443, T0);
    b.isNew('app', '192.0.2.1', 443, T0 + S);
    expect(puts).toEqual([]); // nothing on the hot path
    b.flush();
    expect(puts).toEqual([
      { group: 'app', field: '~', tuple: [ms(T0), ms(T0 + S)] },
      { group: 'app', field: '192.0.2.1|443', tuple: [ms(T0), ms(T0 + S), 2] },
    ]);
    puts.length = 0;
    b.isNew('app', '192.0.2.1', 443, T0 + 2n * MIN);
    b.flush(); // written locally (last seen moved a minute), not yet shared
    expect(puts).toEqual([]);
    b.isNew('app', '192.0.2.1', 443, T0 + 11n * MIN);
    b.flush();
    expect(puts).toContainEqual({ group: 'app', field: '192.0.2.1|443', tuple: [ms(T0), ms(T0 + 11n * MIN), 2] });
    puts.length = 0;
    b.isNew('app', '192.0.2.1', 443, T0 - MIN); // a late, earlier event: first seen moved, shared at once
    b.flush();
    expect(puts).toContainEqual({ group: 'app', field: '192.0.2.1|443', tuple: [ms(T0 - MIN), ms(T0 + 11n * MIN), 1] });
  });

  it('merges other nodes\' entries (first min, last max) without sharing them back, and they are known', () => {
    const { b, puts } = withSink();
    b.mergeRemote('web', null, 0, ms(T0), ms(T0 + 5n * MIN));
    b.mergeRemote('web', '203.0.113.9', 443, ms(T0), ms(T0 + 5n * MIN));
    b.flush();
    expect(puts).toEqual([]);
    expect(b.isNew('web', '203.0.113.9', 443, T0 + 2n * 3600n * S)).toEqual({ newForImage: false, learning: false });
    // an older first seen from another node ends the learning period earlier
    expect(b.isNew('web', '203.0.113.10', 443, T0 + 30n * MIN).learning).toBe(true);
    b.mergeRemote('web', null, 0, ms(T0 - 3600n * S), ms(T0));
    expect(b.isNew('web', '203.0.113.11', 443, T0 + 30n * MIN).learning).toBe(false);
  });

  it('a full bound skips remote entries older than everything it keeps', () => {
    const { b } = withSink();
    for (let i = 0; i < 100; i++) b.isNew('img', `192.0.2.${i}`, 80, T0 + BigInt(i) * S);
    b.mergeRemote('img', '198.51.100.1', 80, ms(T0) - 1000, ms(T0) - 1000);
    expect(b.isNew('img', '198.51.100.1', 80, T0 + 200n * S).newForImage).toBe(true);
  });
});
