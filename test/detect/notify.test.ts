/**
 * Incidents and the notify policy (src/detect/notify.ts) on hand-made findings, and through the
 * engine: one detection per incident, again when it gets worse or a new technique appears, a beacon
 * that keeps beaconing is one detection a day, host findings group by process lineage.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertFromJson, type Alert, type Priority } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { decodeState, encodeState, restoreInto } from '../../src/detect/codec.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { incidentId, Notifier, type NotifyDecision, type NotifySettings } from '../../src/detect/notify.js';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import type { Finding, Signal } from '../../src/detect/types.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { BASE_NS, secNs, sig } from '../support/signals.js';

const DAY = 86_400;
const SETTINGS: NotifySettings = { renotifyMs: DAY * 1000, incidentIdleMs: DAY * 1000, maxIncidents: 100 };

function finding(o: { t: number; detector?: string; priority?: Priority; mitre?: string[]; key?: string; evidence?: Signal[] }): Finding {
  const timeNs = BASE_NS + secNs(o.t);
  return {
    detector: o.detector ?? 'beacon',
    rule: 'r',
    priority: o.priority ?? 'Warning',
    score: 0.9,
    message: 'm',
    mitre: o.mitre ?? ['T1071'],
    key: o.key ?? 'k',
    evidence: o.evidence ?? [sig({ kind: 'connect', ns: timeNs, container: 'c1' })],
    fields: {},
    timeNs,
  };
}

const hostSig = (t: number, pid: number, extra: { ppid?: number; sid?: number; apids?: number[] } = {}): Signal => {
  const s = sig({ kind: 'raw_socket', t, container: null, pid, ppid: extra.ppid ?? 1 });
  return { ...s, proc: { ...s.proc, sid: extra.sid ?? null, apids: extra.apids ?? [] } };
};

describe('Notifier', () => {
  it('a beacon beaconing for a day at one priority: one detection, then one a day later with the count', () => {
    const n = new Notifier(SETTINGS);
    const sent = [];
    for (let t = 0; t <= DAY + 1800; t += 1500) {
      const d = n.decide(finding({ t }), BASE_NS + secNs(t));
      if (d.reason !== null) sent.push({ t, ...d });
    }
    // Findings every 25 min: the first at 0 s, the first a day or more later at 87 000 s (58th).
    expect(sent.map((s) => [s.t, s.reason, s.repeated])).toEqual([
      [0, 'new', 0],
      [87_000, 'renotify', 57],
    ]);
    expect(sent[1]?.sinceNs).toBe(BASE_NS);
    expect(sent[1]?.incident).toBe(sent[0]?.incident);
  });

  it('sends at once when the priority rises or a new technique appears; folds the rest', () => {
    const n = new Notifier(SETTINGS);
    const reasons = [
      finding({ t: 0, priority: 'Warning' }),
      finding({ t: 1, priority: 'Warning', key: 'other-series' }), // same workload, same technique: folded
      finding({ t: 2, priority: 'Error' }), // worse
      finding({ t: 3, priority: 'Warning' }), // less severe than sent: folded
      finding({ t: 4, priority: 'Notice', detector: 'escape_chain', mitre: ['T1611', 'mitre_privilege_escalation'] }), // new technique
      finding({ t: 5, priority: 'Error', detector: 'escape_chain', mitre: ['T1611'] }),
      finding({ t: 6, priority: 'Warning', detector: 'custom', mitre: [] }), // no technique: the detector counts as one
    ].map((f) => n.decide(f, f.timeNs));
    expect(reasons.map((d) => d.reason)).toEqual(['new', null, 'escalated', null, 'new_technique', null, 'new_technique']);
    expect(new Set(reasons.map((d) => d.incident)).size).toBe(1);
    expect(reasons[2]?.repeated).toBe(1);
    expect(reasons[4]?.repeated).toBe(1);
  });

  it('a new chain of the same detector later on (a second C2 destination) is sent; churn is capped', () => {
    const n = new Notifier(SETTINGS);
    const at = (t: number, key: string, priority: Priority = 'Warning'): NotifyDecision => {
      const timeNs = BASE_NS + secNs(t);
      return n.decide(finding({ t, key, priority, evidence: [sig({ kind: 'connect', ns: timeNs - secNs(60), container: 'c1' }), sig({ kind: 'connect', ns: timeNs, container: 'c1' })] }), timeNs);
    };
    expect(at(0, 'dest-a').reason).toBe('new');
    expect(at(300, 'dest-b').reason).toBeNull(); // the same burst: folded
    expect(at(4 * 3600, 'dest-c').reason).toBe('new_chain'); // hours later, a new destination
    expect(at(4 * 3600 + 60, 'dest-c').reason).toBeNull(); // that chain again: folded
    expect(at(5 * 3600, 'dest-d', 'Notice').reason).toBeNull(); // below Warning: folded
    expect(at(6 * 3600, 'dest-e').reason).toBe('new_chain');
    expect(at(7 * 3600, 'dest-f').reason).toBe('new_chain');
    expect(at(8 * 3600, 'dest-g').reason).toBeNull(); // MAX_NEW_CHAINS (3) per renotify period
  });

  it('keeps containers apart, and closes an incident idle past incident_idle', () => {
    const n = new Notifier({ ...SETTINGS, incidentIdleMs: 3_600_000 });
    const a = n.decide(finding({ t: 0 }), BASE_NS);
    const b = n.decide(finding({ t: 1, evidence: [sig({ kind: 'connect', t: 1, container: 'c2' })] }), BASE_NS + secNs(1));
    expect(b.reason).toBe('new');
    expect(b.incident).not.toBe(a.incident);
    expect(n.decide(finding({ t: 3000 }), BASE_NS + secNs(3000)).reason).toBeNull();
    const c = n.decide(finding({ t: 3000 + 3601 }), BASE_NS + secNs(6601));
    expect(c.reason).toBe('new');
    expect(c.incident).not.toBe(a.incident);
    expect(c.incident > a.incident).toBe(true); // time-ordered
  });

  it('groups host findings by process lineage, not by host', () => {
    const n = new Notifier(SETTINGS);
    const implant = n.decide(finding({ t: 0, detector: 'socket_filter', mitre: ['T1205.002'], evidence: [hostSig(0, 4000, { sid: 4000 })] }), BASE_NS);
    // Its child (ppid), a session member and a descendant (apid) join; an unrelated process does not.
    const child = n.decide(finding({ t: 1, detector: 'socket_filter', mitre: ['T1205.002'], key: 'k2', evidence: [hostSig(1, 4100, { ppid: 4000 })] }), BASE_NS + secNs(1));
    const member = n.decide(finding({ t: 2, detector: 'socket_filter', mitre: ['T1205.002'], key: 'k3', evidence: [hostSig(2, 4200, { sid: 4000 })] }), BASE_NS + secNs(2));
    const grandchild = n.decide(finding({ t: 3, detector: 'socket_filter', mitre: ['T1205.002'], key: 'k4', evidence: [hostSig(3, 4300, { ppid: 4100, apids: [4100, 4000, 1] })] }), BASE_NS + secNs(3));
    const other = n.decide(finding({ t: 4, detector: 'socket_filter', mitre: ['T1205.002'], key: 'k5', evidence: [hostSig(4, 9000, { ppid: 1, sid: 9000 })] }), BASE_NS + secNs(4));
    expect([child, member, grandchild].map((d) => [d.incident, d.reason])).toEqual([
      [implant.incident, null],
      [implant.incident, null],
      [implant.incident, null],
    ]);
    expect(other.reason).toBe('new');
    expect(other.incident).not.toBe(implant.incident);
    // pid 1 (init) links nothing.
    const orphan = n.decide(finding({ t: 5, detector: 'socket_filter', mitre: ['T1205.002'], key: 'k6', evidence: [hostSig(5, 9100, { ppid: 1, apids: [1] })] }), BASE_NS + secNs(5));
    expect(orphan.reason).toBe('new');
  });

  it('is bounded: the least recently active incident is evicted and counted', () => {
    const n = new Notifier({ ...SETTINGS, maxIncidents: 10 });
    for (let i = 0; i < 12; i++) n.decide(finding({ t: i, evidence: [sig({ kind: 'connect', t: i, container: `c${i}` })] }), BASE_NS + secNs(i));
    expect(n.size).toBe(10);
    expect(n.evicted).toBe(2);
    // c0 was evicted: its next finding opens a new incident (and is sent).
    expect(n.decide(finding({ t: 20, evidence: [sig({ kind: 'connect', t: 20, container: 'c0' })] }), BASE_NS + secNs(20)).reason).toBe('new');
  });

  it('a rules reload with a smaller max_incidents keeps the most recently active incidents (evictions counted)', () => {
    const n = new Notifier(SETTINGS);
    const ids = Array.from({ length: 20 }, (_, i) => n.decide(finding({ t: i, evidence: [sig({ kind: 'connect', t: i, container: `c${i}` })] }), BASE_NS + secNs(i)).incident);
    n.configure({ ...SETTINGS, maxIncidents: 10 });
    expect(n.size).toBe(10);
    expect(n.evicted).toBe(10);
    expect(n.decide(finding({ t: 30, evidence: [sig({ kind: 'connect', t: 30, container: 'c19' })] }), BASE_NS + secNs(30))).toMatchObject({ incident: ids[19], reason: null });
    expect(n.decide(finding({ t: 31, evidence: [sig({ kind: 'connect', t: 31, container: 'c0' })] }), BASE_NS + secNs(31)).reason).toBe('new');
  });

  it('survives a checkpoint: folded counts, host lineage and ids come back', () => {
    const n = new Notifier(SETTINGS);
    const first = n.decide(finding({ t: 0, evidence: [hostSig(0, 4000)] }), BASE_NS);
    n.decide(finding({ t: 10, evidence: [hostSig(10, 4000)] }), BASE_NS + secNs(10));
    const m = new Notifier(SETTINGS);
    m.restore(restoreInto(m.init(), decodeState(encodeState(n.state))));
    expect(m.decide(finding({ t: 20, evidence: [hostSig(20, 4001, { ppid: 4000 })] }), BASE_NS + secNs(20))).toMatchObject({ incident: first.incident, reason: null });
    const later = m.decide(finding({ t: DAY + 5, evidence: [hostSig(DAY + 5, 4000)] }), BASE_NS + secNs(DAY + 5));
    expect(later).toMatchObject({ incident: first.incident, reason: 'renotify', repeated: 2 });
  });

  it('incident ids: ULIDs of the first finding\'s event time, deterministic per workload', () => {
    const id = incidentId(1_704_067_200_123_000_000n, 'node-1|c1|k|1');
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(id).toBe(incidentId(1_704_067_200_123_000_000n, 'node-1|c1|k|1'));
    expect(id).not.toBe(incidentId(1_704_067_200_123_000_000n, 'node-2|c1|k|1'));
    expect(incidentId(1_704_067_200_124_000_000n, 'a') > incidentId(1_704_067_200_123_000_000n, 'z')).toBe(true);
  });
});

describe('incidents through the engine', () => {
  const RECORDED = '../shared/falco-reference/recorded/bind-shell-container.jsonl';

  it.skipIf(!existsSync(RECORDED))('the recorded BPFDoor-like chain (real Falco 0.40): one detection, one incident, Critical (it was 5 detections)', () => {
    const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
    const metrics = new Metrics({ collectDefault: false });
    const findings: { rule: string; emitted: boolean; incident: string }[] = [];
    const engine = new DetectionEngine({
      rules,
      detectors: buildDetectors(rules),
      logger: silentLogger(),
      metrics,
      clock: new ManualClock(0),
      observers: [{ finding: (f, a, incident) => findings.push({ rule: f.rule, emitted: a !== null, incident }) }],
    });
    const out: Alert[] = [];
    for (const line of readFileSync(RECORDED, 'utf8').split('\n').filter(Boolean)) out.push(...engine.process(alertFromJson(parse(line), { kind: 'replay', component: 'test' })).detections);
    // The disguised arming is a detection on its own (Error); the trigger completes the chain and
    // raises it (Critical); every other piece of the chain folds.
    expect(out.map((d) => `${d.priority} ${d.rule}`)).toEqual(['Error Traffic signaling: socket filter armed by a suspicious process', 'Critical Traffic signaling: socket filter armed, then new listener']);
    const incident = out[0]?.companion['incident'];
    expect(out[1]?.companion['incident']).toBe(incident);
    expect(out[1]?.companion['incident_update']).toBe('escalated');
    expect(incident).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(out[0]?.companion['alert_id']).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    // Every piece of the chain was a finding of that one incident; only the arming and the escalation went out.
    expect(findings.length).toBeGreaterThan(2);
    expect(new Set(findings.map((f) => f.incident))).toEqual(new Set([incident]));
    expect(findings.filter((f) => f.emitted)).toHaveLength(2);
  });
});
