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
import { DetectionEngine } from '../../src/detect/engine.js';
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
  return { engine, cp, metrics, lines, db };
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

  it('checkpoints periodically, a part per turn of the event loop, and stop waits for one in flight', async () => {
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
