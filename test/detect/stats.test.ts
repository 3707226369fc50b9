/**
 * Signal statistics: the engine observer folds routed signals and findings into hourly top-K
 * aggregates in a real SQLite state database; bounded (top-K with counted overflow, queue with
 * counted drops, retention, max rows); survives a restart; turns itself off on a failing database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { buildDetectors } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { parseDimsKey, signalDims } from '../../src/detect/stats-dims.js';
import { SignalStats } from '../../src/detect/stats.js';
import type { Finding, Signal } from '../../src/detect/types.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { readFindingStats, readSignalStats, readStatsDrops, type SignalStatRow } from '../../src/store/signal-stats.js';
import { alertAt } from './helpers.js';
import { BASE_NS, sig } from '../support/signals.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshDb = (): Db => openStateDb(join(dir, `s${++n}`));

function statsOn(db: Db, extra: Partial<ConstructorParameters<typeof SignalStats>[0]> = {}): { stats: SignalStats; metrics: Metrics } {
  const metrics = new Metrics({ collectDefault: false });
  const stats = new SignalStats({ db: () => db, logger: silentLogger(), metrics, retentionMs: 8 * 24 * 3_600_000, maxRows: 200_000, ...extra });
  return { stats, metrics };
}

const total = (rows: readonly SignalStatRow[]): number => rows.reduce((s, r) => s + r.count, 0);

function finding(over: Partial<Finding> & { evidence: Signal[] }): Finding {
  return {
    detector: 'beacon',
    rule: 'C2 beaconing: periodic outbound connections',
    priority: 'Error',
    score: 0.8,
    message: 'periodic connections',
    mitre: [],
    key: 'beacon|c1|203.0.113.7:443',
    fields: {},
    timeNs: over.evidence[over.evidence.length - 1]?.timeNs ?? BASE_NS,
    ...over,
  };
}

describe('signal dimensions', () => {
  it('keep what allow entries and Falco exceptions select on: image, namespace, app label, exe, parent, dest /24 or domain, port, file', () => {
    const raw = sig({ kind: 'connect', dest: '203.0.113.77', port: 8443, image: 'ghcr.io/acme/web', namespace: 'shop', exe: '/tmp/.cache/kworkerd', fields: { 'k8s.pod.label.app': 'web' } });
    // the mapping's ancestors, nearest first: proc.pname, proc.pexepath, ... (the parent is the first name)
    const s: Signal = { ...raw, proc: { ...raw.proc, ancestors: ['sh', '/bin/busybox', 'containerd-shim'] } };
    const { dims, ip } = signalDims(s);
    expect(dims).toEqual({ image: 'ghcr.io/acme/web', namespace: 'shop', app: 'app=web', exe: '/tmp/.cache/kworkerd', parent: 'sh', dest: '203.0.113.0/24', port: 8443, file: null });
    expect(ip).toBe('203.0.113.77');
    expect(signalDims(sig({ kind: 'connect', dest: '198.51.100.20', port: 443, domain: 'API.Vendor.example.' })).dims.dest).toBe('api.vendor.example');
    expect(signalDims(sig({ kind: 'connect', dest: '2001:db8::1', port: 443 })).dims.dest).toBe('2001:db8::/64');
    // no destination or port for kinds without a peer; the file key for file signals
    const pid = signalDims(sig({ kind: 'pidfile_create', keys: { file: '/run/nginx.pid' } }));
    expect([pid.dims.dest, pid.dims.port, pid.dims.file, pid.ip]).toEqual([null, null, '/run/nginx.pid', null]);
    // an ancestor list starting with a path (no proc.pname) has no parent name
    expect(signalDims({ ...raw, proc: { ...raw.proc, ancestors: ['/bin/busybox'] } }).dims.parent).toBeNull();
  });
});

describe('SignalStats observer', () => {
  it('aggregates routed signals per hour, detector, kind, rule and outcome, with counts, sole ip and one example', async () => {
    const db = freshDb();
    const { stats } = statsOn(db);
    for (let i = 0; i < 10; i++) stats.signal(sig({ kind: 'connect', t: i * 60, dest: '203.0.113.7', port: 443 }), 'beacon', 'consumed');
    stats.signal(sig({ kind: 'connect', t: 30, dest: '203.0.113.8', port: 443 }), 'beacon', 'consumed');
    stats.signal(sig({ kind: 'connect', t: 3700, dest: '203.0.113.7', port: 443 }), 'beacon', 'allowlist');
    await stats.stop(Date.now() + 1000);
    const rows = readSignalStats(db, 0);
    expect(rows.map((r) => [r.bucket - rows[0]!.bucket, r.detector, r.kind, r.outcome, r.count, r.ip])).toEqual([
      [0, 'beacon', 'connect', 'consumed', 11, '*'],
      [1, 'beacon', 'connect', 'allowlist', 1, '203.0.113.7'],
    ]);
    expect(parseDimsKey(rows[0]!.dims)?.dest).toBe('203.0.113.0/24');
    expect(JSON.parse(rows[0]!.example ?? '{}')).toMatchObject({ rule: 'Companion signal: outbound connection from container' });
    expect(rows[0]!.lastMs - rows[0]!.firstMs).toBe(540_000);
  });

  it('keeps the top K tuples of a group: a flood of unique tuples goes to the counted overflow, heavy hitters stay', async () => {
    const db = freshDb();
    const { stats, metrics } = statsOn(db, { maxTuples: 4 });
    const heavy = (t: number): Signal => sig({ kind: 'connect', t, dest: '198.51.100.9', port: 9100, exe: '/bin/prometheus' });
    for (let i = 0; i < 50; i++) stats.signal(heavy(i), 'beacon', 'consumed');
    // 500 unique destinations interleaved with the heavy hitter
    for (let i = 0; i < 500; i++) {
      stats.signal(sig({ kind: 'connect', t: 100 + i, dest: `10.${i >> 8}.${i & 255}.1`, port: 80 }), 'beacon', 'consumed');
      if (i % 10 === 0) stats.signal(heavy(100 + i), 'beacon', 'consumed');
    }
    await stats.stop(Date.now() + 1000);
    const rows = readSignalStats(db, 0);
    expect(rows.length).toBe(5); // 4 tuples + overflow
    expect(total(rows)).toBe(600);
    const hh = rows.find((r) => parseDimsKey(r.dims)?.exe === '/bin/prometheus');
    expect(hh?.count).toBe(100);
    const overflow = rows.find((r) => r.dims === '');
    expect(overflow?.count).toBeGreaterThan(490);
    expect(await metrics.text()).toMatch(/falco_companion_signal_stats_overflow_total \d+/);
  });

  it('a full queue drops and counts (per hour, so tune can say its numbers are short)', async () => {
    const db = freshDb();
    const { stats, metrics } = statsOn(db, { maxQueue: 5 });
    for (let i = 0; i < 8; i++) stats.signal(sig({ kind: 'listen', t: i }), 'socket_filter', 'consumed');
    await stats.stop(Date.now() + 1000);
    expect(total(readSignalStats(db, 0))).toBe(5);
    expect(readStatsDrops(db, 0)).toBe(3);
    expect(await metrics.text()).toMatch(/falco_companion_signal_stats_dropped_total 3/);
  });

  it('continues the same groups after a restart (reloads them) and records findings with their evidence', async () => {
    const db = freshDb();
    const a = statsOn(db).stats;
    const ev = [0, 60, 120].map((t) => sig({ kind: 'connect', t, dest: '203.0.113.7', port: 443 }));
    for (const s of ev) a.signal(s, 'beacon', 'consumed');
    a.finding(finding({ evidence: ev }), null, 'inc-1');
    await a.stop(Date.now() + 1000);
    const b = statsOn(db).stats;
    const more = [180, 240].map((t) => sig({ kind: 'connect', t, dest: '203.0.113.7', port: 443 }));
    for (const s of more) b.signal(s, 'beacon', 'consumed');
    b.finding(finding({ evidence: more }), null, 'inc-1');
    b.finding(finding({ evidence: more, priority: 'Critical' }), null, 'inc-1');
    await b.stop(Date.now() + 1000);
    expect(readSignalStats(db, 0).map((r) => r.count)).toEqual([5]);
    const f = readFindingStats(db, 0);
    expect(f.map((r) => [r.priority, r.outcome, r.key, r.count])).toEqual([
      ['Critical', 'folded', 'beacon|c1|203.0.113.7:443', 1],
      ['Error', 'folded', 'beacon|c1|203.0.113.7:443', 2],
    ]);
    const evidence = JSON.parse(f[1]!.evidence ?? '[]') as unknown[][];
    expect(evidence).toHaveLength(1); // the same rule, kind and tuple: one evidence entry
    expect(evidence[0]?.[0]).toBe('Companion signal: outbound connection from container');
    expect(JSON.parse(f[0]!.example ?? '{}')).toMatchObject({ incident: 'inc-1' });
  });

  it('deletes hours past the retention, and the oldest hours beyond max_rows', async () => {
    const db = freshDb();
    const { stats } = statsOn(db, { retentionMs: 3 * 3_600_000, maxRows: 1000 });
    for (let h = 0; h < 6; h++) stats.signal(sig({ kind: 'listen', t: h * 3600 }), 'socket_filter', 'consumed');
    stats.flush();
    const hours = readSignalStats(db, 0).map((r) => r.bucket);
    expect(hours.length).toBe(3);
    expect(Math.min(...hours)).toBe(Math.max(...hours) - 2);

    const db2 = freshDb();
    const small = statsOn(db2, { maxRows: 1000 }).stats;
    for (let h = 0; h < 3; h++) for (let i = 0; i < 600; i++) small.signal(sig({ kind: 'listen', t: h * 3600 + i, exe: `/bin/x${i}`, rule: `Rule ${i % 200}` }), 'socket_filter', 'consumed');
    small.flush();
    // the next hour triggers the row check: the oldest hours go until at most 1000 rows remain
    small.signal(sig({ kind: 'listen', t: 3 * 3600 }), 'socket_filter', 'consumed');
    small.flush();
    const left = readSignalStats(db2, 0);
    expect(left.length).toBeLessThanOrEqual(1000);
    expect(new Set(left.map((r) => r.bucket)).size).toBeLessThan(4);
  });

  it('a failing database turns the statistics off without throwing into the caller', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const stats = new SignalStats({ db: () => { throw new Error('read-only file system'); }, logger: silentLogger(), metrics, retentionMs: 3_600_000, maxRows: 1000 });
    expect(() => stats.signal(sig({ kind: 'listen' }), 'socket_filter', 'consumed')).not.toThrow();
    await stats.stop(Date.now() + 1000);
    expect(stats.health().detail).toMatch(/statistics off: read-only file system/);
    expect(await metrics.text()).toMatch(/falco_companion_errors_total\{component="detect\/stats",code="E_UNKNOWN"\} 1|falco_companion_errors_total\{component="detect\/stats",code="[A-Z_]+"\} 1/);
  });
});

describe('SignalStats as an engine observer', () => {
  it('records every routed (signal, detector) pair with its outcome, and the findings', async () => {
    const rules = loadRulesFile(null);
    const db = freshDb();
    const { stats } = statsOn(db);
    const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0), observers: [stats] });
    const RAW = 'Companion signal: packet or raw socket created';
    const LISTEN = 'Companion signal: listening socket in container';
    const door = { 'proc.pid': 500, 'proc.ppid': 1, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x' };
    engine.process(alertAt(0, RAW, door));
    engine.process(alertAt(1, LISTEN, { ...door, 'proc.pid': 501, 'proc.ppid': 500, 'fd.name': '0.0.0.0:4444->0.0.0.0:4444' }));
    // a DHCP client's raw socket: allowlisted by the built-in dhcp-clients entry
    engine.process(alertAt(2, RAW, { 'proc.pid': 9, 'proc.name': 'dhclient', 'proc.exepath': '/sbin/dhclient' }));
    await stats.stop(Date.now() + 1000);
    const rows = readSignalStats(db, 0).filter((r) => r.detector === 'socket_filter');
    expect(rows.map((r) => [r.kind, r.outcome, parseDimsKey(r.dims)?.exe, r.count])).toEqual([
      ['listen', 'consumed', '/usr/bin/x', 1],
      ['raw_socket', 'allowlist', '/sbin/dhclient', 1],
      ['raw_socket', 'consumed', '/usr/bin/x', 1],
    ]);
    const f = readFindingStats(db, 0);
    expect(f.map((r) => [r.detector, r.rule, r.outcome])).toEqual([['socket_filter', 'Traffic signaling: socket filter armed, then new listener', 'emitted']]);
  });
});
