/**
 * Replays every recorded scenario (test/fixtures/scenarios/<name>/) through the real detection
 * engine with every shipped detector and the built-in default rules, and holds the detections to
 * expected.json: rule name exact, priority at least min_priority, exact count after dedup, and
 * nothing else (benign scenarios stay silent).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertFromJson, atLeast, parsePriority, withEnrichment, type Alert, type EnrichValue } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { scenarioEnv, scenarioLines } from './helpers.js';

const DIR = 'test/fixtures/scenarios';

interface Expected {
  readonly description: string;
  readonly detections: readonly { rule: string; min_priority: string; count: number }[];
  /** Benign recordings: detections below this priority (e.g. a Notice for a known poller) are tolerated. */
  readonly tolerate_below?: string;
}

function replay(folder: string): { detections: Alert[]; lagsNs: bigint[]; metrics: Metrics } {
  const lines = scenarioLines(folder);
  const enrichPath = join(folder, 'enrichment.json');
  const enrichment = existsSync(enrichPath) ? (JSON.parse(readFileSync(enrichPath, 'utf8')) as Record<string, Record<string, EnrichValue>>) : {};
  const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
  const metrics = new Metrics({ collectDefault: false });
  const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules, DETECTOR_MODULES, scenarioEnv(folder)), logger: silentLogger(), metrics, clock: new ManualClock(0) });
  const detections: Alert[] = [];
  const lagsNs: bigint[] = [];
  lines.forEach((line, i) => {
    let alert = alertFromJson(parse(line), { kind: 'replay', component: 'test' });
    const add = enrichment[String(i + 1)];
    if (add) alert = withEnrichment(alert, add);
    const r = engine.process(alert);
    expect(r.forward).toBe(true);
    for (const d of r.detections) {
      detections.push(d);
      lagsNs.push(alert.timeNs - d.timeNs);
    }
  });
  return { detections, lagsNs, metrics };
}

const folders = existsSync(DIR) ? readdirSync(DIR, { withFileTypes: true }).filter((d) => d.isDirectory() && existsSync(join(DIR, d.name, 'expected.json'))).map((d) => d.name).sort() : [];

describe('scenarios replayed through the detection engine', () => {
  it('has scenario folders', () => {
    expect(folders.length).toBeGreaterThanOrEqual(8);
  });

  for (const name of folders) {
    it(name, () => {
      const folder = join(DIR, name);
      const expected = JSON.parse(readFileSync(join(folder, 'expected.json'), 'utf8')) as Expected;
      const { detections, lagsNs } = replay(folder);
      const got = new Map<string, Alert[]>();
      for (const d of detections) got.set(d.rule, [...(got.get(d.rule) ?? []), d]);
      const summary = detections.map((d) => `${d.priority} ${d.rule} | ${d.output}`).join('\n');
      for (const e of expected.detections) {
        const hits = got.get(e.rule) ?? [];
        expect(hits.length, `${e.rule}: count\n${summary}`).toBe(e.count);
        const min = parsePriority(e.min_priority);
        if (!min) throw new Error(`bad min_priority ${e.min_priority}`);
        for (const h of hits) expect(atLeast(h.priority, min), `${e.rule}: ${h.priority} < ${e.min_priority}`).toBe(true);
      }
      const floor = expected.tolerate_below === undefined ? null : parsePriority(expected.tolerate_below);
      if (expected.tolerate_below !== undefined && !floor) throw new Error(`bad tolerate_below ${expected.tolerate_below}`);
      const unexpected = detections.filter((d) => !expected.detections.some((e) => e.rule === d.rule) && !(floor && !atLeast(d.priority, floor)));
      expect(unexpected.map((d) => `${d.priority} ${d.rule}: ${d.output}`), 'unexpected detections').toEqual([]);
      // Emitted while processing the evidence (well within two seconds of the last evidence alert).
      for (const lag of lagsNs) expect(lag).toBeLessThan(2_000_000_000n);
      for (const d of detections) {
        expect(d.source).toBe('falco-companion');
        expect(d.tags).toContain('falco_companion');
        expect(d.origin.kind).toBe('detector');
        for (const v of [...Object.values(d.companion), ...Object.values(d.outputFields ?? {})]) if (typeof v === 'string') expect(v.length).toBeLessThan(512);
      }
    });
  }
});
