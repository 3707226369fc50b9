/**
 * Conformance: every real and fixture alert survives the JSON-lines path (a followed file and the
 * replay mode) into the intake and back out through serializeAlert, field by field, every digit intact.
 */
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseTime, serializeAlert, type Alert } from '../../src/alert.js';
import { LosslessNumber, isJsonObject, parse, stringify, type JsonObject, type JsonValue } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { FileSource, type FileSourceCounts } from '../../src/sources/file.js';
import { until, wait } from '../support/wait.js';

const ROOT = resolve(import.meta.dirname, '../..');
const REFERENCE = resolve(ROOT, '../shared/falco-reference/falco-alerts.jsonl');
const FIXTURES = join(ROOT, 'test/fixtures/alerts');
const STDOUT_LOG = join(ROOT, 'test/fixtures/falco-stdout.log');
const referencePresent = existsSync(REFERENCE);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-conf-'));
  dirs.push(d);
  return d;
}

function alertLines(text: string): string[] {
  return text.split('\n').filter((l) => l.trimStart().startsWith('{'));
}

/** Compare the serialized alert with the original JSON text, field by field, digits exact. */
function expectSameAlert(original: string, serialized: string): void {
  const o = parse(original);
  const s = parse(serialized);
  if (!isJsonObject(o) || !isJsonObject(s)) throw new Error('not objects');
  for (const k of Object.keys(o)) {
    const ov = o[k] as JsonValue;
    if (ov === null) {
      expect(s[k] ?? null, `top-level ${k}`).toBeNull();
      continue;
    }
    if (k === 'time' && typeof ov === 'string') {
      const canon = parseTime(ov);
      expect(canon, `time ${ov}`).not.toBeNull();
      expect(s[k]).toBe(canon!.text);
      if (/\.\d{9}Z$/.test(ov)) expect(s[k]).toBe(ov);
      continue;
    }
    if (k === 'output_fields') {
      const of = ov as JsonObject;
      const sf = s[k] as JsonObject;
      expect(Object.keys(sf), 'output_fields keys').toEqual(Object.keys(of));
      for (const f of Object.keys(of)) {
        expect(stringify(sf[f]), `output_fields[${f}]`).toBe(stringify(of[f]));
      }
      continue;
    }
    expect(stringify(s[k]), `top-level ${k}`).toBe(stringify(ov));
  }
  for (const k of Object.keys(s)) {
    if (k === 'output' && o[k] === undefined) continue; // always written
    expect(Object.keys(o), `unexpected key ${k}`).toContain(k);
  }
  // Every big literal of the original appears verbatim in the output.
  for (const m of original.matchAll(/-?\d{16,}/g)) expect(serialized).toContain(m[0]);
}

function harness(capacity = 10_000): { intake: MemoryIntake; taken: Alert[]; metrics: Metrics; drained: Promise<void> } {
  const metrics = new Metrics({ collectDefault: false });
  const intake = new MemoryIntake(capacity, metrics);
  const taken: Alert[] = [];
  const drained = (async () => {
    for (;;) {
      const a = await intake.take();
      if (!a) return;
      taken.push(a);
    }
  })();
  return { intake, taken, metrics, drained };
}

/** Follow a temp file while the text is appended in uneven chunks (lines split mid-way). */
async function viaFollowedFile(text: string): Promise<{ alerts: Alert[]; counts: FileSourceCounts }> {
  const path = join(tempDir(), 'falco_events.json');
  writeFileSync(path, '');
  const h = harness();
  const src = new FileSource({ path, fromStart: true, follow: true, pollIntervalMs: 10, maxLineBytes: 1024 * 1024, intake: h.intake, logger: silentLogger(), metrics: h.metrics });
  await src.start();
  const expected = alertLines(text).length;
  const sizes = [1, 7, 300, 4096, 13, 65_537];
  for (let pos = 0, k = 0; pos < text.length; k++) {
    const n = sizes[k % sizes.length]!;
    appendFileSync(path, text.slice(pos, pos + n));
    pos += n;
    if (k % 5 === 0) await wait(3);
  }
  await until(() => h.taken.length >= expected, 10_000, `${expected} alerts`);
  await src.stop(Date.now() + 2000);
  h.intake.close();
  await h.drained;
  return { alerts: h.taken, counts: await src.done() };
}

async function viaReplay(text: string): Promise<{ alerts: Alert[]; counts: FileSourceCounts }> {
  const path = join(tempDir(), 'replay.jsonl');
  writeFileSync(path, text);
  const h = harness(4); // small: the replay must wait, never drop
  const src = new FileSource({ path, fromStart: true, follow: false, pollIntervalMs: 10, maxLineBytes: 1024 * 1024, intake: h.intake, logger: silentLogger(), metrics: h.metrics, originKind: 'replay' });
  await src.start();
  const counts = await src.done();
  await until(() => h.taken.length >= counts.alerts, 10_000, 'all replayed alerts');
  h.intake.close();
  await h.drained;
  return { alerts: h.taken, counts };
}

function check(text: string, result: { alerts: Alert[]; counts: FileSourceCounts }): void {
  const originals = alertLines(text);
  expect(result.alerts).toHaveLength(originals.length);
  expect(result.counts.alerts).toBe(originals.length);
  originals.forEach((line, i) => {
    expectSameAlert(line, serializeAlert(result.alerts[i]!, { includeCompanion: false }));
  });
}

const fixtureFiles = existsSync(FIXTURES) ? readdirSync(FIXTURES).filter((f) => f.endsWith('.jsonl')).sort() : [];

describe('JSON-lines conformance: our fixtures', () => {
  it('has fixtures for several Falco versions', () => {
    expect(fixtureFiles.length).toBeGreaterThanOrEqual(6);
  });

  it.each(fixtureFiles)('%s through a followed file', async (name) => {
    const text = readFileSync(join(FIXTURES, name), 'utf8');
    check(text, await viaFollowedFile(text));
  });

  it.each(fixtureFiles)('%s through replay', async (name) => {
    const text = readFileSync(join(FIXTURES, name), 'utf8');
    const r = await viaReplay(text);
    expect(r.counts.skipped).toBe(0);
    check(text, r);
  });

  it('a Falco stdout capture: alerts kept, startup and log lines skipped and counted', async () => {
    const text = readFileSync(STDOUT_LOG, 'utf8');
    const lines = text.split('\n').length - 1;
    const r = await viaReplay(text);
    expect(r.counts).toEqual({ lines, alerts: 3, skipped: lines - 3 });
    check(text, r);
    check(text, await viaFollowedFile(text.replace(/\n/g, '\r\n')));
  });

  it('keeps nanosecond integers above 2^53 exact', async () => {
    const text = readFileSync(join(FIXTURES, 'falco-0.38.jsonl'), 'utf8');
    const { alerts } = await viaReplay(text);
    const v = alerts[0]!.outputFields!['container.start_ts'];
    expect(v).toBeInstanceOf(LosslessNumber);
    expect(String(v)).toBe('1717397902117563874');
  });
});

describe.skipIf(!referencePresent)('JSON-lines conformance: real Falco alerts (../shared/falco-reference/falco-alerts.jsonl; skipped when that folder is absent)', () => {
  it('every reference alert through a followed file', async () => {
    const text = readFileSync(REFERENCE, 'utf8');
    expect(alertLines(text).length).toBeGreaterThanOrEqual(19);
    check(text, await viaFollowedFile(text));
  });

  it('every reference alert through replay', async () => {
    const text = readFileSync(REFERENCE, 'utf8');
    const r = await viaReplay(text);
    expect(r.counts.skipped).toBe(0);
    check(text, r);
  });
});

if (!referencePresent) {
  describe('JSON-lines conformance: real Falco alerts', () => {
    it.skip(`skipped: ${REFERENCE} not found (the shared reference folder is only present in the development workspace)`, () => undefined);
  });
}
