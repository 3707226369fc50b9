import { describe, expect, it } from 'vitest';
import { createEscapeDetector, ESCAPE_RULE } from '../../../src/detect/detectors/escape.js';
import { createFirstSeenEgressDetector, FIRST_SEEN_EGRESS_RULE } from '../../../src/detect/detectors/first-seen-egress.js';
import { createK8sSpreadDetector, K8S_SPREAD_RULES } from '../../../src/detect/detectors/k8s-spread.js';
import { createUnexpectedImageDetector, UNEXPECTED_IMAGE_RULES } from '../../../src/detect/detectors/unexpected-image.js';
import { formatTimeNs } from '../../../src/alert.js';
import { BASE_NS, runDetector, secNs, sig } from '../../support/signals.js';

const at = (s: number): string => formatTimeNs(BASE_NS + secNs(s));

describe('first-seen egress', () => {
  const c = (t: number, extra: Record<string, string | boolean> = {}, port = 443) =>
    sig({ kind: 'connect', t, dest: '198.51.100.20', port, companion: { 'dest.new_for_image': true, 'dest.learning': false, ...extra } });
  it('flags a new destination once per (image, dest, port) while the key is remembered', () => {
    const { findings } = runDetector(createFirstSeenEgressDetector(), [c(0), c(10), c(20)]);
    expect(findings).toHaveLength(1);
    expect(findings[0]!.rule).toBe(FIRST_SEEN_EGRESS_RULE);
    expect(findings[0]!.priority).toBe('Notice');
  });
  it('escalates non-standard ports and intel-listed destinations', () => {
    const { findings } = runDetector(createFirstSeenEgressDetector(), [c(0, {}, 4444), c(1, { 'dest.intel': 'spamhaus_drop' }, 443)]);
    expect(findings.map((f) => f.priority)).toEqual(['Warning', 'Critical']);
    expect(findings[0]!.fields['egress.nonstandard_port']).toBe(true);
  });
  it('stays silent while learning, for known destinations and without enrichment', () => {
    const sigs = [
      c(0, { 'dest.learning': true }),
      sig({ kind: 'connect', t: 1, dest: '198.51.100.20', port: 443, companion: { 'dest.new_for_image': false } }),
      sig({ kind: 'connect', t: 2, dest: '198.51.100.20', port: 443 }),
      c(3, { 'image.first_seen': at(-60) }), // image first seen a minute ago: inside the 1 h learning period
    ];
    const { findings, state } = runDetector(createFirstSeenEgressDetector(), sigs);
    expect(findings).toHaveLength(0);
    expect(state.learning).toBe(2);
    expect(runDetector(createFirstSeenEgressDetector(), [c(3, { 'image.first_seen': at(-7200) })]).findings).toHaveLength(1);
  });
  it('bounds the reported keys with counted eviction', () => {
    const det = createFirstSeenEgressDetector({ max_keys: 3 });
    const sigs = Array.from({ length: 10 }, (_, i) => sig({ kind: 'connect', t: i, dest: `198.51.100.${i}`, port: 443, companion: { 'dest.new_for_image': true } }));
    const { state } = runDetector(det, sigs);
    expect(state.reported.size).toBe(3);
    expect(det.evictions(state)).toBe(7);
  });
});

describe('escape chain', () => {
  it('needs two distinct indicators in one container within the window', () => {
    const det = createEscapeDetector();
    const one = runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0 }), sig({ kind: 'escape', subtype: 'mount', t: 5 })]);
    expect(one.findings).toHaveLength(0);
    const two = runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0 }), sig({ kind: 'escape', subtype: 'release_agent', t: 3 })]);
    expect(two.findings).toHaveLength(1);
    const f = two.findings[0]!;
    expect(f.rule).toBe(ESCAPE_RULE);
    expect(f.priority).toBe('Error');
    expect(f.mitre).toEqual(expect.arrayContaining(['T1611', 'mitre_privilege_escalation']));
    expect(f.evidence.map((e) => e.subtype)).toEqual(['mount', 'release_agent']);
  });
  it('window edges: 60 s apart counts, 61 s apart does not; other containers never combine', () => {
    const det = createEscapeDetector();
    expect(runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0 }), sig({ kind: 'escape', subtype: 'core_pattern', t: 60 })]).findings).toHaveLength(1);
    expect(runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0 }), sig({ kind: 'escape', subtype: 'core_pattern', t: 61 })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0, container: 'a' }), sig({ kind: 'escape', subtype: 'core_pattern', t: 1, container: 'b' })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'escape', subtype: 'mount', t: 0, container: null }), sig({ kind: 'escape', subtype: 'core_pattern', t: 1, container: null })]).findings).toHaveLength(0);
  });
  it('container_start facts count; priority rises with a third indicator', () => {
    const det = createEscapeDetector();
    const { findings } = runDetector(det, [
      sig({ kind: 'container_start', t: 0, keys: { privileged: true } }),
      sig({ kind: 'escape', subtype: 'mount', t: 10 }),
      sig({ kind: 'escape', subtype: 'release_agent', t: 12 }),
    ]);
    expect(findings.map((f) => f.priority)).toEqual(['Error', 'Critical']);
    expect(findings[1]!.fields['escape.indicators']).toBe('mount,privileged,release_agent');
  });
  it('bounds containers with counted eviction', () => {
    const det = createEscapeDetector({ max_containers: 2 });
    const { state } = runDetector(det, Array.from({ length: 5 }, (_, i) => sig({ kind: 'escape', subtype: 'mount', t: i, container: `c${i}` })));
    expect(state.boxes.size).toBe(2);
    expect(det.evictions(state)).toBe(3);
  });
});

describe('unexpected image', () => {
  const fresh = { 'image.pulled_at': at(-120) };
  it('fresh image: pull minutes ago → start → shell within the window', () => {
    const det = createUnexpectedImageDetector();
    const { findings } = runDetector(det, [sig({ kind: 'container_start', t: 0, companion: fresh }), sig({ kind: 'shell_spawn', t: 300, exe: '/bin/sh', companion: fresh })]);
    expect(findings).toHaveLength(1);
    expect(findings[0]!.rule).toBe(UNEXPECTED_IMAGE_RULES.fresh);
    expect(findings[0]!.priority).toBe('Error');
    expect(findings[0]!.evidence.map((e) => e.kind)).toEqual(['container_start', 'shell_spawn']);
  });
  it('no finding for an old image, activity after the window, or missing provenance', () => {
    const det = createUnexpectedImageDetector();
    const old = { 'image.pulled_at': at(-86400) };
    expect(runDetector(det, [sig({ kind: 'container_start', t: 0, companion: old }), sig({ kind: 'shell_spawn', t: 60, companion: old })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'container_start', t: 0, companion: fresh }), sig({ kind: 'shell_spawn', t: 901, companion: fresh })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'container_start', t: 0 }), sig({ kind: 'shell_spawn', t: 60 })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'container_start', t: 0, companion: fresh }), sig({ kind: 'connect', t: 60, dest: '198.51.100.1', port: 443, companion: fresh })]).findings).toHaveLength(0);
  });
  it('new egress counts as activity', () => {
    const det = createUnexpectedImageDetector();
    const { findings } = runDetector(det, [sig({ kind: 'container_start', t: 0, companion: fresh }), sig({ kind: 'connect', t: 60, dest: '198.51.100.1', port: 443, companion: { ...fresh, 'dest.new_for_image': true } })]);
    expect(findings).toHaveLength(1);
  });
  it('while the image is learning (a repository never seen before), only public or intel-listed new egress counts', () => {
    const learning = { ...fresh, 'dest.new_for_image': true, 'dest.learning': true };
    const run = (extra: Record<string, string>, dest: string): number =>
      runDetector(createUnexpectedImageDetector(), [sig({ kind: 'container_start', t: 0, companion: fresh }), sig({ kind: 'connect', t: 60, dest, port: 5432, companion: { ...learning, ...extra } })]).findings.length;
    expect(run({ 'dest.class': 'cluster_service' }, '10.96.12.7')).toBe(0); // a new app's first connect to its database
    expect(run({ 'dest.class': 'private' }, '10.0.4.2')).toBe(0);
    expect(run({ 'dest.class': 'public' }, '198.51.100.1')).toBe(1);
    expect(run({ 'dest.class': 'private', 'dest.intel': 'c2-list' }, '10.0.4.2')).toBe(1);
  });
  it('registry allowlist (empty = off) and mutated tags', () => {
    expect(runDetector(createUnexpectedImageDetector(), [sig({ kind: 'container_start', t: 0, image: 'evil.example.net/x' })]).findings).toHaveLength(0);
    const det = createUnexpectedImageDetector({ allowed_registries: ['registry.example.com'] });
    const r = runDetector(det, [sig({ kind: 'container_start', t: 0, image: 'evil.example.net/x' }), sig({ kind: 'shell_spawn', t: 1, image: 'evil.example.net/x' }), sig({ kind: 'container_start', t: 2, container: 'c2' })]);
    expect(r.findings.map((f) => f.rule)).toEqual([UNEXPECTED_IMAGE_RULES.registry]);
    const t = runDetector(createUnexpectedImageDetector(), [sig({ kind: 'container_start', t: 0, companion: { 'image.tag_mutated': true, 'image.digest': 'sha256:bb', 'image.previous_digest': 'sha256:aa' } })]);
    expect(t.findings.map((f) => f.rule)).toEqual([UNEXPECTED_IMAGE_RULES.tag]);
    expect(t.findings[0]!.message).toContain('was sha256:aa');
  });
});

describe('kubernetes spread', () => {
  it('token read then API contact in the same container within the window', () => {
    const det = createK8sSpreadDetector();
    const { findings } = runDetector(det, [sig({ kind: 'sa_token_read', t: 0, name: 'cat', exe: '/bin/cat' }), sig({ kind: 'k8s_api_contact', t: 30, dest: '10.96.0.1', port: 443, exe: '/usr/bin/curl' })]);
    expect(findings).toHaveLength(1);
    expect(findings[0]!.rule).toBe(K8S_SPREAD_RULES.token);
    expect(findings[0]!.priority).toBe('Error'); // read by cat: raised one step
    expect(findings[0]!.evidence.map((e) => e.kind)).toEqual(['sa_token_read', 'k8s_api_contact']);
  });
  it('no finding without a token read, after the window, or across containers', () => {
    const det = createK8sSpreadDetector();
    expect(runDetector(det, [sig({ kind: 'k8s_api_contact', t: 0, dest: '10.96.0.1', port: 443 })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'sa_token_read', t: 0 }), sig({ kind: 'k8s_api_contact', t: 601, dest: '10.96.0.1', port: 443 })]).findings).toHaveLength(0);
    expect(runDetector(det, [sig({ kind: 'sa_token_read', t: 0, container: 'a' }), sig({ kind: 'k8s_api_contact', t: 1, container: 'b' })]).findings).toHaveLength(0);
  });
  it('kubelet contact from a pod, by signal or by port 10250: Error from a tool, Notice from the image\'s own program (scrapers)', () => {
    const det = createK8sSpreadDetector();
    const { findings } = runDetector(det, [
      sig({ kind: 'connect', t: 0, dest: '10.0.0.10', port: 10250, exe: '/usr/bin/curl' }),
      sig({ kind: 'kubelet_contact', t: 1, container: 'c2', dest: '10.0.0.11', port: 10250, exe: '/tmp/kubeletctl' }),
      sig({ kind: 'connect', t: 2, container: 'c3', dest: '10.0.0.12', port: 10250, exe: '/bin/metrics-server' }),
      sig({ kind: 'sa_token_read', t: 3, container: 'c4', exe: '/bin/cat' }),
      sig({ kind: 'connect', t: 4, container: 'c4', dest: '10.0.0.12', port: 10250, exe: '/usr/bin/python3' }),
    ]);
    expect(findings.map((f) => [f.rule, f.priority])).toEqual([
      [K8S_SPREAD_RULES.kubelet, 'Error'],
      [K8S_SPREAD_RULES.kubelet, 'Error'],
      [K8S_SPREAD_RULES.kubelet, 'Notice'],
      [K8S_SPREAD_RULES.kubelet, 'Error'], // after `cat` read the token
    ]);
    expect(runDetector(det, [sig({ kind: 'connect', t: 0, dest: '10.0.0.10', port: 10250, container: null })]).findings).toHaveLength(0);
  });
});
