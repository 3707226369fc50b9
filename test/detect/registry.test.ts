import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildDetectors, CI_QUIET_DETECTOR_IDS, DETECTOR_IDS, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';

describe('detector registry', () => {
  it('registers every detector once and builds them from the default rules', () => {
    expect(new Set(DETECTOR_IDS).size).toBe(DETECTOR_MODULES.length);
    const rules = loadRulesFile(null);
    const dets = buildDetectors(rules);
    expect(dets.map((d) => d.id)).toEqual(DETECTOR_IDS);
    for (const id of DETECTOR_IDS) expect(rules.detectors[id]?.enabled, id).toBe(true);
  });

  it('is where the rules file learns the detector ids and the CI default', () => {
    // A file without `suppress.ci.detectors` gets the detectors that declare themselves quiet in CI.
    expect([...CI_QUIET_DETECTOR_IDS].sort()).toEqual(['beacon', 'first_seen_egress', 'resource_deviation', 'unexpected_image']);
    expect(loadRulesFile('/x.yaml', { text: 'signals: []\n' }).suppress.ci.detectors).toEqual(CI_QUIET_DETECTOR_IDS);
    // Every registered id is accepted in the rules file; others are not.
    const text = `detectors:\n${DETECTOR_IDS.map((id) => `  ${id}: {enabled: false}`).join('\n')}\n`;
    expect(Object.values(loadRulesFile('/x.yaml', { text }).detectors).every((d) => !d.enabled)).toBe(true);
    expect(() => loadRulesFile('/x.yaml', { text: 'detectors:\n  telepathy: {}\n' })).toThrow(/x\.yaml:2:3: detectors\.telepathy: unknown detector; known detectors: socket_filter, knock/);
  });

  it('docs/rules-file.md lists exactly the registered ids', () => {
    const md = readFileSync('docs/rules-file.md', 'utf8');
    const row = /\| `detectors` \| map id → settings \| per-detector settings; ids: (.*) \|/.exec(md);
    expect(row).not.toBeNull();
    expect([...(row?.[1] ?? '').matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1])).toEqual(DETECTOR_IDS);
  });
});
