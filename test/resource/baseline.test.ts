/** Resource baselines in a real SQLite state database: restore on start, slot expiry, bounds. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { ResourceBaselines, type BaselineSettings } from '../../src/resource/baseline.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import type { ChangeSink } from '../../src/cluster/types.js';
import { T0 } from './sim.js';

const S = 1_000_000_000n;
const SETTINGS: BaselineSettings = { windowMs: 3_600_000, slots: 6, learningPeriodMs: 600_000, minSamples: 20, maxKeys: 3 };

let dir: string;
const dbs: Db[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-resource-baseline-'));
});
afterEach(() => {
  for (const d of dbs.splice(0)) if (d.open) d.close();
  rmSync(dir, { recursive: true, force: true });
});

function make(settings: BaselineSettings = SETTINGS): { b: ResourceBaselines; m: Metrics; db: Db } {
  const db = openStateDb(dir);
  dbs.push(db);
  const m = new Metrics({ collectDefault: false });
  const b = new ResourceBaselines({ settings, db, logger: silentLogger(), metrics: m });
  b.load();
  return { b, m, db };
}

async function metric(m: Metrics, name: string): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => l.startsWith(`falco_companion_${name}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('ResourceBaselines', () => {
  it('judges nothing before the learning period and min_samples, then gives robust statistics', () => {
    const { b } = make();
    for (let i = 0; i < 30; i++) b.add('k|cpu', i % 10 === 0 ? 5 : 1, T0 + BigInt(i) * 10n * S);
    const early = b.stats('k|cpu', T0 + 290n * S);
    expect(early?.learnt).toBe(false); // 290 s < 600 s
    for (let i = 30; i < 70; i++) b.add('k|cpu', 1, T0 + BigInt(i) * 10n * S);
    const st = b.stats('k|cpu', T0 + 700n * S);
    expect(st?.learnt).toBe(true);
    expect(st?.median).toBeGreaterThan(0.9);
    expect(st?.median).toBeLessThan(1.1);
    expect(st?.p99).toBeGreaterThan(4.5); // the occasional 5s are the peaks
    expect(st?.n).toBe(70);
  });

  it('is restored from the state database on start, and slots that left the window are deleted', () => {
    const a = make();
    for (let i = 0; i < 100; i++) a.b.add('img|cpu', 2, T0 + BigInt(i) * 10n * S);
    expect(a.b.flush()).toBeGreaterThan(0);
    expect(a.b.flush()).toBe(0); // nothing changed since
    const before = a.b.stats('img|cpu', T0 + 1000n * S);
    a.db.close();
    const b = make();
    const after = b.b.stats('img|cpu', T0 + 1000n * S);
    expect(after).toEqual(before);
    expect(after?.learnt).toBe(true);
    // Two hours later the whole window has moved on: the key starts learning again.
    b.b.add('img|cpu', 7, T0 + 8000n * S);
    const later = b.b.stats('img|cpu', T0 + 8000n * S);
    expect(later?.n).toBe(1);
    expect(later?.learnt).toBe(false);
    b.b.flush();
    const rows = b.db.prepare("SELECT COUNT(*) AS n FROM resource_baseline_slots WHERE key = 'img|cpu'").get() as { n: number };
    expect(rows.n).toBe(1);
  });

  it('keeps at most max_keys, evicting the least recently updated (counted, rows deleted)', async () => {
    const { b, m, db } = make();
    for (const k of ['a', 'b', 'c', 'd']) b.add(k, 1, T0);
    b.add('b', 1, T0 + S);
    b.add('e', 1, T0 + 2n * S); // evicts the least recently updated: a, then c
    expect(b.size).toBe(3);
    expect(b.stats('a', T0 + 3n * S)).toBeNull();
    expect(b.stats('c', T0 + 3n * S)).toBeNull();
    expect(b.stats('b', T0 + 3n * S)?.n).toBe(2);
    expect(await metric(m, 'resource_baseline_evictions_total')).toBe(2);
    b.flush();
    const keys = (db.prepare('SELECT key FROM resource_baseline_keys ORDER BY key').all() as { key: string }[]).map((r) => r.key);
    expect(keys).toEqual(['b', 'd', 'e']);
  });

  it('an unreadable slot row is skipped and counted at load, not a crash', async () => {
    const a = make();
    a.b.add('x|cpu', 1, T0);
    a.b.flush();
    a.db.prepare("UPDATE resource_baseline_slots SET sketch = 'garbage'").run();
    a.db.close();
    const { b, m } = make();
    expect(b.stats('x|cpu', T0)).toBeNull();
    expect((await m.text()).includes('code="E_BASELINE_CORRUPT"} 1')).toBe(true);
  });
});

describe('resource baselines shared through the cluster store', () => {
  /** The cluster store's outbox as ClusterSync exposes it (ChangeSink): what was handed over. */
  const outbox = (): { puts: { ns: string; group: string; field: string; tuple: readonly unknown[] }[]; put: ChangeSink['put'] } => {
    const puts: { ns: string; group: string; field: string; tuple: readonly unknown[] }[] = [];
    return { puts, put: (ns, group, field, _ops, tuple) => void puts.push({ ns, group, field, tuple }) };
  };

  it('samples are merged per baseline and handed over once per flush; per-container baselines stay local', () => {
    const sink = outbox();
    const b = new ResourceBaselines({ settings: { ...SETTINGS, maxKeys: 100 }, db: null, cluster: sink, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    for (let i = 0; i < 30; i++) {
      b.add('workload:shop/api/app|cpu', i === 7 ? 4 : 1, T0 + BigInt(i) * 10n * S);
      b.add('container:0123456789ab|cpu', 1, T0 + BigInt(i) * 10n * S);
    }
    expect(sink.puts).toEqual([]);
    b.flush();
    const ms = Number(T0 / 1_000_000n);
    expect(sink.puts).toEqual([{ ns: 'rb', group: 'workload:shop/api/app', field: 'cpu', tuple: [ms, ms + 290_000, 4000, 30, 33_000] }]);
    b.flush();
    expect(sink.puts).toHaveLength(1); // nothing new, nothing handed over
  });

  it('more baselines waiting than maxKeys are handed over early (the waiting samples stay bounded)', () => {
    const sink = outbox();
    const b = new ResourceBaselines({ settings: SETTINGS, db: null, cluster: sink, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    for (let w = 0; w < 7; w++) b.add(`workload:shop/app${w}/main|cpu`, 1, T0);
    expect(sink.puts.length).toBe(6); // two early hand-overs of 3
    b.flush();
    expect(sink.puts.map((p) => p.group).sort()).toEqual(Array.from({ length: 7 }, (_, w) => `workload:shop/app${w}/main`).sort());
  });
});
