import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { FileSource, InputError, type FileSourceCounts, type FileSourceOptions } from '../../src/sources/file.js';
import { LosslessNumber } from '../../src/json/lossless.js';
import { falcoAlertJson } from '../support/falco-alerts.js';
import { until, wait } from '../support/wait.js';

/** Alert n: rule `Rule n`, evt.time 1767268800000000000 + n (the alert's time stays 12:00:00.000000001). */
const alertLine = (n: number): string =>
  falcoAlertJson({ ns: 1_767_268_800_000_000_001n, rule: `Rule ${n}`, fields: { 'evt.time': new LosslessNumber(String(1_767_268_800_000_000_000n + BigInt(n))), 'proc.pid': n } });
const WAIT_MS = 8000;

async function discarded(m: Metrics, reason: string, component = 'source/file'): Promise<number> {
  const v = (await m.discarded.get()).values.find((x) => x.labels.reason === reason && x.labels.component === component);
  return v?.value ?? 0;
}

describe('FileSource', () => {
  let dir: string;
  let metrics: Metrics;
  let intake: MemoryIntake;
  let taken: Alert[];
  let sources: FileSource[];
  let drainer: Promise<void> | null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fc-file-'));
    metrics = new Metrics({ collectDefault: false });
    taken = [];
    sources = [];
    drainer = null;
  });
  afterEach(async () => {
    for (const s of sources) await s.stop(Date.now() + 2000);
    intake?.close();
    await drainer;
    rmSync(dir, { recursive: true, force: true });
  });

  function mk(opts: Partial<FileSourceOptions> & { path: string }, capacity = 1000, drain = true): FileSource {
    intake = new MemoryIntake(capacity, metrics);
    if (drain) {
      drainer = (async () => {
        for (;;) {
          const a = await intake.take();
          if (!a) return;
          taken.push(a);
        }
      })();
    }
    const s = new FileSource({
      fromStart: true,
      follow: true,
      pollIntervalMs: 20,
      maxLineBytes: 4096,
      intake,
      logger: silentLogger(),
      metrics,
      ...opts,
    });
    sources.push(s);
    return s;
  }

  it('reads a whole file, skipping and counting log lines, blank lines, invalid alerts and overlong lines', async () => {
    const p = join(dir, 'falco.log');
    const lines = [
      'Wed Jan  1 12:00:00 2026: Falco version: 0.42.0 (x86_64)',
      '',
      alertLine(1),
      '   ',
      '{"not":"an alert"}',
      '{broken json',
      alertLine(2) + '\r',
      `{"output":"${'x'.repeat(5000)}"}`,
      alertLine(3),
      '[1,2]',
    ];
    writeFileSync(p, lines.join('\n') + '\n' + alertLine(4)); // last line without newline
    const s = mk({ path: p, follow: false });
    await s.start();
    const c = await s.done();
    await until(() => taken.length === 4, WAIT_MS, '4 alerts');
    expect(c).toEqual({ lines: 11, alerts: 4, skipped: 7 });
    expect(taken.map((a) => a.rule)).toEqual(['Rule 1', 'Rule 2', 'Rule 3', 'Rule 4']);
    expect(taken[1]?.time).toBe('2026-01-01T12:00:00.000000001Z');
    expect(taken[0]?.origin).toEqual({ kind: 'file', component: 'source/file' });
    expect(String(taken[0]?.outputFields?.['evt.time'])).toBe('1767268800000000001');
    expect(await discarded(metrics, 'not_json')).toBe(5);
    expect(await discarded(metrics, 'invalid_alert')).toBe(1);
    expect(await discarded(metrics, 'line_too_long')).toBe(1);
    expect(s.health()).toMatchObject({ ready: true });
  });

  it('an overlong line split across reads is skipped as one line and the next line is read', async () => {
    const p = join(dir, 'big.log');
    writeFileSync(p, 'y'.repeat(200_000) + '\n' + alertLine(1) + '\n');
    const s = mk({ path: p, follow: false });
    await s.start();
    expect(await s.done()).toEqual({ lines: 2, alerts: 1, skipped: 1 });
    expect(await discarded(metrics, 'line_too_long')).toBe(1);
  });

  it('follows appends from the end, waits for a partial line to be completed', async () => {
    const p = join(dir, 'events.json');
    writeFileSync(p, alertLine(1) + '\n');
    const s = mk({ path: p, fromStart: false });
    await s.start();
    await until(() => s.health().detail?.startsWith('following') === true, WAIT_MS, 'following');
    const half = alertLine(2);
    appendFileSync(p, half.slice(0, 40));
    await wait(100);
    expect(taken).toHaveLength(0);
    appendFileSync(p, half.slice(40) + '\n' + alertLine(3) + '\n');
    await until(() => taken.length === 2, WAIT_MS, 'two alerts');
    expect(taken.map((a) => a.rule)).toEqual(['Rule 2', 'Rule 3']);
  });

  it('survives truncation and rotation (rename + re-create), finishing the old file first', async () => {
    const p = join(dir, 'events.json');
    writeFileSync(p, alertLine(1) + '\n' + alertLine(2) + '\n');
    const s = mk({ path: p });
    await s.start();
    await until(() => taken.length === 2, WAIT_MS, 'initial');
    truncateSync(p, 0);
    await wait(100);
    appendFileSync(p, alertLine(3) + '\n');
    await until(() => taken.length === 3, WAIT_MS, 'after truncation');
    // logrotate: rename, Falco still writes to the old file until SIGUSR1, then re-creates.
    renameSync(p, p + '.1');
    appendFileSync(p + '.1', alertLine(4) + '\n');
    await wait(100);
    writeFileSync(p, alertLine(5) + '\n');
    await until(() => taken.length === 5, WAIT_MS, 'after rotation');
    expect(taken.map((a) => a.rule)).toEqual(['Rule 1', 'Rule 2', 'Rule 3', 'Rule 4', 'Rule 5']);
    const reopens = await metrics.counter('input_reopens_total', '', ['component', 'reason']).get();
    expect(reopens.values.map((v) => v.labels.reason).sort()).toEqual(['rotated', 'truncated']);
  });

  it('waits for a file that does not exist yet and reads it from the start', async () => {
    const p = join(dir, 'later.json');
    const s = mk({ path: p, fromStart: false });
    expect(s.health().ready).toBe(false);
    await s.start();
    await until(() => s.health().detail?.includes('waiting') === true, WAIT_MS, 'waiting');
    expect(s.health().ready).toBe(true);
    writeFileSync(p, 'Falco initialized\n' + alertLine(1) + '\n');
    await until(() => taken.length === 1, WAIT_MS, 'alert');
    await s.stop(Date.now() + 1000);
    await s.stop(Date.now() + 1000); // idempotent
    expect(await s.done()).toEqual({ lines: 2, alerts: 1, skipped: 1 });
    expect(s.health()).toEqual({ ready: false, detail: 'stopped' });
  });

  it('applies back-pressure: never drops, keeps order while the intake is full', async () => {
    const p = join(dir, 'many.json');
    const n = 300;
    writeFileSync(p, Array.from({ length: n }, (_, i) => alertLine(i)).join('\n') + '\n');
    const s = mk({ path: p, follow: false }, 3, false);
    await s.start();
    await until(() => intake.full, WAIT_MS, 'intake full');
    expect(s.counts().alerts).toBeLessThan(n);
    const got: string[] = [];
    while (got.length < n) {
      const a = await intake.take();
      if (!a) break;
      got.push(a.rule);
      if (got.length % 50 === 0) await wait(5);
    }
    expect(await s.done()).toEqual({ lines: n, alerts: n, skipped: 0 });
    expect(got).toEqual(Array.from({ length: n }, (_, i) => `Rule ${i}`));
    // It waited for room instead of being refused (it looks at `full` before each submit).
    expect(await discarded(metrics, 'queue_full', 'intake/memory')).toBe(0);
  });

  it('reads stdin until it ends, with CRLF and chunks split mid-line', async () => {
    const stdin = new PassThrough();
    const s = mk({ path: '-', stdin, originKind: 'stdin' });
    expect(s.id).toBe('source/stdin');
    await s.start();
    const text = `Falco startup\r\n${alertLine(1)}\r\n${alertLine(2)}`;
    stdin.write(text.slice(0, 70));
    stdin.write(Buffer.from(text.slice(70)));
    stdin.end();
    expect(await s.done()).toEqual({ lines: 3, alerts: 2, skipped: 1 });
    await until(() => taken.length === 2, WAIT_MS, 'alerts');
    expect(taken[0]?.origin).toEqual({ kind: 'stdin', component: 'source/stdin' });
    expect(await discarded(metrics, 'not_json', 'source/stdin')).toBe(1);
  });

  it('stop() ends a stdin read that is waiting for data', async () => {
    const stdin = new PassThrough();
    const s = mk({ path: '-', stdin });
    await s.start();
    stdin.write(alertLine(1) + '\n');
    await until(() => taken.length === 1, WAIT_MS, 'alert');
    await s.stop(Date.now() + 1000);
    expect(await s.done()).toEqual({ lines: 1, alerts: 1, skipped: 0 });
  });

  it('replay of a missing file rejects done() with InputError', async () => {
    const s = mk({ path: join(dir, 'missing.json'), follow: false });
    await s.start();
    await expect(s.done()).rejects.toBeInstanceOf(InputError);
    expect(s.health().ready).toBe(false);
  });

  it('reports progress at most every interval with growing counts', async () => {
    const p = join(dir, 'progress.json');
    writeFileSync(p, Array.from({ length: 2000 }, (_, i) => alertLine(i)).join('\n') + '\n');
    let t = 0;
    const seen: FileSourceCounts[] = [];
    const s = mk({
      path: p,
      follow: false,
      originKind: 'replay',
      now: () => (t += 1), // 1 ms per call
      onProgress: (c) => seen.push(c),
    });
    await s.start();
    const c = await s.done();
    expect(c.alerts).toBe(2000);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.length).toBeLessThan(20);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.lines).toBeGreaterThan(seen[i - 1]!.lines);
    await until(() => taken.length === 2000, WAIT_MS, 'all');
    expect(taken[0]?.origin.kind).toBe('replay');
  });
});
