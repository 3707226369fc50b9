/**
 * Detector state stays within what the engine's generic state codec carries (notes/phase-b.md,
 * contract 2): plain objects, arrays, Map, Set, bigint, numbers, strings, booleans, null,
 * BoundedMap and slim Signals. Every shipped detector is run over a mix of recorded scenarios and
 * its whole state is walked.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertFromJson, withEnrichment, type EnrichValue } from '../../../src/alert.js';
import { BoundedMap } from '../../../src/detect/detectors/kit.js';
import { compileMapping } from '../../../src/detect/mapping.js';
import { buildDetectors, DETECTOR_MODULES } from '../../../src/detect/registry.js';
import { loadRulesFile } from '../../../src/detect/rules/load.js';
import { parse } from '../../../src/json/lossless.js';
import { scenarioEnv, scenarioLines } from '../helpers.js';

const DIR = 'test/fixtures/scenarios';
const FOLDERS = ['attack-host-implant-delayed', 'attack-beacon-private-relay', 'attack-escape-failed-attempts', 'attack-token-api-connect', 'socket-filter-bind-shell', 'knock-chain', 'benign-blackbox-probes', 'unexpected-image'];

function offending(v: unknown, path: string, seen: Set<unknown>, out: string[]): void {
  if (v === null || ['string', 'number', 'boolean', 'bigint', 'undefined'].includes(typeof v)) return;
  if (typeof v === 'function' || typeof v === 'symbol') {
    out.push(`${path}: ${typeof v}`);
    return;
  }
  if (seen.has(v)) return;
  seen.add(v);
  const o = v as Record<string, unknown>;
  // A Signal (retained copy): its contents are the codec's business, by contract.
  if ('kind' in o && 'timeNs' in o && 'alert' in o && 'proc' in o) return;
  if (v instanceof BoundedMap) {
    for (const [k, x] of v.entries()) {
      offending(k, `${path}.key`, seen, out);
      offending(x, `${path}[${String(k)}]`, seen, out);
    }
    return;
  }
  if (v instanceof Map) {
    for (const [k, x] of v) {
      offending(k, `${path}.key`, seen, out);
      offending(x, `${path}[${String(k)}]`, seen, out);
    }
    return;
  }
  if (v instanceof Set || Array.isArray(v)) {
    let i = 0;
    for (const x of v) offending(x, `${path}[${i++}]`, seen, out);
    return;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    out.push(`${path}: instance of ${(v as object).constructor.name}`);
    return;
  }
  for (const [k, x] of Object.entries(o)) offending(x, `${path}.${k}`, seen, out);
}

describe('detector state is what the state codec carries', () => {
  it('after a mix of attacks and benign traffic', () => {
    const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
    const mapping = compileMapping(rules.signals);
    const dets = buildDetectors(rules, DETECTOR_MODULES, scenarioEnv(join(DIR, 'attack-beacon-private-relay')));
    const states = dets.map((d) => d.init());
    let now = 0n;
    let offset = 0n;
    for (const name of FOLDERS) {
      const folder = join(DIR, name);
      const enrichPath = join(folder, 'enrichment.json');
      const enr = existsSync(enrichPath) ? (JSON.parse(readFileSync(enrichPath, 'utf8')) as Record<string, Record<string, EnrichValue>>) : {};
      scenarioLines(folder).forEach((l, i) => {
        let a = alertFromJson(parse(l), { kind: 'replay', component: 'test' });
        if (enr[String(i + 1)]) a = withEnrichment(a, enr[String(i + 1)] as Record<string, EnrichValue>);
        for (const sig0 of mapping.mapAlert(a)) {
          const sig = { ...sig0, timeNs: sig0.timeNs + offset };
          if (sig.timeNs > now) now = sig.timeNs;
          dets.forEach((d, j) => {
            if (d.consumes.includes(sig.kind)) states[j] = d.step(states[j], sig, now).state;
          });
        }
      });
      offset = now; // the next recording follows this one
    }
    dets.forEach((d, j) => {
      const out: string[] = [];
      const seen = new Set<unknown>();
      offending(states[j], d.id, seen, out);
      expect(out, d.id).toEqual([]);
      expect(seen.size, `${d.id}: the walk saw its state`).toBeGreaterThan(1);
    });
  });
});
