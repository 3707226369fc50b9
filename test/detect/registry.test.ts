import { describe, expect, it } from 'vitest';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { KNOWN_DETECTOR_IDS, loadRulesFile } from '../../src/detect/rules-file.js';

describe('detector registry', () => {
  it('registers every known detector once and builds them from the default rules', () => {
    expect(DETECTOR_MODULES.map((m) => m.id).sort()).toEqual([...KNOWN_DETECTOR_IDS].sort());
    const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
    const dets = buildDetectors(rules);
    expect(dets.map((d) => d.id)).toEqual(DETECTOR_MODULES.map((m) => m.id));
    for (const id of KNOWN_DETECTOR_IDS) expect(rules.detectors[id]?.enabled, id).toBe(true);
  });
});
