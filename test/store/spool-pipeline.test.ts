/**
 * Spool + Pipeline + FalcosidekickSink (delivering from the spool) in one process against the sidekick stand-in: forwarded
 * alerts and detections are delivered with their own ids, signal-only and routed-away alerts
 * leave no row behind, and an outage with a backlog is retried one probe at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import type { Config } from '../../src/config/schema.js';
import type { JsonObject } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { Router } from '../../src/pipeline/router.js';
import type { DetectStage } from '../../src/pipeline/types.js';
import { FalcosidekickSink } from '../../src/sinks/falcosidekick.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Spool, type SpoolConfig } from '../../src/store/spool.js';
import { FakeSidekick } from '../support/sidekick.js';
import { until, wait } from '../support/wait.js';

const spoolCfg: SpoolConfig = { enabled: true, max_alerts: 10_000, max_bytes: 64 * 1024 * 1024, max_age: 0, when_full: 'block', commit_interval: 0, commit_batch: 1024 };
const skCfg = (url: string): Config['sinks']['falcosidekick'] => ({
  url,
  timeout: 2000,
  concurrency: 4,
  max_queue: 100,
  retry_initial: 20,
  retry_max: 100,
  max_elapsed: 0,
  ca: null,
  client_cert: null,
  client_key: null,
  insecure: false,
});

function alert(i: number, rule = `rule ${i}`): Alert {
  return createAlert({ time: '2026-01-01T00:00:00.5Z', rule, priority: 'Warning', source: 'syscall', outputFields: { seq: i }, origin: { kind: 'http', component: 'source/http' } });
}

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(detect: DetectStage | null, routeExclude: string[] = []): Promise<{ spool: Spool; sk: FakeSidekick; pipeline: Pipeline; sink: FalcosidekickSink; db: Db; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'fc-spool-pipe-'));
  const db = openStateDb(dir);
  const metrics = new Metrics({ collectDefault: false });
  const sk = await new FakeSidekick().start();
  const spool = new Spool({ db, path: dir, config: spoolCfg, logger: silentLogger(), metrics });
  const sink = new FalcosidekickSink({ queue: spool.delivery, config: skCfg(sk.url), logger: silentLogger(), metrics, pollMs: 50 });
  const pipeline = new Pipeline({
    intake: spool,
    enrichers: [],
    enrichBudgetMs: 50,
    detect,
    router: new Router({ min_priority: 'Debug', include_rules: [], exclude_rules: routeExclude, include_tags: [], exclude_tags: [], forward_internal: true }, metrics),
    sinks: [sink],
    concurrency: 8,
    logger: silentLogger(),
    metrics,
  });
  await spool.start();
  await sink.start();
  await pipeline.start();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const dl = Date.now() + 2000;
    await pipeline.stop(dl);
    await sink.stop(dl);
    await spool.stop(dl);
    db.close();
    await sk.close();
    rmSync(dir, { recursive: true, force: true });
  };
  cleanup.push(stop);
  return { spool, sk, pipeline, sink, db, stop };
}

describe('spool + pipeline + sidekick delivery', () => {
  it('delivers forwarded alerts and detections with distinct ids; signal-only and routed-away alerts leave no row', async () => {
    const detect: DetectStage = {
      process: (a) => ({
        forward: a.rule !== 'signal',
        detections: a.rule === 'trigger' ? [createAlert({ time: a.time, rule: 'Detection', priority: 'Critical', outputFields: { x: 1 }, origin: { kind: 'detector', component: 'detect' } })] : [],
      }),
    };
    const { spool, sk } = await setup(detect, ['excluded']);
    await spool.submit(alert(1, 'signal'));
    await spool.submit(alert(2, 'trigger'));
    await spool.submit(alert(3, 'excluded'));
    await spool.submit(alert(4));
    await sk.waitForAccepted(3, 5000);
    await until(() => spool.size === 0, 3000, 'spool emptied');
    expect(spool.size).toBe(0);
    expect(sk.accepted.map((a) => a.parsed['rule']).sort()).toEqual(['Detection', 'rule 4', 'trigger']);
    const ids = sk.accepted.map((a) => String((a.parsed['output_fields'] as JsonObject)['companion.alert_id']));
    expect(new Set(ids).size).toBe(3);
    expect(ids.every((id) => /^[0-9A-Z]{26}$/.test(id))).toBe(true);
  });

  it('an outage with a backlog, then 503s: every alert delivered once, each failure costs exactly one attempt', async () => {
    const { spool, sk } = await setup(null);
    await sk.down();
    await Promise.all(Array.from({ length: 100 }, (_, i) => spool.submit(alert(i))));
    await until(() => spool.delivery.readyCount >= 100, 3000, 'all ready for delivery');
    expect(spool.delivery.readyCount).toBe(100);
    await wait(500);
    await sk.up();
    sk.failNext(3, 503);
    await sk.waitForAccepted(100, 10_000);
    // 3 failed attempts + 100 deliveries: no alert was sent twice
    expect(sk.attempts.length).toBe(103);
    const seqs = sk.accepted.map((a) => Number((a.parsed['output_fields'] as JsonObject)['seq']));
    expect(new Set(seqs).size).toBe(100);
  });
});
