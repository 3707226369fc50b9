import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertFromJson, withEnrichment, type Alert, type EnrichValue } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import type { Detector, Finding } from '../../src/detect/types.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { alertAt, DETECTOR_SPECS, detectorsFrom, engineWith } from './helpers.js';

const door = { 'proc.pid': 500, 'proc.ppid': 1, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x' };
const kid = (pid: number) => ({ 'proc.pid': pid, 'proc.ppid': 500, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x' });
const RAW = 'Companion signal: packet or raw socket created';
const LISTEN = 'Companion signal: listening socket in container';

function run(engine: DetectionEngine, alerts: Alert[]): Alert[] {
  return alerts.flatMap((a) => [...engine.process(a).detections]);
}

function metricValue(text: string, re: RegExp): number {
  const line = text.split('\n').find((l) => re.test(l));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('DetectionEngine', () => {
  // Replaces the dedup-window test: the notify policy folds repeats until renotify (no summary
  // when a window closes, nothing pending at flush) and reports the count on the next detection.
  it('sends one detection per incident, folds repeats, and re-sends after renotify with the count', async () => {
    const rules = loadRulesFile('/r.yaml', { text: 'extends: builtin\noutput: {renotify: 1h}', detectors: DETECTOR_SPECS });
    const { engine, metrics } = engineWith(rules);
    const first = run(engine, [alertAt(0, RAW, door), ...[1, 2, 3].map((i) => alertAt(i, LISTEN, { ...kid(600 + i), 'fd.name': `0.0.0.0:${8000 + i}->0.0.0.0:${8000 + i}` }))]);
    expect(first).toHaveLength(1);
    expect(first[0]?.rule).toBe('Traffic signaling: socket filter armed, then new listener');
    expect(first[0]?.companion['repeated']).toBeUndefined();
    // An unrelated alert 11 minutes later: no summary (the old dedup window would have sent one).
    expect(run(engine, [alertAt(660, 'Some rule', {})])).toEqual([]);
    expect('flush' in engine).toBe(false);
    // The same chain again after renotify (1h): sent, with the 2 folded repeats.
    const again = run(engine, [alertAt(3650, RAW, door), alertAt(3700, LISTEN, { ...kid(700), 'fd.name': '0.0.0.0:9000->0.0.0.0:9000' })]);
    expect(again).toHaveLength(1);
    expect(again[0]?.companion['repeated']).toBe(2);
    expect(again[0]?.companion['repeated_since']).toBe('2024-01-01T00:00:01Z');
    expect(again[0]?.companion['incident_update']).toBe('renotify');
    expect(again[0]?.companion['incident']).toBe(first[0]?.companion['incident']);
    expect(again[0]?.output).toMatch(/\(repeated 2 times since 2024-01-01T00:00:01Z\)$/);
    const text = await metrics.text();
    expect(metricValue(text, /^falco_companion_detections_folded_total\{detector="socket_filter"\}/)).toBe(2);
    expect(metricValue(text, /^falco_companion_detector_findings_total\{detector="socket_filter"\}/)).toBe(4);
    expect(metricValue(text, /^falco_companion_detections_total\{detector="socket_filter",priority="Warning"\}/)).toBe(2);
  });

  it('lets a more severe finding of the same key through at once', () => {
    const { engine } = engineWith();
    const out = run(engine, [
      alertAt(0, RAW, door),
      alertAt(1, LISTEN, { ...kid(601), 'fd.name': '0.0.0.0:8080->0.0.0.0:8080' }),
      alertAt(2, LISTEN, { ...kid(602), 'fd.name': '0.0.0.0:42400->0.0.0.0:42400' }),
    ]);
    expect(out.map((a) => a.priority)).toEqual(['Warning', 'Error']);
  });

  it('builds Falco-shaped detections Talon can act on', () => {
    const { engine } = engineWith();
    const [d] = run(engine, [alertAt(0, RAW, door), alertAt(5, 'Companion signal: inbound connection accepted in container', { ...kid(601), 'fd.name': '203.0.113.5:5000->10.1.1.1:22' })]);
    if (!d) throw new Error('no detection');
    expect(d.source).toBe('falco-companion');
    expect(d.time).toBe('2024-01-01T00:00:05.000000000Z');
    expect(d.output).toMatch(/^00:00:05\.000000000: Warning /);
    expect(d.tags).toEqual(expect.arrayContaining(['falco_companion', 'T1205.002', 'mitre_defense_evasion']));
    expect(d.outputFields).toMatchObject({ 'container.id': 'abc123def456', 'k8s.ns.name': 'web', 'k8s.pod.name': 'nginx-1', 'container.image.repository': 'docker.io/library/nginx', 'fd.sip': '10.1.1.1' });
    expect(d.companion['evidence']).toBe('00:00:00.000 packet or raw socket created; 00:00:05.000 inbound connection accepted in container');
    expect(d.companion['response']).toMatch(/isolate the container's network.*network logs.*image history.*incident response/);
    expect(d.companion['detector']).toBe('socket_filter');
    expect(d.origin.kind).toBe('detector');
  });

  it('counts every suppression: allowlist, CI window (event time), CI workload, learning', async () => {
    const text = [
      'extends: builtin',
      'suppress:',
      '  allow:',
      '    - {name: x, detectors: [socket_filter], exe: ["/usr/bin/allowed"]}',
      '  ci:',
      '    windows: [{days: mon, from: "00:00", to: "01:00"}]',
      '    workloads: [{namespace: [ci]}]',
      '    detectors: [socket_filter]',
      '  learning: {knock: 1h}',
    ].join('\n');
    const rules = loadRulesFile('/r.yaml', { text, detectors: DETECTOR_SPECS });
    const { engine, metrics } = engineWith(rules);
    // 2024-01-01T00:00 is Monday 00:00 UTC: inside the CI window.
    expect(run(engine, [alertAt(0, RAW, door), alertAt(1, LISTEN, { ...kid(601), 'fd.name': '0.0.0.0:1->0.0.0.0:1' })])).toEqual([]);
    // After the window, a CI-namespace workload and an allowlisted exe.
    run(engine, [alertAt(7200, RAW, { ...door, 'k8s.ns.name': 'ci' }), alertAt(7201, RAW, { ...door, 'proc.exepath': '/usr/bin/allowed' })]);
    // Knock inside its learning period.
    run(engine, [
      alertAt(7300, 'Companion signal: firewall tool run', { 'proc.pid': 9, 'proc.cmdline': 'iptables -I INPUT -s 198.51.100.1 -j ACCEPT' }),
      alertAt(7301, 'Companion signal: inbound connection accepted in container', { 'proc.pid': 10, 'fd.name': '198.51.100.1:1->10.0.0.1:22' }),
    ]);
    const m = await metrics.text();
    expect(metricValue(m, /^falco_companion_suppressed_total\{detector="socket_filter",reason="ci_window"\}/)).toBe(2);
    expect(metricValue(m, /^falco_companion_suppressed_total\{detector="socket_filter",reason="ci_workload"\}/)).toBe(1);
    expect(metricValue(m, /^falco_companion_suppressed_total\{detector="socket_filter",reason="allowlist"\}/)).toBe(1);
    expect(metricValue(m, /^falco_companion_suppressed_total\{detector="knock",reason="learning"\}/)).toBe(1);
  });

  it('forwards signal-only alerts unless configured not to', () => {
    const off = loadRulesFile('/r.yaml', { text: 'extends: builtin\noutput: {forward_signal_alerts: false}', detectors: DETECTOR_SPECS });
    const { engine } = engineWith(off);
    expect(engine.process(alertAt(0, RAW, door)).forward).toBe(false);
    expect(engine.process(alertAt(0, 'Terminal shell in container', door)).forward).toBe(true);
    const { engine: on } = engineWith();
    expect(on.process(alertAt(0, RAW, door)).forward).toBe(true);
  });

  it('survives a throwing detector, counts evictions, and keeps state across setRules', async () => {
    const metrics = new Metrics({ collectDefault: false });
    let steps = 0;
    const boom: Detector<{ n: number }> = {
      id: 'boom',
      consumes: ['raw_socket'],
      init: () => ({ n: 0 }),
      step(st) {
        steps++;
        if (steps === 1) throw new Error('bad');
        return { state: { n: st.n + 1 }, findings: [] as Finding[] };
      },
      evictions: (st) => st.n,
    };
    const rules = loadRulesFile(null, { detectors: DETECTOR_SPECS });
    const engine = new DetectionEngine({ rules, detectors: [boom as Detector<unknown>], logger: silentLogger(), metrics, clock: new ManualClock(0) });
    run(engine, [alertAt(0, RAW, door), alertAt(1, RAW, door)]);
    engine.setRules(rules, [boom as Detector<unknown>]);
    run(engine, [alertAt(2, RAW, door)]);
    const m = await metrics.text();
    expect(metricValue(m, /^falco_companion_errors_total\{component="detect\/boom",code="E_UNKNOWN"\}/)).toBe(1);
    expect(metricValue(m, /^falco_companion_detector_evictions_total\{detector="boom"\}/)).toBe(2);
  });

  it('the CI image-pull burst scenario is silent only thanks to the CI workload selectors', () => {
    const folder = 'test/fixtures/scenarios/benign-ci-image-pull-burst';
    const lines = readFileSync(`${folder}/alerts.jsonl`, 'utf8').split('\n').filter(Boolean);
    const enrichment = JSON.parse(readFileSync(`${folder}/enrichment.json`, 'utf8')) as Record<string, Record<string, EnrichValue>>;
    const replay = (withoutCi: boolean): Alert[] => {
      const text = readFileSync('src/detect/defaults/companion-rules.yaml', 'utf8');
      const rules = loadRulesFile('/d.yaml', { detectors: DETECTOR_MODULES, text: withoutCi ? text.replace(/\n {2}ci:[\s\S]*?\n {2}learning:/, '\n  learning:') : text });
      const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0) });
      return lines.flatMap((l, i) => {
        let a = alertFromJson(parse(l), { kind: 'replay', component: 't' });
        const add = enrichment[String(i + 1)];
        if (add) a = withEnrichment(a, add);
        return [...engine.process(a).detections];
      });
    };
    expect(replay(false)).toEqual([]);
    expect(replay(true).length).toBeGreaterThan(0);
  });
});

describe('DetectionEngine observers', () => {
  it('sees every routed (signal, detector) pair with its outcome and every finding; a throwing observer is counted, never fatal', async () => {
    const text = ['extends: builtin', 'suppress:', '  allow:', '    - {name: x, detectors: [socket_filter], exe: ["/usr/bin/allowed"]}', '  learning: {knock: 1h}'].join('\n');
    const rules = loadRulesFile('/r.yaml', { text, detectors: DETECTOR_SPECS });
    const metrics = new Metrics({ collectDefault: false });
    const signals: string[] = [];
    const findings: { rule: string; emitted: boolean; incident: string }[] = [];
    const engine = new DetectionEngine({
      rules,
      detectors: detectorsFrom(rules),
      logger: silentLogger(),
      metrics,
      clock: new ManualClock(0),
      observers: [
        { signal: (s, d, o) => signals.push(`${s.kind}/${d}/${o}`), finding: (f, a, i) => findings.push({ rule: f.rule, emitted: a !== null, incident: i }) },
        {
          signal: () => {
            throw new Error('observer bug');
          },
        },
      ],
    });
    const out = run(engine, [
      alertAt(0, RAW, { ...door, 'proc.exepath': '/usr/bin/allowed' }),
      alertAt(1, RAW, door),
      alertAt(2, LISTEN, { ...kid(601), 'fd.name': '0.0.0.0:8080->0.0.0.0:8080' }),
      alertAt(3, 'Companion signal: firewall tool run', { 'proc.pid': 9, 'proc.cmdline': 'iptables -I INPUT -s 198.51.100.1 -j ACCEPT' }),
    ]);
    expect(out).toHaveLength(1);
    expect(signals).toEqual(['raw_socket/socket_filter/allowlist', 'raw_socket/socket_filter/consumed', 'listen/socket_filter/consumed', 'firewall_exec/socket_filter/consumed', 'firewall_exec/knock/learning']);
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ rule: 'Traffic signaling: socket filter armed, then new listener', emitted: true });
    expect(findings[0]?.incident).not.toBe('');
    const m = await metrics.text();
    expect(metricValue(m, /^falco_companion_detect_observer_errors_total\{hook="signal"\}/)).toBe(5);
  });
});
