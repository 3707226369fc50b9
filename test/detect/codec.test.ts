/**
 * The detection-state codec: every value the state contract allows round-trips (identity, LRU
 * order, eviction counts, frozenness kept), anything else is refused with its path, corrupt bytes
 * throw, and — the property that matters — an engine restored from a checkpoint taken at any point
 * of a recorded scenario continues exactly as the engine that never stopped.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { alertFromJson, withEnrichment, type Alert, type EnrichValue } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { NO_ENV, type DetectorEnv } from '../../src/detect/cluster.js';
import { decodeState, encodeState, encodeStateSliced, restoreInto, stateEntries, StateCodecError } from '../../src/detect/codec.js';
import { BoundedMap, retain } from '../../src/detect/detectors/kit.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { LosslessNumber, parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { sig } from '../support/signals.js';
import { scenarioEnv, scenarioLines } from './helpers.js';

const roundTrip = <T>(v: T): T => decodeState(encodeState(v)) as T;

describe('state codec', () => {
  it('round-trips plain data, Map, Set, bigint, LosslessNumber and odd numbers', () => {
    const v = {
      n: [0, 1, -1, 127, 128, -129, 2 ** 31, -(2 ** 40), Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0.5, -0, NaN, Infinity, 1e300],
      s: ['', 'a', 'ünïcødé ✓', 'a'.repeat(1000)],
      b: [true, false, null, undefined],
      big: [0n, -1n, 1_704_067_200_000_000_000n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 80n, -(2n ** 70n)],
      m: new Map<unknown, unknown>([['k', 1], [2, new Set(['x', 3])]]),
      ln: new LosslessNumber('123456789012345678901'),
      nested: { a: { b: { c: [[], {}] } } },
    };
    const back = roundTrip(v);
    expect(back.n.map((x) => (Object.is(x, -0) ? '-0' : x))).toEqual(v.n.map((x) => (Object.is(x, -0) ? '-0' : x)));
    expect(back.s).toEqual(v.s);
    expect(back.b).toEqual(v.b);
    expect(back.big).toEqual(v.big);
    expect(back.m).toEqual(v.m);
    expect(back.ln).toBeInstanceOf(LosslessNumber);
    expect(back.ln.raw).toBe('123456789012345678901');
    expect(back.nested).toEqual(v.nested);
  });

  it('keeps object identity (shared and cyclic references) and frozenness', () => {
    const shared = Object.freeze({ rule: 'r', fields: Object.freeze({ a: 1 }) });
    const cyc: { self?: unknown; list: unknown[] } = { list: [] };
    cyc.self = cyc;
    cyc.list.push(cyc, shared);
    const v = { a: shared, b: [shared, shared], c: new Map([['x', shared]]), cyc };
    const back = roundTrip(v);
    expect(back.a).toBe(back.b[0]);
    expect(back.b[1]).toBe(back.a);
    expect(back.c.get('x')).toBe(back.a);
    expect(Object.isFrozen(back.a)).toBe(true);
    expect(Object.isFrozen(back.a.fields)).toBe(true);
    expect(Object.isFrozen(back.b)).toBe(false);
    expect(back.cyc.self).toBe(back.cyc);
    expect(back.cyc.list[0]).toBe(back.cyc);
    expect(back.cyc.list[1]).toBe(back.a);
  });

  it('keeps a BoundedMap: bound, LRU order and eviction count', () => {
    const m = new BoundedMap<string, number>(3);
    for (const k of ['a', 'b', 'c', 'd']) m.set(k, k.charCodeAt(0));
    m.touch('b');
    const back = roundTrip(m);
    expect(back).toBeInstanceOf(BoundedMap);
    expect(back.max).toBe(3);
    expect(back.evicted).toBe(1);
    expect([...back.entries()]).toEqual([...m.entries()]);
    expect([...back.entries()].map(([k]) => k)).toEqual(['c', 'd', 'b']);
    back.set('e', 1); // evicts the least recently used, as the original would
    expect([...back.entries()].map(([k]) => k)).toEqual(['d', 'b', 'e']);
  });

  it('stores slim Signals compactly: strings and shapes written once', () => {
    const signals = Array.from({ length: 200 }, (_, i) => retain(sig({ kind: 'connect', t: i, container: 'c1', dest: '203.0.113.7', port: 443, exe: '/usr/bin/curl' })));
    const one = encodeState([signals[0]]).length;
    const all = encodeState(signals).length;
    expect(all / 200).toBeLessThan(one / 2.5); // the first pays for every string and shape
    const back = roundTrip(signals);
    expect(back[7]).toEqual(signals[7]);
    expect(back[7]?.alert.timeNs).toBe(signals[7]?.alert.timeNs);
    expect(Object.isFrozen(back[7]?.alert)).toBe(true);
  });

  it('refuses what the state contract excludes, naming where it is', () => {
    class Box {
      v = 1;
    }
    expect(() => encodeState({ a: { b: [1, new Box()] } })).toThrow(/instance of Box.* at a\.b\.1$/);
    expect(() => encodeState({ f: () => 1 })).toThrow(/cannot encode a function at f$/);
    expect(() => encodeState(new Map([['k', Symbol('s')]]))).toThrow(/symbol at k$/);
    expect(() => encodeState(new Date(0))).toThrow(StateCodecError);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => encodeState(deep)).toThrow(/nested deeper/);
  });

  it('rejects foreign, other-version, truncated and trailing bytes', () => {
    const good = encodeState({ a: [1, 2, 3], m: new Map([['x', 'y']]) });
    expect(() => decodeState(Buffer.from('hello world'))).toThrow(/not a falco-companion state/);
    const other = Buffer.from(good);
    other[3] = 99;
    expect(() => decodeState(other)).toThrow(/codec version 99/);
    for (let n = 4; n < good.length; n++) expect(() => decodeState(good.subarray(0, n)), `truncated at ${n}`).toThrow(StateCodecError);
    expect(() => decodeState(Buffer.concat([good, Buffer.from([0])]))).toThrow(/trailing/);
  });

  it('never hangs or throws anything but StateCodecError on mangled bytes', () => {
    const good = encodeState({ list: [1, 'two', 3n, { four: new Set([4]) }], bm: (() => { const b = new BoundedMap<string, number>(4); b.set('k', 1); return b; })() });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.nat(255)), { minLength: 1, maxLength: 4 }), (flips) => {
        const b = Buffer.from(good);
        for (const [i, v] of flips) if (i >= 4) b[i] = v;
        try {
          decodeState(b);
        } catch (err) {
          expect(err).toBeInstanceOf(StateCodecError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('restoreInto keeps the fresh state\'s BoundedMaps (their onDrop and new bound) and copies totals first', () => {
    const make = (max: number) => {
      const st = { total: 0, items: null as unknown as BoundedMap<string, number[]> };
      st.items = new BoundedMap<string, number[]>(max, (v) => (st.total -= v.length));
      return st;
    };
    const old = make(10);
    for (const k of ['a', 'b', 'c', 'd']) {
      old.items.set(k, [1, 2]);
      old.total += 2;
    }
    const fresh = make(3); // a smaller bound after a settings change
    const st = restoreInto(fresh, decodeState(encodeState(old)));
    expect(st).toBe(fresh);
    expect([...st.items.entries()].map(([k]) => k)).toEqual(['b', 'c', 'd']);
    expect(st.items.evicted).toBe(1);
    expect(st.total).toBe(6); // the eviction's onDrop ran against the restored total
    expect(stateEntries(st)).toBe(3);
  });
});

// ---------------------------------------------------------------------------------------------
// Restored engines continue exactly like engines that never stopped.

const DIR = 'test/fixtures/scenarios';
const RECORDED = '../shared/falco-reference/recorded';

function alertsOf(folder: string): Alert[] {
  const lines = scenarioLines(folder);
  const enrichPath = join(folder, 'enrichment.json');
  const enrichment = existsSync(enrichPath) ? (JSON.parse(readFileSync(enrichPath, 'utf8')) as Record<string, Record<string, EnrichValue>>) : {};
  return lines.map((line, i) => {
    const a = alertFromJson(parse(line), { kind: 'replay', component: 'test' });
    const add = enrichment[String(i + 1)];
    return add ? withEnrichment(a, add) : a;
  });
}

function recordedAlerts(file: string): Alert[] {
  return readFileSync(join(RECORDED, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => alertFromJson(parse(l), { kind: 'replay', component: 'test' }));
}

function newEngine(env: DetectorEnv = NO_ENV): DetectionEngine {
  const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
  return new DetectionEngine({ rules, detectors: buildDetectors(rules, DETECTOR_MODULES, env), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0) });
}

/** What a detection says, without the per-emission id. */
function essence(a: Alert): string {
  const { alert_id: _id, ...companion } = a.companion;
  return JSON.stringify({ rule: a.rule, priority: a.priority, time: a.time, output: a.output, companion, fields: a.outputFields });
}

function continueAfterRestore(alerts: Alert[], cut: number, env: DetectorEnv = NO_ENV): { straight: string[]; restored: string[] } {
  const straight = newEngine(env);
  const first = newEngine(env);
  for (const a of alerts.slice(0, cut)) {
    straight.process(a);
    first.process(a);
  }
  const parts = first.checkpointParts(true).map((p) => ({ id: p.id, version: p.version, bytes: encodeState(p.state) }));
  const second = newEngine(env);
  for (const p of parts) expect(second.restorePart(p.id, p.version, decodeState(p.bytes))).toBe('restored');
  const rest = alerts.slice(cut);
  return {
    straight: rest.flatMap((a) => straight.process(a).detections.map(essence)),
    restored: rest.flatMap((a) => second.process(a).detections.map(essence)),
  };
}

const folders = existsSync(DIR) ? readdirSync(DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort() : [];

describe('an engine restored from a checkpoint continues like one that never stopped', () => {
  for (const name of folders) {
    it(name, () => {
      const alerts = alertsOf(join(DIR, name));
      const env = scenarioEnv(join(DIR, name));
      let detections = 0;
      for (const cut of new Set([1, Math.floor(alerts.length / 4), Math.floor(alerts.length / 2), Math.floor((alerts.length * 3) / 4), alerts.length - 1])) {
        const { straight, restored } = continueAfterRestore(alerts, cut, env);
        expect(restored, `cut at ${cut}`).toEqual(straight);
        detections += straight.length;
      }
      // Attack scenarios: at least one cut lands between arming and the detection.
      if (!name.startsWith('benign-')) expect(detections).toBeGreaterThan(0);
    });
  }

  it.skipIf(!existsSync(RECORDED))('the recorded BPFDoor-like chain (real Falco 0.40), cut between arming and trigger', () => {
    const alerts = recordedAlerts('bind-shell-container.jsonl');
    const listen = alerts.findIndex((a) => a.rule === 'Companion signal: listening socket in container');
    expect(listen).toBeGreaterThan(0);
    const { straight, restored } = continueAfterRestore(alerts, listen);
    expect(straight).toHaveLength(1);
    expect(restored).toEqual(straight);
  });
});

/** Drain a sliced encoding, counting its slices; `tick` advances the fake clock per reading. */
function drain(value: unknown, sliceMs: number, tick = 1): { bytes: Buffer; slices: number } {
  let t = 0;
  const steps = encodeStateSliced(value, sliceMs, () => (t += tick));
  let slices = 1;
  for (;;) {
    const r = steps.next();
    if (r.done) return { bytes: r.value, slices };
    slices++;
  }
}

describe('sliced encoding (the periodic checkpoint, across event-loop turns)', () => {
  it('gives the bytes encodeState gives, whatever the slice length', () => {
    const shared = Object.freeze({ k: 'v' });
    const lru = new BoundedMap<string, unknown>(100);
    for (let i = 0; i < 50; i++) lru.set(`k${i}`, { i, at: BigInt(i) * 1_000_000_000n, list: [i, i + 1, i + 2, i + 3], tags: new Set(['a', `t${i % 3}`]), shared });
    const v = { lru, m: new Map([[1, [shared, { deep: { deeper: [1, 'x'] } }]]]), s: new Set([1, 2, 3]), ints: [5, 6, 7, 8, 9], n: 3, frozen: Object.freeze([shared, shared]), big: 2n ** 70n, lossless: new LosslessNumber('12345678901234567890'), again: lru };
    const whole = encodeState(v);
    for (const sliceMs of [0, 1, 3, 1_000_000]) {
      const { bytes } = drain(v, sliceMs);
      expect(Buffer.compare(bytes, whole), `slice ${sliceMs}`).toBe(0);
    }
    expect(drain(v, 0).slices).toBeGreaterThan(50); // yields between entries
    expect(drain(v, 1_000_000).slices).toBe(1);
  });

  it('every shipped detector state and the incidents: the same bytes as in one go', () => {
    const engine = newEngine();
    const alerts = folders.length > 0 ? alertsOf(join(DIR, folders[0] as string)) : [];
    for (const a of alerts) engine.process(a);
    for (const p of engine.checkpointParts(true)) expect(Buffer.compare(drain(p.state, 0).bytes, encodeState(p.state)), p.id).toBe(0);
  });

  it('past one index shard (131 072 strings and objects) references still find what was written first', () => {
    const first = { id: 'first' };
    const items: unknown[] = [first];
    for (let i = 0; i < 140_000; i++) items.push({ s: `s${i}` }); // 140 k objects and 140 k strings
    items.push(first, 's0', { s: 's1' });
    const bytes = encodeState(items);
    expect(Buffer.compare(drain(items, 5).bytes, bytes)).toBe(0);
    const back = decodeState(bytes) as unknown[];
    expect(back[back.length - 3]).toBe(back[0]); // one object, as before
    expect(back.slice(-2)).toEqual(['s0', { s: 's1' }]);
    expect(bytes.length).toBeLessThan(140_000 * 12); // strings and shapes written once
  });

  it('refuses what encodeState refuses, naming where', () => {
    expect(() => drain({ ok: new Map([['a', { f: () => 1 }]]) }, 0)).toThrow(/function at ok\.a\.f/);
    expect(() => drain({ a: [1, { b: { c: [() => 1] } }] }, 0)).toThrow(/function at a\.1\.b\.c\.0$/);
    expect(() => drain({ a: new Set([new Date(0)]) }, 0)).toThrow(/instance of Date .* at a\.<item>$/);
    expect(() => encodeState({ a: new Set([new Date(0)]) })).toThrow(/instance of Date .* at a\.<item>$/);
  });
});
