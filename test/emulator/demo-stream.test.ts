import { describe, expect, it } from 'vitest';
import { alertFromJson, serializeAlert } from '../../src/alert.js';
import { demoStreamPath, loadDemoStream } from '../../src/emulator/demo-stream.js';
import { LosslessNumber, isJsonObject, parse } from '../../src/json/lossless.js';

const origin = { kind: 'test', component: 'test' } as const;

describe('bundled demo stream', () => {
  const lines = loadDemoStream();

  it('resolves next to the module', () => {
    expect(demoStreamPath()).toMatch(/emulator[\\/]data[\\/]demo-stream\.jsonl$/);
  });

  it('holds 30-60 valid alerts in time order within two minutes', () => {
    expect(lines.length).toBeGreaterThanOrEqual(30);
    expect(lines.length).toBeLessThanOrEqual(60);
    const alerts = lines.map((l) => alertFromJson(parse(l), origin));
    for (let i = 1; i < alerts.length; i++) expect(alerts[i]!.timeNs).toBeGreaterThanOrEqual(alerts[i - 1]!.timeNs);
    expect(alerts.at(-1)!.timeNs - alerts[0]!.timeNs).toBeLessThanOrEqual(120_000_000_000n);
    for (const [i, a] of alerts.entries()) {
      expect(a.time).toMatch(/\.\d{9}Z$/);
      expect(serializeAlert(a), `line ${i + 1} is in current Falco key order`).toBe(lines[i]);
      const t = a.outputFields?.['evt.time'];
      if (a.source === 'syscall') {
        // An integer in ns (LosslessNumber unless the value happens to be exact as a double).
        expect(t instanceof LosslessNumber || typeof t === 'number').toBe(true);
        expect(BigInt(String(t))).toBe(a.timeNs);
      }
    }
  });

  it('mixes the official rules, internal messages and host events', () => {
    const alerts = lines.map((l) => alertFromJson(parse(l), origin));
    const rules = new Set(alerts.map((a) => a.rule));
    for (const r of [
      'Terminal shell in container',
      'Packet socket created in container',
      'Redirect STDOUT/STDIN to Network Connection in Container',
      'Contact K8S API Server From Container',
      'Execution from /dev/shm',
      'Detect release_agent File Container Escapes',
    ]) {
      expect(rules.has(r), r).toBe(true);
    }
    expect(alerts.some((a) => a.source === 'internal' && a.tags === null)).toBe(true);
    expect(alerts.some((a) => a.outputFields?.['container.id'] === 'host' && a.outputFields['k8s.pod.name'] === null)).toBe(true);
    for (const a of alerts.filter((x) => x.source === 'syscall')) {
      for (const k of ['container.id', 'container.name', 'container.image.repository', 'container.image.tag', 'k8s.pod.name', 'k8s.ns.name']) {
        expect(a.outputFields && k in a.outputFields, `${a.rule} carries ${k}`).toBe(true);
      }
    }
    expect(isJsonObject(parse(lines[0]!))).toBe(true);
  });
});
