/**
 * Checks the scenario fixtures this work ships (test/fixtures/scenarios/) against these detectors
 * alone, with a minimal alert → signal mapping (the engine's scenario test replays them through the
 * real mapping and pipeline). Keeps the fixtures honest: expected detections really come out.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertFromJson, atLeast, fieldNumber, fieldString, parsePriority, withEnrichment, type Alert, type EnrichValue } from '../../../src/alert.js';
import { parse } from '../../../src/json/lossless.js';
import { SocketView } from '../../../src/net/socket.js';
import { createBeaconDetector } from '../../../src/detect/detectors/beacon.js';
import { createEscapeDetector } from '../../../src/detect/detectors/escape.js';
import { createFirstSeenEgressDetector } from '../../../src/detect/detectors/first-seen-egress.js';
import { createK8sSpreadDetector } from '../../../src/detect/detectors/k8s-spread.js';
import { createUnexpectedImageDetector } from '../../../src/detect/detectors/unexpected-image.js';
import { COMPANION_RULES, type Detector, type Finding, type Signal, type SignalKind } from '../../../src/detect/types.js';

const DIR = 'test/fixtures/scenarios';
const MINE = ['c2-beacon', 'escape-chain', 'unexpected-image', 'k8s-spread', 'benign-apt-update', 'benign-mesh-health-checks'];

const OFFICIAL: Record<string, { kind: SignalKind; subtype?: string }> = {
  'Detect release_agent File Container Escapes': { kind: 'escape', subtype: 'release_agent' },
  'Mount Launched in Privileged Container': { kind: 'escape', subtype: 'mount' },
  'Contact K8S API Server From Container': { kind: 'k8s_api_contact' },
  'Terminal shell in container': { kind: 'shell_spawn' },
  'Launch Suspicious Network Tool in Container': { kind: 'network_tool' },
};

function toSignal(a: Alert): Signal | null {
  const m = COMPANION_RULES[a.rule] ?? OFFICIAL[a.rule];
  if (!m) return null;
  const server = new SocketView(a.outputFields ?? {}).end('server');
  const sip = server?.text ?? null;
  const sport = server?.port ?? null;
  const cid = fieldString(a, 'container.id');
  return {
    kind: m.kind,
    subtype: m.subtype ?? null,
    timeNs: a.timeNs,
    rule: a.rule,
    containerId: cid && cid !== 'host' ? cid : null,
    imageRepository: fieldString(a, 'container.image.repository'),
    imageTag: fieldString(a, 'container.image.tag'),
    imageDigest: null,
    namespace: fieldString(a, 'k8s.ns.name'),
    pod: fieldString(a, 'k8s.pod.name'),
    podLabels: {},
    proc: { pid: fieldNumber(a, 'proc.pid'), ppid: fieldNumber(a, 'proc.ppid'), sid: null, apids: [], name: fieldString(a, 'proc.name'), exepath: fieldString(a, 'proc.exepath'), cmdline: fieldString(a, 'proc.cmdline'), ancestors: [] },
    net: { l4proto: fieldString(a, 'fd.l4proto'), clientIp: fieldString(a, 'fd.cip'), clientPort: fieldNumber(a, 'fd.cport'), serverIp: sip, serverPort: sport, remoteIp: sip, remotePort: sport, remoteDomain: null },
    keys: {},
    alert: a,
  };
}

describe.each(MINE)('scenario %s', (name) => {
  const dir = join(DIR, name);
  it('produces exactly its expected detections through these detectors', () => {
    expect(existsSync(join(dir, 'alerts.jsonl'))).toBe(true);
    const enrichment = JSON.parse(readFileSync(join(dir, 'enrichment.json'), 'utf8')) as Record<string, Record<string, EnrichValue>>;
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { detections: { rule: string; min_priority: string; count: number }[]; tolerate_below?: string };
    const floor = expected.tolerate_below === undefined ? null : parsePriority(expected.tolerate_below);
    const lines = readFileSync(join(dir, 'alerts.jsonl'), 'utf8').split('\n').filter((l) => l.trim() !== '');
    const dets: Detector<unknown>[] = [createBeaconDetector(), createFirstSeenEgressDetector(), createEscapeDetector(), createUnexpectedImageDetector(), createK8sSpreadDetector()] as Detector<unknown>[];
    const states = dets.map((d) => d.init());
    const findings: Finding[] = [];
    let now = 0n;
    lines.forEach((line, i) => {
      let a = alertFromJson(parse(line), { kind: 'replay', component: 'test' });
      const add = enrichment[String(i + 1)];
      if (add) a = withEnrichment(a, add);
      const s = toSignal(a);
      if (!s) return;
      if (s.timeNs > now) now = s.timeNs;
      dets.forEach((d, j) => {
        if (!d.consumes.includes(s.kind)) return;
        const r = d.step(states[j], s, now);
        states[j] = r.state;
        findings.push(...r.findings);
      });
    });
    const byRule = new Map<string, Finding[]>();
    for (const f of findings) if (!(floor && !atLeast(f.priority, floor))) byRule.set(f.rule, [...(byRule.get(f.rule) ?? []), f]);
    expect([...byRule.keys()].sort()).toEqual(expected.detections.map((d) => d.rule).sort());
    for (const d of expected.detections) {
      const got = byRule.get(d.rule) ?? [];
      expect(got.length, d.rule).toBe(d.count);
      for (const f of got) expect(atLeast(f.priority, parsePriority(d.min_priority)!), `${d.rule}: ${f.priority}`).toBe(true);
    }
  });
});

it('every scenario folder has the three files', () => {
  for (const n of readdirSync(DIR)) {
    if (!MINE.includes(n)) continue;
    for (const f of ['alerts.jsonl', 'expected.json', 'enrichment.json']) expect(existsSync(join(DIR, n, f)), `${n}/${f}`).toBe(true);
  }
});
