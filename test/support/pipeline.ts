/** Run alerts through a real Pipeline (memory intake, memory sink) for pipeline and enricher tests. */
import type { Alert } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { Router, type RouteConfig } from '../../src/pipeline/router.js';
import type { DetectStage, Enricher, Sink } from '../../src/pipeline/types.js';
import { falcoAlert, type FalcoAlertSpec } from './falco-alerts.js';

/** Forward everything (no priority, rule or tag filter). */
export const FORWARD_ALL: RouteConfig = { min_priority: 'Debug', include_rules: [], exclude_rules: [], include_tags: [], exclude_tags: [], forward_internal: true };

/** Alert number `i`: rule `rule i`, Warning, `output_fields.n = i`, event time `i` s after BASE_NS. */
export function numberedAlert(i: number, over: Pick<FalcoAlertSpec, 'rule' | 'priority' | 'tags' | 'source'> = {}): Alert {
  return falcoAlert({ t: i, rule: `rule ${i}`, priority: 'Warning', ...over, fields: { n: i } });
}

export interface RunOptions {
  readonly enrichers?: Enricher[];
  /** Enrichment budget (ms). Default 50. */
  readonly budget?: number;
  readonly detect?: DetectStage;
  readonly route?: RouteConfig;
  readonly concurrency?: number;
}

/** Submit `alerts` in order, stop the pipeline (drained), and return what the sink got. */
export async function runThrough(alerts: readonly Alert[], o: RunOptions = {}): Promise<{ got: Alert[]; metrics: Metrics }> {
  const metrics = new Metrics({ collectDefault: false });
  const intake = new MemoryIntake(1000, metrics);
  const got: Alert[] = [];
  const sink: Sink = { id: 'sink/mem', start: async () => undefined, stop: async () => undefined, health: () => ({ ready: true }), pending: () => 0, write: async (a) => void got.push(a) };
  const p = new Pipeline({
    intake,
    enrichers: o.enrichers ?? [],
    enrichBudgetMs: o.budget ?? 50,
    detect: o.detect ?? null,
    router: new Router(o.route ?? FORWARD_ALL, metrics),
    sinks: [sink],
    concurrency: o.concurrency ?? 8,
    logger: silentLogger(),
    metrics,
  });
  await p.start();
  for (const a of alerts) await intake.submit(a);
  await p.stop(Date.now() + 5000);
  return { got, metrics };
}
