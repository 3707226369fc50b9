/**
 * Every shipped detection test case (examples/detection-tests/, the format `falco-companion test`
 * runs) and every scenario folder still in the older layout (test/fixtures/scenarios/<name>/ with
 * expected.json, not yet converted) replayed through the real detection engine with every shipped
 * detector and the built-in rules, by the same code as `falco-companion test` (src/cases/run.ts):
 * the detections must match each case's expectations exactly. On top, what every detection must
 * be: emitted while the evidence is processed, Falco-shaped, values under 512 characters.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findCases, LEGACY_EXPECTED } from '../../src/cases/load.js';
import { runCase } from '../../src/cases/run.js';

const EXAMPLES = 'examples/detection-tests';
const LEGACY = 'test/fixtures/scenarios';

const converted = new Set(existsSync(EXAMPLES) ? readdirSync(EXAMPLES) : []);
const legacy = existsSync(LEGACY)
  ? readdirSync(LEGACY, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(LEGACY, d.name, LEGACY_EXPECTED)) && !converted.has(d.name))
      .map((d) => join(LEGACY, d.name))
  : [];
const cases = [...findCases([EXAMPLES]).cases, ...legacy.sort()];

describe('detection test cases replayed through the detection engine', () => {
  it('has the shipped cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(16);
  });

  for (const path of cases) {
    it(path, () => {
      const r = runCase(path);
      expect(r.errors).toEqual([]);
      expect(r.failures, r.detections.map((d) => `${d.priority} ${d.rule} | ${d.output}`).join('\n')).toEqual([]);
      expect(r.status).toBe('pass');
      for (const d of r.detections) {
        // Emitted while processing the evidence (well within two seconds of event time).
        expect(d.lagMs).toBeLessThan(2000);
        const a = d.alert;
        expect(a.source).toBe('falco-companion');
        expect(a.tags).toContain('falco_companion');
        expect(a.origin.kind).toBe('detector');
        for (const v of [...Object.values(a.companion), ...Object.values(a.outputFields ?? {})]) if (typeof v === 'string') expect(v.length).toBeLessThan(512);
      }
    });
  }
});
