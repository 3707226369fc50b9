/**
 * `explain`'s reasoning: which signal entries map an alert (file:line), which allow entries, CI
 * windows and workloads apply and which of their conditions held (the real matcher, one condition
 * at a time), what a detector's state holds for the workload and what it would do now.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointStates, explainAlert, freshStates, genericInspector, rulesPositions } from '../../src/detect/explain.js';
import { buildDetectors } from '../../src/detect/registry.js';
import { defaultRulesPath, loadRulesFile } from '../../src/detect/rules/load.js';
import type { Detector } from '../../src/detect/types.js';
import { alertAt } from './helpers.js';
import { sig } from '../support/signals.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-explain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const RAW = 'Companion signal: packet or raw socket created';
const LISTEN = 'Companion signal: listening socket in container';
const CONNECT = 'Companion signal: outbound connection from container';

/** 1-based line of the first line of `text` that contains `needle`. */
function lineOf(file: string, needle: string, from = 0): number {
  return readFileSync(file, 'utf8').split('\n').findIndex((l, i) => i >= from && l.includes(needle)) + 1;
}

describe('rulesPositions', () => {
  it('gives file:line of signal entries, allow entries and CI workloads, built-in ones first with extends: builtin', () => {
    const def = defaultRulesPath();
    const p = rulesPositions(loadRulesFile(null));
    expect(p.signals[0]).toBe(`${def}:${lineOf(def, `- rule: "${RAW}"`)}`);
    expect(p.allow[0]).toBe(`${def}:${lineOf(def, '- name: dhcp-clients')}`);
    const file = join(dir, 'mine.yaml');
    writeFileSync(file, 'version: 1\nextends: builtin\nsignals:\n  - rule: "My rule"\n    emit: {kind: connect}\nsuppress:\n  allow:\n    - name: mine\n      exe: ["/opt/x"]\n  ci:\n    windows:\n      - {days: mon-fri, from: "02:00", to: "03:00"}\n');
    const rules = loadRulesFile(file);
    const q = rulesPositions(rules);
    expect(q.signals).toHaveLength(rules.signals.length);
    expect(q.signals[q.signals.length - 1]).toBe(`${file}:4`);
    expect(q.allow[q.allow.length - 1]).toBe(`${file}:8`);
    expect(q.allow[0]).toBe(p.allow[0]);
    expect(q.ciWindows).toEqual([`${file}:12`]);
  });
});

describe('explainAlert', () => {
  it('an allowlisted DHCP client: the signal entry, the allow entry that matched and the condition that held', () => {
    const rules = loadRulesFile(null);
    const e = explainAlert(alertAt(0, RAW, { 'container.id': 'host', 'container.image.repository': null, 'k8s.ns.name': null, 'proc.exepath': '/sbin/dhclient', 'proc.name': 'dhclient', 'evt.arg.domain': 'AF_PACKET' }), { rules, states: freshStates('fresh') });
    expect(e.signals.map((s) => [s.kind, s.subtype, s.entries.map((x) => x.index)])).toEqual([['raw_socket', 'af_packet', [0]]]);
    const sf = e.signals[0]?.detectors.find((d) => d.detector === 'socket_filter');
    expect(sf?.suppressed).toBe('allowlist');
    const dhcp = sf?.checks[0];
    expect(dhcp).toMatchObject({ kind: 'allow', name: 'dhcp-clients', matched: true, where: `${defaultRulesPath()}:${lineOf(defaultRulesPath(), '- name: dhcp-clients')}` });
    expect(dhcp?.conditions).toEqual([{ field: 'exe', want: '*/dhclient, */dhclient6, */dhcpcd, */udhcpc, */udhcpc6, */NetworkManager, */systemd-networkd, */dhcpd, */wickedd-dhcp4, */wickedd-dhcp6, */odhcp6c, */dhcp6c', have: '/sbin/dhclient / dhclient', held: true }]);
    // an entry scoped to packet capture in debug namespaces: exe held, namespace did not
    const capture = explainAlert(alertAt(0, RAW, { 'proc.exepath': '/usr/bin/tcpdump', 'proc.name': 'tcpdump', 'k8s.ns.name': 'web' }), { rules, states: freshStates('fresh') });
    const cap = capture.signals[0]?.detectors.find((d) => d.detector === 'socket_filter')?.checks.find((c) => c.name === 'packet-capture-in-debug-pods');
    expect(cap?.matched).toBe(false);
    expect(cap?.conditions.map((c) => [c.field, c.held])).toEqual([
      ['namespace', false],
      ['exe', true],
    ]);
  });

  it('CI windows and workloads: which applied, for the detectors CI silences only', () => {
    const file = join(dir, 'ci.yaml');
    writeFileSync(file, 'version: 1\nextends: builtin\nsuppress:\n  ci:\n    windows:\n      - {days: sun-sat, from: "00:00", to: "01:00"}\n    workloads:\n      - namespace: ["ci-*"]\n');
    const rules = loadRulesFile(file);
    const a = alertAt(60, CONNECT, { 'k8s.ns.name': 'ci-build', 'fd.sip': '203.0.113.5', 'fd.sport': 443, 'fd.cip': '10.0.0.2', 'fd.cport': 40000, 'fd.l4proto': 'tcp' });
    const e = explainAlert(a, { rules, states: freshStates('fresh') });
    const connect = e.signals.find((s) => s.kind === 'connect');
    const beacon = connect?.detectors.find((d) => d.detector === 'beacon');
    expect(beacon?.suppressed).toBe('ci_window');
    expect(beacon?.checks.filter((c) => c.matched).map((c) => [c.kind, c.where])).toEqual([
      ['ci_window', `${file}:6`],
      ['ci_workload', `${file}:8`],
    ]);
    expect(beacon?.checks.find((c) => c.kind === 'ci_workload' && c.matched)?.conditions).toEqual([{ field: 'namespace', want: 'ci-*', have: 'ci-build', held: true }]);
    // socket_filter is not silenced by CI: no CI checks, and it gets the signal
    const sf = connect?.detectors.find((d) => d.detector === 'socket_filter');
    expect(sf?.suppressed).toBeNull();
    expect(sf?.checks.some((c) => c.kind !== 'allow')).toBe(false);
  });

  it('names entries that name the rule but did not map it, with what they require', () => {
    const e = explainAlert(alertAt(0, CONNECT, { 'fd.sip': '203.0.113.5', 'fd.sport': 443, 'fd.cip': '10.0.0.2', 'fd.cport': 40000 }), { rules: loadRulesFile(null), states: freshStates('fresh') });
    expect(e.nearMisses.map((n) => n.why)).toEqual(['names this rule, but fd.sport equals 10250 does not hold']);
    const disabled = loadRulesFile(join(dir, 'off.yaml'), { text: 'version: 1\nextends: builtin\ndetectors:\n  beacon: {enabled: false}\n' });
    const d = explainAlert(alertAt(0, CONNECT, { 'fd.sip': '203.0.113.5', 'fd.sport': 443 }), { rules: disabled, states: freshStates('fresh') });
    expect(d.signals[0]?.detectors.find((x) => x.detector === 'beacon')).toMatchObject({ enabled: false, findings: [] });
  });

  it('detector state from a checkpoint: the entries of the workload, and what the alert would complete now', () => {
    const rules = loadRulesFile(null);
    const dets = buildDetectors(rules);
    const sf = dets.find((d) => d.id === 'socket_filter') as Detector<unknown>;
    // The daemon's state after a packet socket was armed in container abc123def456 (stepped for real).
    const state = sf.init();
    sf.step(state, sig({ kind: 'raw_socket', subtype: 'af_packet', t: 0, container: 'abc123def456', pid: 500, exe: '/usr/bin/x' }), 0n);
    expect(genericInspector(state, sig({ kind: 'listen', container: 'abc123def456' })).join('\n')).toMatch(/arms\["abc123def456[^"]*"\] = .*raw_socket\/af_packet/);
    expect(genericInspector(state, sig({ kind: 'listen', container: 'other' }))).toEqual([]);
    // The state codec is p1-engine's (not in this branch): the checkpoint parts here carry the live
    // state object and `decode` hands it back, which is what decode-and-restore produces.
    const states = checkpointStates([{ id: 'socket_filter', savedAtMs: Date.UTC(2024, 0, 1), state: Buffer.alloc(0) }], (id) => (id === 'socket_filter' ? state : undefined), 'test.db');
    expect(states.description).toBe('checkpoint in test.db saved 2024-01-01T00:00:00.000Z');
    const listen = alertAt(30, LISTEN, { 'proc.pid': 501, 'proc.ppid': 500, 'proc.sid': 500, 'proc.name': 'x', 'proc.exepath': '/usr/bin/x', 'fd.name': '0.0.0.0:4444->0.0.0.0:4444' });
    const e = explainAlert(listen, { rules, states, detectors: dets });
    const x = e.signals[0]?.detectors.find((d) => d.detector === 'socket_filter');
    expect(e.fromCheckpoint).toBe(true);
    expect(x?.state.length).toBeGreaterThan(0);
    expect(x?.findings.map((f) => f.rule)).toEqual(['Traffic signaling: socket filter armed, then new listener']);
    // the same alert with fresh states finds nothing
    const alone = explainAlert(listen, { rules, states: freshStates('fresh') });
    expect(alone.signals[0]?.detectors.find((d) => d.detector === 'socket_filter')?.findings).toEqual([]);
    // a part that does not decode: fresh for that detector, said so
    const broken = checkpointStates([{ id: 'beacon', savedAtMs: 1, state: Buffer.from('x') }], () => {
      throw new Error('bad bytes');
    }, 'test.db');
    expect(broken.description).toMatch(/fresh for beacon \(bad bytes\)/);
    expect(broken.fromCheckpoint).toBe(false);
  });
});
