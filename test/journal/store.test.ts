/**
 * The journal table on a real SQLite file: reads by id, incident, container, newest and event
 * time; folds; retention by count and by age; read-only opening (what report/tune/explain do),
 * also of a database the journal never wrote.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCase } from '../../src/cases/run.js';
import { openJournal } from '../../src/journal/open.js';
import { JournalStore } from '../../src/journal/store.js';
import type { DetectionRecord } from '../../src/journal/types.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { EXAMPLES } from './helpers.js';

function records(name: string): DetectionRecord[] {
  const r = runCase(join(EXAMPLES, name), { records: true });
  expect(r.status).toBe('pass');
  return [...r.records];
}

/** A copy of a record with another id, time, incident and container (for volume and filters). */
function variant(r: DetectionRecord, i: number, over: Partial<DetectionRecord> = {}): DetectionRecord {
  const id = `01JZZZZZZZ${String(i).padStart(16, '0')}`;
  return { ...r, id, timeNs: (BigInt(r.timeNs) + BigInt(i) * 1_000_000_000n).toString(), ...over };
}

describe('JournalStore', () => {
  let dir: string;
  let db: Db;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fc-journal-'));
    db = openStateDb(dir);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps a record whole and finds it by id, incident, container and time', () => {
    const store = new JournalStore(db);
    const [a, b] = records('knock-chain');
    if (!a || !b) throw new Error('knock-chain makes two detections');
    const withIncident = [{ ...a, incident: 'inc-1' }, { ...b, incident: 'inc-1' }];
    expect(store.write(withIncident, [])).toBe(2);
    expect(store.get(a.id)).toEqual({ ...a, incident: 'inc-1' });
    expect(store.get('01JZZZZZZZZZZZZZZZZZZZZZZZ')).toBeNull();
    expect(store.byIncident('inc-1').map((r) => r.id)).toEqual([a.id, b.id]);
    expect(store.byIncident('other')).toEqual([]);
    const cid = a.outputFields['container.id'] as string;
    expect(cid).toHaveLength(12);
    expect(store.byContainer(cid).map((r) => r.id)).toEqual([b.id, a.id]);
    expect(store.byContainer(`${cid}0123456789abcdef`).map((r) => r.id)).toEqual([b.id, a.id]); // a full id matches Falco's 12 characters
    expect(store.byContainer(cid.slice(0, 12).toUpperCase()).length).toBe(2);
    expect(store.byContainer('host')).toEqual([]);
    expect(store.last(1).map((r) => r.id)).toEqual([b.id]);
    expect(store.list({ sinceNs: BigInt(b.timeNs) }).map((r) => r.id)).toEqual([b.id]);
    expect(store.list({ untilNs: BigInt(b.timeNs) }).map((r) => r.id)).toEqual([a.id]);
    expect(store.list({ detector: 'knock' }).length).toBe(2);
    expect(store.list({ detector: 'beacon' })).toEqual([]);
    expect(store.count()).toBe(2);
    // Written twice (a retried batch): kept once.
    expect(store.write([a], [])).toBe(0);
    expect(store.count()).toBe(2);
  });

  it('adds folds to the newest record of the notify key', () => {
    const store = new JournalStore(db);
    const [a] = records('c2-beacon');
    if (!a) throw new Error('c2-beacon makes one detection');
    expect(a.key).not.toBeNull();
    const older = variant(a, 1);
    const newer = variant(a, 2);
    store.write([older, newer], []);
    store.write([], [{ key: a.key as string, count: 3 }]);
    store.write([], [{ key: a.key as string, count: 2 }, { key: 'no such key', count: 9 }]);
    expect(store.get(newer.id)?.folded).toBe(5);
    expect(store.get(older.id)?.folded).toBe(0);
  });

  it('prunes the oldest beyond max_records and what is older than max_age', () => {
    const store = new JournalStore(db);
    const [a] = records('escape-chain');
    if (!a) throw new Error('escape-chain makes one detection');
    const all = Array.from({ length: 30 }, (_, i) => variant(a, i, { recordedAtMs: 1000 + i }));
    store.write(all, []);
    expect(store.prune(2000, 25, 0)).toEqual({ byCount: 5, byAge: 0 });
    expect(store.count()).toBe(25);
    expect(store.get(all[4]?.id as string)).toBeNull();
    expect(store.get(all[5]?.id as string)).not.toBeNull();
    // Age: recorded before now - max_age goes.
    expect(store.prune(1020, 25, 10)).toEqual({ byCount: 0, byAge: 5 });
    expect(store.count()).toBe(20);
    expect(store.last(30).map((r) => r.id)).toEqual(all.slice(10).reverse().map((r) => r.id));
    // Within both bounds: nothing more goes.
    expect(store.prune(1020, 25, 10)).toEqual({ byCount: 0, byAge: 0 });
  });

  it('reads a record of a newer format version as absent, not as garbage', () => {
    const store = new JournalStore(db);
    const [a] = records('escape-chain');
    if (!a) throw new Error('escape-chain makes one detection');
    store.write([{ ...a, v: 99 }], []);
    expect(store.get(a.id)).toBeNull();
    expect(store.count()).toBe(1);
  });

  it('opens read-only next to a writer; a database without a journal reads as empty', () => {
    const empty = openJournal(dir);
    expect(empty.reader.count()).toBe(0);
    expect(empty.reader.last(5)).toEqual([]);
    expect(empty.reader.get('01JZZZZZZZZZZZZZZZZZZZZZZZ')).toBeNull();
    expect(empty.reader.list({})).toEqual([]);
    empty.close();
    const store = new JournalStore(db);
    const [a] = records('k8s-spread');
    if (!a) throw new Error('k8s-spread makes one detection');
    store.write([a], []);
    const j = openJournal(dir);
    expect(j.reader.get(a.id)?.rule).toBe(a.rule);
    expect(() => (j.reader as JournalStore).write([variant(a, 1)], [])).toThrow(/readonly/i);
    j.close();
    expect(() => openJournal(join(dir, 'nowhere'))).toThrow(/no state database/);
  });
});
