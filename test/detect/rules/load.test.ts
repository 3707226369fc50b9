import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DETECTOR_MODULES } from '../../../src/detect/registry.js';
import { loadRulesFile } from '../../../src/detect/rules/load.js';
import { inCiWindow } from '../../../src/detect/suppress.js';
import { configProblems } from '../../support/config-problems.js';
import { DETECTOR_SPECS, T0 } from '../helpers.js';

const problems = (text: string): string[] => configProblems(() => loadRulesFile('/x/rules.yaml', { text, detectors: DETECTOR_SPECS }));

describe('rules file', () => {
  it('loads the built-in defaults with every detector setting filled in', () => {
    const r = loadRulesFile(null, { detectors: DETECTOR_SPECS });
    expect(r.signals.length).toBeGreaterThan(30);
    expect(r.detectors['socket_filter']?.enabled).toBe(true);
    expect(r.detectors['socket_filter']?.['window']).toBe(7 * 86_400_000);
    expect(r.detectors['socket_filter']?.['include_host']).toBe(true);
    expect(r.warnings).toEqual([]);
    expect(r.detectors['knock']?.['delete_window']).toBe(900_000);
    expect(r.output).toMatchObject({ renotifyMs: 86_400_000, incidentIdleMs: 86_400_000, maxIncidents: 10_000 });
    expect(r.warnings).toEqual([]);
    expect(r.suppress.allow.some((a) => a.name === 'dhcp-clients')).toBe(true);
    expect(Object.isFrozen(r.signals)).toBe(true);
  });

  it('reports every problem at once with file:line:col', () => {
    const text = [
      'signals:', // 1
      '  - rule: "X"', // 2
      '    emit: {kind: nonsense}', // 3
      '  - rule_prefix: "Y"', // 4
      '    where:', // 5
      '      - field: fd.sip', // 6
      '        cidr: [10.0.0.0/33]', // 7
      '    emit: {kind: escape, subtype: teleport}', // 8
      'detectors:', // 9
      '  knock:', // 10
      '    window: soon', // 11
      '  socket-filtr: {}', // 12
      'suppress:', // 13
      '  ci:', // 14
      '    windows:', // 15
      '      - {days: mon-fri, from: "25:00", to: "03:30"}', // 16
      'output:', // 17
      '  forward_signal_alerts: maybe', // 18
    ].join('\n');
    const p = problems(text);
    const has = (re: RegExp): void => {
      expect(p.some((x) => re.test(x)), `${re} in\n${p.join('\n')}`).toBe(true);
    };
    has(/^\/x\/rules\.yaml:3:\d+: signals\[0\]\.emit\.kind: must be one of raw_socket/);
    has(/^\/x\/rules\.yaml:7:\d+: .*"10\.0\.0\.0\/33" is not an IPv4\/IPv6 address or CIDR/);
    has(/^\/x\/rules\.yaml:8:\d+: .*escape subtype must be one of/);
    has(/^\/x\/rules\.yaml:11:\d+: detectors\.knock\.window: must be a duration/);
    has(/^\/x\/rules\.yaml:12:3: detectors\.socket-filtr: unknown detector/);
    has(/^\/x\/rules\.yaml:16:\d+: .*must be a UTC time "HH:MM"/);
    has(/^\/x\/rules\.yaml:18:\d+: output\.forward_signal_alerts: must be true or false/);
    expect(p.length).toBeGreaterThanOrEqual(7);
  });

  it('rejects entries that match everything or allow everything', () => {
    const p = problems('signals:\n  - emit: {kind: listen}\nsuppress:\n  allow:\n    - name: all\n');
    expect(p.some((x) => /rules\.yaml:2:5: .*matches every alert/.test(x))).toBe(true);
    expect(p.some((x) => /rules\.yaml:5:7: .*allows everything/.test(x))).toBe(true);
  });

  it('`extends: builtin` keeps the built-in signals and allowlists before the file\'s own', () => {
    const builtin = loadRulesFile(null, { detectors: DETECTOR_SPECS });
    const r = loadRulesFile('/x/r.yaml', { detectors: DETECTOR_SPECS, text: 'extends: builtin\nsignals:\n  - rule: Mine\n    emit: {kind: listen}\nsuppress:\n  allow: [{exe: /x}]\n' });
    expect(r.signals.length).toBe(builtin.signals.length + 1);
    expect(r.signals[r.signals.length - 1]?.rules).toEqual(['Mine']);
    expect(r.suppress.allow.length).toBe(builtin.suppress.allow.length + 1);
    expect(problems('extends: other\n')[0]).toMatch(/rules\.yaml:1:10: extends: only `extends: builtin`/);
  });

  it('reports YAML syntax errors with positions', () => {
    const p = problems('signals:\n  - rule: "a\n    emit: [\n');
    expect(p[0]).toMatch(/^\/x\/rules\.yaml:\d+:\d+: /);
  });

  it('parses predicates, subtype maps, extract and CI windows', () => {
    const r = loadRulesFile('/x/r.yaml', {
      detectors: DETECTOR_SPECS,
      text: [
        'signals:',
        '  - rule: [A, B]',
        '    where: [{field: fd.sport, gte: 1024}, {field: fd.sip, cidr: "fd00::/8"}]',
        '    emit: {kind: escape, subtype_from: {field: evt.arg.x, map: {"1": mount}, default: sysrq}}',
        '    extract: {dev: evt.arg.dev}',
        'suppress:',
        '  ci:',
        '    windows: [{days: mon-fri, from: "22:00", to: "02:00"}]',
        '  learning: {knock: 1h}',
      ].join('\n'),
    });
    const s = r.signals[0];
    expect(s?.rules).toEqual(['A', 'B']);
    expect(s?.where.map((w) => w.op)).toEqual(['gte', 'cidr']);
    expect(s?.subtypeFrom?.map).toEqual({ '1': 'mount' });
    expect(r.suppress.learning['knock']).toBe(3_600_000);
    const w = r.suppress.ci.windows[0];
    if (!w) throw new Error('no window');
    // 2024-01-01 is a Monday. 23:00 Monday: in. 01:00 Tuesday (Monday's window): in. 01:00 Monday (Sunday's window): out.
    expect(inCiWindow(w, T0 + 23n * 3600n * 1_000_000_000n)).toBe(true);
    expect(inCiWindow(w, T0 + 25n * 3600n * 1_000_000_000n)).toBe(true);
    expect(inCiWindow(w, T0 + 1n * 3600n * 1_000_000_000n)).toBe(false);
    expect(inCiWindow(w, T0 + 12n * 3600n * 1_000_000_000n)).toBe(false);
  });
});

describe('output: notify policy keys', () => {
  const load = (output: string) => loadRulesFile('/x/rules.yaml', { text: `extends: builtin\noutput: ${output}`, detectors: DETECTOR_SPECS });

  it('reads renotify, incident_idle and max_incidents', () => {
    const r = load('{renotify: 6h, incident_idle: 2h, max_incidents: 500}');
    expect(r.output).toMatchObject({ renotifyMs: 21_600_000, incidentIdleMs: 7_200_000, maxIncidents: 500 });
    expect(r.warnings).toEqual([]);
  });

  it('still accepts the deprecated dedup keys, taking them as their successors, with a warning naming what to use', () => {
    const r = load('{dedup_window: 15m, max_dedup_keys: 300}');
    expect(r.output).toMatchObject({ renotifyMs: 900_000, maxIncidents: 300 });
    expect(r.warnings).toHaveLength(2);
    expect(r.warnings[0]).toMatch(/output\.dedup_window is deprecated.*use output\.renotify/);
    expect(r.warnings[1]).toMatch(/output\.max_dedup_keys is deprecated: use output\.max_incidents/);
    // With the successor set too, the successor wins (and the warning says the old key is ignored).
    const both = load('{dedup_window: 15m, renotify: 12h}');
    expect(both.output.renotifyMs).toBe(43_200_000);
    expect(both.warnings[0]).toMatch(/dedup_window ignored/);
  });

  it('rejects a renotify under a minute', () => {
    expect(problems('output: {renotify: 10s}').join('\n')).toMatch(/output\.renotify/);
  });
});

describe('docs/rules-file.md', () => {
  it('its full example is a valid rules file', () => {
    const md = readFileSync('docs/rules-file.md', 'utf8');
    const m = /## A full example\n\n```yaml\n([\s\S]*?)```/.exec(md);
    expect(m).not.toBeNull();
    const r = loadRulesFile('docs/rules-file.md', { text: m?.[1] ?? '', detectors: DETECTOR_MODULES });
    expect(r.output.forwardSignalAlerts).toBe(false);
    expect(r.suppress.ci.windows).toHaveLength(2);
    expect(r.detectors['beacon']?.['threshold']).toBe(0.92);
  });
});


describe('deprecated detector settings', () => {
  it('keep old rules files loading: `renotify` under a detector is checked, ignored and reported as a file:line:col warning', () => {
    const text = ['detectors:', '  beacon:', '    renotify: 1h', '    threshold: 0.9', '  escape_chain:', '    renotify: 10m', '  k8s_spread: {renotify: 1h}', '  first_seen_egress: {renotify: 24h}', '  unexpected_image: {renotify: 24h}'].join('\n');
    const r = loadRulesFile('/x/old.yaml', { text, detectors: DETECTOR_MODULES });
    expect(r.detectors['beacon']?.['threshold']).toBe(0.9);
    for (const id of ['beacon', 'escape_chain', 'k8s_spread', 'first_seen_egress', 'unexpected_image']) expect(r.detectors[id], id).not.toHaveProperty('renotify');
    expect(r.warnings).toHaveLength(5);
    expect(r.warnings[0]).toBe("/x/old.yaml:3:5: detectors.beacon.renotify: deprecated: ignored: repeats of a detection follow the engine's one notify policy (the rules file's `output:` section); remove this key");
    expect(r.warnings).toContainEqual(expect.stringMatching(/^\/x\/old\.yaml:6:5: detectors\.escape_chain\.renotify: deprecated: /));
    // still checked: a value that never was valid is a problem, not a warning
    expect(() => loadRulesFile('/x/bad.yaml', { text: 'detectors:\n  beacon:\n    renotify: soon\n', detectors: DETECTOR_MODULES })).toThrow(/bad\.yaml:3:15: detectors\.beacon\.renotify: must be a duration/);
  });
});
