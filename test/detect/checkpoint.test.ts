/**
 * Detection state checkpoints in a real SQLite state database (temp dir): an armed chain saved by
 * one engine is completed by the next; an old-version or corrupt part starts that detector fresh
 * with a warning and a counter while the others are restored; only changed parts are written; a
 * replay never reads or writes the detection state.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { DetectCheckpointer } from '../../src/detect/checkpoint.js';
import { decodeState, encodeState } from '../../src/detect/codec.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import type { Detector } from '../../src/detect/types.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import { until } from '../support/wait.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { DetectStateStore } from '../../src/store/detect-state.js';
import { buildApp } from '../../src/wiring.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { alertAt, DETECTOR_SPECS, detectorsFrom } from './helpers.js';
import { serializeAlert } from '../../src/alert.js';

const door = { 'proc.pid': 500, 'proc.ppid': 1, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x' };
const RAW = 'Companion signal: packet or raw socket created';
const LISTEN = 'Companion signal: listening socket in container';
const listen = (t: number) => alertAt(t, LISTEN, { 'proc.pid': 601, 'proc.ppid': 500, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x', 'fd.name': '0.0.0.0:8080->0.0.0.0:8080' });

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const d of dbs.splice(0)) d.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-detect-state-'));
  dirs.push(d);
  return d;
}

function open(dir: string): Db {
  const db = openStateDb(dir);
  dbs.push(db);
  return db;
}

function node(dir: string, rulesText?: string) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  const metrics = new Metrics({ collectDefault: false });
  const clock = new ManualClock(1_700_000_000_000);
  const rules = rulesText === undefined ? loadRulesFile(null, { detectors: DETECTOR_SPECS }) : loadRulesFile('/r.yaml', { text: rulesText, detectors: DETECTOR_SPECS });
  const engine = new DetectionEngine({ rules, detectors: detectorsFrom(rules), logger, metrics, clock });
  const db = open(dir);
  const cp = new DetectCheckpointer({ engine, db: () => db, intervalMs: 0, logger, metrics, clock });
  return { engine, cp, metrics, lines, db, logger };
}

async function metric(m: Metrics, re: RegExp): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => re.test(l));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('detection state checkpoints', () => {
  it('a chain armed before a restart is completed after it (state, incidents and learning starts restored)', async () => {
    const dir = stateDir();
    const a = node(dir);
    await a.cp.start();
    expect(a.lines.some((l) => l['msg'] === 'no detection state to restore: detectors start fresh')).toBe(true);
    expect(a.engine.process(alertAt(0, RAW, door)).detections).toEqual([]);
    await a.cp.stop();
    expect(await metric(a.metrics, /^falco_companion_detect_checkpoints_total\{result="ok"\}/)).toBe(1);
    expect(await metric(a.metrics, /^falco_companion_detector_state_bytes\{detector="socket_filter"\}/)).toBeGreaterThan(100);

    const b = node(dir);
    await b.cp.start();
    expect(b.lines.find((l) => l['msg'] === 'detection state restored')).toMatchObject({ component: 'detect/checkpoint', parts: ['engine', 'knock', 'socket_filter'] });
    const out = b.engine.process(listen(5)).detections;
    expect(out.map((d) => d.rule)).toEqual(['Traffic signaling: socket filter armed, then new listener']);
    expect(await metric(b.metrics, /^falco_companion_detect_state_restores_total\{detector="socket_filter",result="restored"\}/)).toBe(1);
    expect(await metric(b.metrics, /^falco_companion_detector_state_entries\{detector="socket_filter"\}/)).toBeGreaterThan(0);

    // The same trigger without the restored state completes nothing (the test can fail).
    const c = node(stateDir());
    await c.cp.start();
    expect(c.engine.process(listen(5)).detections).toEqual([]);
  });

  it('checkpoints periodically, a part at a time, and stop waits for one in flight', async () => {
    const dir = stateDir();
    const a = node(dir);
    const cp = new DetectCheckpointer({ engine: a.engine, db: () => a.db, intervalMs: 20, logger: silentLogger(), metrics: a.metrics, clock: new ManualClock(0) });
    await cp.start();
    a.engine.process(alertAt(0, RAW, door));
    const store = new DetectStateStore(a.db);
    await until(() => store.load().some((r) => r.id === 'engine'), 5000, 'periodic checkpoint');
    expect(store.load().map((r) => r.id)).toEqual(['engine', 'knock', 'socket_filter']);
    a.engine.process(alertAt(1, RAW, { ...door, 'proc.pid': 501 }));
    await cp.stop();
    const b = node(dir);
    b.cp.restore();
    expect(b.engine.checkpointPart('socket_filter')?.state).toMatchObject({ arms: { size: 2 } });
  });

  it('learning periods keep counting from the first signal seen before the restart', async () => {
    const text = 'extends: builtin\nsuppress:\n  learning: {socket_filter: 1h}';
    const dir = stateDir();
    const a = node(dir, text);
    await a.cp.start();
    a.engine.process(alertAt(0, RAW, { ...door, 'proc.pid': 7 })); // starts socket_filter's learning hour
    await a.cp.stop();
    const chain = [alertAt(3650, RAW, door), listen(3700)];
    const b = node(dir, text);
    await b.cp.start();
    expect(chain.flatMap((x) => b.engine.process(x).detections)).toHaveLength(1); // the hour has passed since t=0
    const c = node(stateDir(), text); // without the restored start the hour begins at 3650
    await c.cp.start();
    expect(chain.flatMap((x) => c.engine.process(x).detections)).toEqual([]);
  });

  it('writes only the parts that changed since the last checkpoint', async () => {
    const a = node(stateDir());
    await a.cp.start();
    expect(a.cp.save()?.parts).toBe(2); // both detectors once (the engine's part once it changes)
    expect(a.cp.save()?.parts).toBe(0);
    a.engine.process(alertAt(0, RAW, door)); // socket_filter steps; knock does not consume raw sockets
    expect(a.engine.checkpointParts().map((p) => p.id)).toEqual(['socket_filter', 'engine']);
    expect(a.cp.save()?.parts).toBe(2);
    expect(a.cp.save()?.parts).toBe(0);
  });

  it('an old-version or corrupt part starts that detector fresh, with a warning and a counter; the rest is restored', async () => {
    const dir = stateDir();
    const a = node(dir);
    await a.cp.start();
    a.engine.process(alertAt(0, RAW, door));
    a.engine.process(alertAt(1, 'Companion signal: firewall tool run', { 'proc.pid': 9, 'proc.cmdline': 'iptables -I INPUT -s 198.51.100.1 -j ACCEPT' }));
    await a.cp.stop();
    const rows = new DetectStateStore(a.db).load();
    const sf = rows.find((r) => r.id === 'socket_filter');
    const knock = rows.find((r) => r.id === 'knock');
    if (!sf || !knock) throw new Error('parts missing');
    const store = new DetectStateStore(a.db);
    store.save([{ id: 'socket_filter', version: 99, state: sf.state }], 0);
    const mangled = Buffer.from(knock.state);
    mangled.writeUInt8(0xee, Math.floor(mangled.length / 2));
    store.save([{ id: 'knock', version: 1, state: mangled.subarray(0, mangled.length - 3) }], 0);

    const b = node(dir);
    const summary = b.cp.restore();
    expect(summary.restored).toEqual(['engine']);
    expect(summary.fresh).toEqual([
      { id: 'knock', reason: 'corrupt' },
      { id: 'socket_filter', reason: 'version' },
    ]);
    const warns = b.lines.filter((l) => l['level'] === 'warn' && l['component'] === 'detect/checkpoint');
    expect(warns.map((w) => w['msg'])).toEqual([
      'detection state of knock is corrupt or does not fit this build: it starts fresh',
      'detection state of socket_filter was written for another state version: it starts fresh',
    ]);
    expect(warns[0]?.['stage']).toBe('knock');
    expect(await metric(b.metrics, /^falco_companion_detect_state_restores_total\{detector="socket_filter",result="fresh_version"\}/)).toBe(1);
    expect(await metric(b.metrics, /^falco_companion_detect_state_restores_total\{detector="knock",result="fresh_corrupt"\}/)).toBe(1);
    // Fresh indeed: the armed socket is gone; the unusable rows were dropped.
    expect(b.engine.process(listen(5)).detections).toEqual([]);
    expect(new DetectStateStore(b.db).load().map((r) => r.id)).toEqual(['engine']);
  });

  it('a replay never reads or writes the detection state', async () => {
    const dir = stateDir();
    // A state database holding an armed socket from a "daemon" run.
    const a = node(dir);
    await a.cp.start();
    a.engine.process(alertAt(0, RAW, door));
    await a.cp.stop();
    const before = new DetectStateStore(a.db).load().map((r) => [r.id, r.savedAtMs]);
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, `${serializeAlert(listen(5))}\n`);
    const config = loadConfig<Config>(configSchema, { file: null, overrides: { state_dir: dir, 'enrich.enabled': false, 'sinks.file.path': join(dir, 'out.jsonl'), 'http.enabled': false } });
    const forwarded: string[] = [];
    const app = buildApp(config, { logger: createLogger({ level: 'silent' }), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(1_800_000_000_000), replay: { path: input }, onForwarded: (x) => forwarded.push(x.rule) });
    await app.start();
    await app.inputDone();
    await app.stop(Date.now() + 5000);
    expect(forwarded).toEqual([LISTEN]); // the restored arm would have made it a detection
    expect(new DetectStateStore(a.db).load().map((r) => [r.id, r.savedAtMs])).toEqual(before);
  });
});


/** The next turns of the event loop until `check` holds (bounded); how many it took. */
async function turnsUntil(check: () => boolean, max = 100_000): Promise<number> {
  for (let i = 0; i < max; i++) {
    if (check()) return i;
    await new Promise<void>((r) => setImmediate(r));
  }
  throw new Error(`not within ${max} turns`);
}

describe('the periodic checkpoint, in slices (a part held unchanged while it is encoded)', () => {
  /** A node whose periodic checkpoint runs every 20 ms in slices of one entry, with 40 armed sockets. */
  function sliced(dir: string, extra: Detector<unknown>[] = []) {
    const n = node(dir);
    const rules = loadRulesFile(null, { detectors: DETECTOR_SPECS });
    const engine = new DetectionEngine({ rules, detectors: [...detectorsFrom(rules), ...extra], logger: n.logger, metrics: n.metrics, clock: new ManualClock(0) });
    const cp = new DetectCheckpointer({ engine, db: () => n.db, intervalMs: 20, sliceMs: 0, logger: n.logger, metrics: n.metrics, clock: new ManualClock(0) });
    for (let i = 0; i < 40; i++) engine.process(arm(i, 1000 + i));
    return { ...n, engine, cp, store: new DetectStateStore(n.db) };
  }
  const arm = (t: number, pid: number) => alertAt(t, RAW, { ...door, 'proc.pid': pid });
  const stored = (store: DetectStateStore, id: string): Buffer | undefined => store.load().find((r) => r.id === id)?.state;
  const same = (a: Buffer | undefined, b: Buffer): boolean => a !== undefined && Buffer.compare(a, b) === 0;
  const armsOf = (e: DetectionEngine): number => (e.checkpointPart('socket_filter')?.state as { arms: { size: number } }).arms.size;

  /** Started, with the first part (socket_filter) held by the periodic checkpoint; its bytes before. */
  async function held(dir: string) {
    const a = sliced(dir);
    const before = encodeState(a.engine.checkpointPart('socket_filter')?.state);
    await a.cp.start();
    await turnsUntil(() => a.engine.ready() !== undefined); // the timer fired: socket_filter is held
    return { a, before };
  }

  it('saves each part exactly as it was when its encoding started, while the pipeline waits', async () => {
    const dir = stateDir();
    const { a, before } = await held(dir);
    const gate = a.engine.ready();
    // The pipeline waits on the gate: the part is encoded over many turns (a slice per entry).
    expect(await turnsUntil(() => a.engine.ready() !== gate)).toBeGreaterThan(10);
    a.engine.process(arm(50, 2000)); // after its release: a change for the next checkpoint
    await turnsUntil(() => stored(a.store, 'engine') !== undefined);
    expect(same(stored(a.store, 'socket_filter'), before)).toBe(true);
    await a.cp.stop();
    expect(a.engine.ready()).toBeUndefined();
    const b = node(dir);
    b.cp.restore();
    expect(armsOf(b.engine)).toBe(41);
  });

  it('an alert that did not wait ends the encoding first: the part is saved as it was before it, and is due again', async () => {
    const dir = stateDir();
    const { a, before } = await held(dir);
    a.engine.process(arm(50, 2000)); // the encoding is finished (with 40 arms) before this steps
    expect(armsOf(a.engine)).toBe(41);
    expect(a.engine.checkpointParts().map((p) => p.id)).toContain('socket_filter');
    await turnsUntil(() => stored(a.store, 'socket_filter') !== undefined);
    expect(same(stored(a.store, 'socket_filter'), before)).toBe(true);
    const restored = node(stateDir());
    restored.engine.restorePart('socket_filter', 1, decodeState(stored(a.store, 'socket_filter') ?? Buffer.alloc(0)));
    expect(armsOf(restored.engine)).toBe(40);
    await a.cp.stop(); // saves the 41st
    const b = node(dir);
    b.cp.restore();
    expect(armsOf(b.engine)).toBe(41);
  });

  it('stop() during a sliced encoding finishes it, then saves the rest: a restart gets the same state', async () => {
    const dir = stateDir();
    const a = sliced(dir);
    const before = a.engine.checkpointParts(true).map((p) => ({ id: p.id, bytes: encodeState(p.state) }));
    await a.cp.start();
    await turnsUntil(() => a.engine.ready() !== undefined);
    expect(stored(a.store, 'socket_filter')).toBeUndefined(); // in flight
    await a.cp.stop();
    expect(a.engine.ready()).toBeUndefined();
    expect(await metric(a.metrics, /^falco_companion_errors_total\{component="detect\/checkpoint"/)).toBe(0);
    const b = node(dir);
    expect(b.cp.restore().restored.sort()).toEqual(['engine', 'knock', 'socket_filter']);
    for (const p of before) expect(same(encodeStateOf(b.engine, p.id), p.bytes), p.id).toBe(true);
  });

  it('a part that cannot be encoded is released, counted and logged, stays due; the others are saved', async () => {
    type Broken = { list: unknown[] };
    const consumes = detectorsFrom(loadRulesFile(null, { detectors: DETECTOR_SPECS }))[0]?.consumes ?? [];
    const broken: Detector<Broken> = {
      id: 'broken',
      consumes,
      init: () => ({ list: [] }),
      step(st) {
        st.list.push(st.list.length === 30 ? { f: () => 1 } : { n: st.list.length });
        return { state: st, findings: [] };
      },
      evictions: () => 0,
    };
    const a = sliced(stateDir(), [broken as Detector<unknown>]);
    await a.cp.start();
    await turnsUntil(() => stored(a.store, 'engine') !== undefined);
    expect(a.engine.ready()).toBeUndefined();
    expect(stored(a.store, 'broken')).toBeUndefined();
    expect(stored(a.store, 'socket_filter')).toBeDefined();
    expect(a.engine.checkpointParts().map((p) => p.id)).toContain('broken');
    expect(await metric(a.metrics, /^falco_companion_errors_total\{component="detect\/checkpoint",code="E_STATE_CODEC"\}/)).toBeGreaterThanOrEqual(1);
    expect(a.lines.find((l) => l['msg'] === 'cannot encode the state of broken: not checkpointed')).toMatchObject({ stage: 'broken', error: expect.stringMatching(/function at list\.30\.f/) });
    a.engine.process(arm(60, 3000)); // the engine takes alerts again
    expect(armsOf(a.engine)).toBe(41);
    await a.cp.stop();
  });
});

const encodeStateOf = (e: DetectionEngine, id: string): Buffer => encodeState(e.checkpointPart(id)?.state);
