/**
 * `--record DIR`: each detection's raw alerts as a test case, on a real directory. The case
 * replays to the same detection (`falco-companion test`); the bounds hold and are counted (alerts
 * and bytes per case, evidence no longer buffered, cases and bytes in the directory, only our own
 * folders removed); when the engine reports signals, only signal alerts are buffered.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { loadYamlCase } from '../../src/cases/load.js';
import { runCase } from '../../src/cases/run.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { CaseRecorder } from '../../src/journal/recorder.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { alertIdOf } from '../../src/store/alert-id.js';
import { exampleAlerts, exampleFindings } from './helpers.js';

function recorder(dir: string, metrics: Metrics, over: Record<string, unknown> = {}): CaseRecorder {
  const rec = loadConfig<Config>(configSchema, { file: null, env: {}, overrides: { 'journal.record.dir': dir, ...over } }).journal.record;
  return new CaseRecorder({ config: { ...rec, dir }, rulesFile: null, logger: silentLogger(), metrics, now: () => 0 });
}

async function metric(m: Metrics, re: RegExp): Promise<number> {
  const hit = re.exec(await m.text());
  return hit ? Number(hit[1]) : 0;
}

describe('CaseRecorder', () => {
  let dir: string;
  let metrics: Metrics;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fc-record-'));
    metrics = new Metrics({ collectDefault: false });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a case that replays to the same detection, with the workload\'s alerts and their enrichment', async () => {
    const { alerts, findings } = exampleFindings('c2-beacon');
    const r = recorder(dir, metrics);
    const sent = findings.find((f) => f.emitted !== null && f.finding.detector === 'beacon');
    if (!sent?.emitted) throw new Error('c2-beacon detects');
    for (const a of alerts) {
      r.seen(a);
      if (a.timeNs === sent.emitted.timeNs) break;
    }
    r.detection(sent.emitted, sent.finding);
    await r.drain(Date.now() + 5000);
    const id = alertIdOf(sent.emitted) as string;
    expect(readdirSync(dir)).toEqual([id]);
    const c = loadYamlCase(join(dir, id, 'case.yaml'));
    expect(c.expect.detections).toEqual([{ detector: 'beacon', rule: 'C2 beaconing: periodic outbound connections', mitre: null, min_priority: sent.emitted.priority, min_score: null, count: null }]);
    expect(c.expect.other_detections).toBe('ignore');
    const lines = readFileSync(join(dir, id, 'alerts.jsonl'), 'utf8').trimEnd().split('\n');
    // The whole series between the first evidence and the detection (the beacon needs it), not just the 5 kept as evidence.
    expect(sent.finding.evidence.length).toBe(5);
    expect(lines.length).toBe(alerts.filter((a) => a.timeNs >= (sent.finding.evidence[0] as { timeNs: bigint }).timeNs && a.timeNs <= sent.emitted!.timeNs).length);
    expect(lines.every((l) => !l.includes('companion.'))).toBe(true); // raw, as Falco sent them
    const replay = runCase(join(dir, id));
    expect(replay.status, replay.failures.join('\n')).toBe('pass');
    expect(await metric(metrics, /^falco_companion_record_cases_total (\d+)/m)).toBe(1);
  });

  it('bounds alerts per case, counts evidence no longer buffered, and keeps max_cases (ours only)', async () => {
    mkdirSync(join(dir, 'my-notes')); // not a case folder: never removed
    const old = '01A00000000000000000000000'; // a case recorded earlier
    mkdirSync(join(dir, old));
    writeFileSync(join(dir, old, 'alerts.jsonl'), '{}\n');
    const { alerts, findings } = exampleFindings('socket-filter-bind-shell');
    const emitted = findings.filter((f) => f.emitted !== null);
    expect(emitted.length).toBeGreaterThanOrEqual(2);
    const r = recorder(dir, metrics, { 'journal.record.buffer_alerts': 10, 'journal.record.max_alerts': 2, 'journal.record.max_cases': emitted.length });
    const byTime = new Map(emitted.map((f) => [f.emitted?.timeNs, f]));
    // Another workload's traffic between the arming and the trigger pushes the arming out of the buffer.
    const noise = exampleAlerts('c2-beacon');
    for (const a of [...alerts.slice(0, 6), ...noise, ...alerts.slice(6)]) {
      r.seen(a);
      const f = byTime.get(a.timeNs);
      if (f?.emitted) r.detection(f.emitted, f.finding);
    }
    await r.drain(Date.now() + 5000);
    const ids = emitted.map((f) => alertIdOf(f.emitted as Alert) as string);
    expect(readdirSync(dir).sort()).toEqual([...ids, 'my-notes'].sort()); // the earlier case removed for max_cases
    expect(await metric(metrics, /^falco_companion_record_cases_pruned_total\{reason="max_cases"\} (\d+)/m)).toBe(1);
    for (const id of ids) expect(readFileSync(join(dir, id, 'alerts.jsonl'), 'utf8').trimEnd().split('\n').length).toBeLessThanOrEqual(2);
    expect(await metric(metrics, /^falco_companion_record_alerts_trimmed_total\{reason="max_alerts"\} (\d+)/m)).toBeGreaterThan(0);
    // The arming 30 minutes earlier fell out of the 10-alert buffer: counted, and said in the case.
    expect(await metric(metrics, /^falco_companion_record_alerts_trimmed_total\{reason="not_buffered"\} (\d+)/m)).toBeGreaterThan(0);
    const listener = emitted.find((f) => f.emitted?.rule.endsWith('then new listener'));
    expect(readFileSync(join(dir, alertIdOf(listener?.emitted as Alert) as string, 'case.yaml'), 'utf8')).toMatch(/\d+ evidence alert\(s\) were no longer in the buffer/);
  });

  it('once the engine reports signals, only signal alerts are buffered', async () => {
    const { alerts, findings } = exampleFindings('escape-chain');
    const sent = findings.find((f) => f.emitted !== null);
    if (!sent?.emitted) throw new Error('escape-chain detects');
    const r = recorder(dir, metrics);
    for (const s of sent.finding.evidence) r.signal(s, 'escape_chain', 'consumed');
    for (const a of alerts) r.seen(a); // ignored now: the signals were reported
    r.detection(sent.emitted, sent.finding);
    await r.drain(Date.now() + 5000);
    const id = alertIdOf(sent.emitted) as string;
    expect(readFileSync(join(dir, id, 'alerts.jsonl'), 'utf8').trimEnd().split('\n').length).toBe(new Set(sent.finding.evidence.map((s) => alertIdOf(s.alert))).size);
  });

  it('a directory it cannot write is counted and logged, never thrown', async () => {
    const { alerts, findings } = exampleFindings('escape-chain');
    const sent = findings.find((f) => f.emitted !== null);
    if (!sent?.emitted) throw new Error('escape-chain detects');
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const r = recorder(join(file, 'cases'), metrics); // under a regular file: ENOTDIR
    for (const a of alerts) r.seen(a);
    expect(() => r.detection(sent.emitted as Alert, sent.finding)).not.toThrow();
    await r.drain(Date.now() + 5000);
    expect(await metric(metrics, /^falco_companion_discarded_total\{component="journal\/record",reason="write_failed"\} (\d+)/m)).toBe(1);
  });
});
