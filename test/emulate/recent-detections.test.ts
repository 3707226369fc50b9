/**
 * The recent-detections ring buffer and its read-only handler (GET /detections): what it records,
 * the filters `emulate run --verify` uses, bad queries (400 with a reason), the bound.
 */
import { describe, expect, it } from 'vitest';
import { createAlert, type Alert, type Priority } from '../../src/alert.js';
import { findingToAlert } from '../../src/detect/finding-to-alert.js';
import type { DetectStage } from '../../src/pipeline/types.js';
import { Metrics } from '../../src/metrics.js';
import { RecentDetections, lineagePids, recordingStage, summarize } from '../../src/sinks/recent-detections.js';
import { sig } from '../support/signals.js';

function detection(opts: { container?: string | null; priority?: Priority; detector?: string; pids?: number[]; t?: number; mitre?: string[] } = {}): Alert {
  const pids = opts.pids ?? [100, 101];
  const evidence = pids.map((pid, i) => sig({ kind: i === 0 ? 'raw_socket' : 'shell_socket', t: (opts.t ?? 0) + i, container: opts.container === undefined ? 'a29db30b8741' : opts.container, pid, ppid: pid - 1, name: i === 0 ? 'kdmtmpflush' : 'sh' }));
  return findingToAlert({
    detector: opts.detector ?? 'socket_filter',
    rule: 'Traffic signaling: socket filter armed, then shell wired to a socket',
    priority: opts.priority ?? 'Critical',
    score: 0.95,
    message: 'x',
    mitre: opts.mitre ?? ['T1205.002', 'T1205', 'mitre_defense_evasion'],
    key: 'k',
    evidence,
    fields: {},
    timeNs: (evidence[evidence.length - 1] ?? evidence[0])!.timeNs,
  });
}

const falcoAlert = (): Alert =>
  createAlert({ time: '2024-01-01T00:00:00.000000000Z', rule: 'Companion signal: socket filter attached', priority: 'Warning', source: 'syscall', outputFields: { 'container.id': 'a29db30b8741' }, origin: { kind: 'http', component: 'source/http' } });

describe('RecentDetections', () => {
  it('summarises a detection: detector, MITRE ids, container, lineage pids', () => {
    const s = summarize(detection({ pids: [13924, 13925] }));
    expect(s.detector).toBe('socket_filter');
    expect(s.mitre).toEqual(['T1205.002', 'T1205']);
    expect(s.container_id).toBe('a29db30b8741');
    expect([...s.pids].sort()).toEqual([13924, 13925]);
    expect(s.priority).toBe('Critical');
    expect(lineagePids('kworker[13924<13892] > sh[13925]')).toEqual([13924, 13925]);
    expect(lineagePids(null)).toEqual([]);
  });

  it('records detections only, filters by container (short or long id), pid, detector, since', () => {
    const r = new RecentDetections(10);
    r.record(falcoAlert());
    r.record(detection({ t: 0 }));
    r.record(detection({ container: 'bbbbbbbbbbbb', t: 5, pids: [7] }));
    r.record(detection({ container: null, detector: 'knock', t: 10, pids: [42], mitre: ['T1205.001'] }));
    const q = (s: string): { detections: { container_id: string; detector: string }[]; matched: number } => {
      const a = r.handle(`/detections?${s}`);
      expect(a.status).toBe(200);
      return a.body as { detections: { container_id: string; detector: string }[]; matched: number };
    };
    expect(q('').matched).toBe(3);
    expect(q('container=a29db30b8741').detections.map((d) => d.container_id)).toEqual(['a29db30b8741']);
    expect(q(`container=a29db30b8741${'0'.repeat(52)}`).matched).toBe(1); // a full 64-hex id matches Falco's 12
    expect(q('container=host').detections.map((d) => d.detector)).toEqual(['knock']);
    expect(q('pid=42,7').matched).toBe(2);
    expect(q('detector=knock').matched).toBe(1);
    expect(q('since=2024-01-01T00:00:04Z').matched).toBe(2);
    expect(q('limit=1').detections).toHaveLength(1);
  });

  it('answers 400 with a reason for bad queries', () => {
    const r = new RecentDetections(5);
    for (const [qs, reason] of [
      ['container=xyz', 'container must be'],
      ['pid=1,a', 'pid must be'],
      ['since=yesterday', 'since must be'],
      ['limit=0', 'limit must be'],
      ['limit=6', 'limit must be'],
      ['colour=red', 'unknown parameter colour'],
    ] as const) {
      const a = r.handle(`/detections?${qs}`);
      expect(a.status, qs).toBe(400);
      expect((a.body as { reason: string }).reason, qs).toContain(reason);
    }
  });

  it('is bounded: the oldest summaries are overwritten and counted', () => {
    const m = new Metrics();
    const r = new RecentDetections(3, m);
    for (let i = 0; i < 5; i++) r.record(detection({ t: i, pids: [1000 + i] }));
    const body = r.handle('/detections').body as { detections: { pids: number[] }[]; evicted: number; recorded: number; capacity: number };
    expect(body.detections.map((d) => d.pids[0])).toEqual([1002, 1003, 1004]);
    expect(body).toMatchObject({ evicted: 2, recorded: 5, capacity: 3 });
    expect(r.all()).toHaveLength(3);
  });

  it('recordingStage records what the detection stage returns and flushes, and changes nothing else', () => {
    const d1 = detection({ t: 1 });
    const d2 = detection({ t: 2, detector: 'beacon', mitre: ['T1071'] });
    const inner: DetectStage = { process: () => ({ forward: false, detections: [d1] }), flush: () => [d2] };
    const r = new RecentDetections(10);
    const st = recordingStage(inner, r);
    const out = st.process(falcoAlert());
    expect(out.forward).toBe(false);
    expect(out.detections.map((d) => d.rule)).toEqual([d1.rule]);
    const flushed = st.flush?.() ?? [];
    expect(flushed.map((d) => d.companion['detector'])).toEqual(['beacon']);
    expect(r.all().map((s) => s.detector)).toEqual(['socket_filter', 'beacon']);
    // the summary's id is the id the detection leaves the stage with
    const id = out.detections[0]?.companion['alert_id'];
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(r.all()[0]?.id).toBe(id);
    expect(r.all()[1]?.id).toBe(flushed[0]?.companion['alert_id']);
    expect(recordingStage({ process: inner.process }, r).flush).toBeUndefined();
  });
});
