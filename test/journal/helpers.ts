/**
 * Real findings for the journal tests: a shipped example case's alerts through the real engine,
 * each detector tapped (src/journal/tap.ts) so every finding is kept with the alert the engine
 * emitted for it. No mock: the findings are what the detectors produce.
 */
import { alertFromJson, withEnrichment, type Alert, type EnrichValue } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { buildDetectors } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import type { Finding } from '../../src/detect/types.js';
import { tapDetector } from '../../src/journal/tap.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { AlertIdGenerator } from '../../src/store/alert-id.js';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export const EXAMPLES = 'examples/detection-tests';

/** The alerts of an example case as the pipeline hands them to the detection stage (enriched, with ids). */
export function exampleAlerts(name: string): Alert[] {
  const dir = join(EXAMPLES, name);
  const enrichFile = join(dir, 'enrichment.json');
  const enrichment = existsSync(enrichFile) ? (JSON.parse(readFileSync(enrichFile, 'utf8')) as Record<string, Record<string, EnrichValue>>) : {};
  const ids = new AlertIdGenerator(() => 1_750_000_000_000);
  return readFileSync(join(dir, 'alerts.jsonl'), 'utf8')
    .split('\n')
    .map((line, i) => ({ line, i }))
    .filter(({ line }) => line.trim() !== '')
    .map(({ line, i }) => {
      let a = alertFromJson(parse(line), { kind: 'replay', component: 'test' }, 0);
      const add = enrichment[String(i + 1)];
      if (add) a = withEnrichment(a, add);
      return ids.ensure(a);
    });
}

/**
 * Every finding of an example case with the detection the engine emitted for it (null: folded or
 * suppressed), the detection with the id the pipeline gives it.
 */
export function exampleFindings(name: string): { alerts: Alert[]; findings: { finding: Finding; emitted: Alert | null }[] } {
  const rules = loadRulesFile(null);
  const found: Finding[] = [];
  const engine = new DetectionEngine({
    rules,
    detectors: buildDetectors(rules).map((d) => tapDetector(d, (f) => found.push(f))),
    logger: silentLogger(),
    metrics: new Metrics({ collectDefault: false }),
    clock: new ManualClock(0),
  });
  const alerts = exampleAlerts(name);
  const findings: { finding: Finding; emitted: Alert | null }[] = [];
  const ids = new AlertIdGenerator(() => 1_750_000_000_000);
  for (const a of alerts) {
    const dets = [...engine.process(a).detections];
    for (const f of found.splice(0)) {
      const i = dets.findIndex((d) => d.rule === f.rule && d.timeNs === f.timeNs);
      findings.push({ finding: f, emitted: i >= 0 ? ids.ensure(dets.splice(i, 1)[0] as Alert) : null });
    }
  }
  return { alerts, findings };
}
