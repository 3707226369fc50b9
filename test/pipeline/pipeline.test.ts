import { describe, expect, it } from 'vitest';
import { createAlert } from '../../src/alert.js';
import { QueueFullError, StoppedError } from '../../src/errors.js';
import { Metrics } from '../../src/metrics.js';
import { silentLogger } from '../../src/logger.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { Router } from '../../src/pipeline/router.js';
import type { RouteConfig } from '../../src/pipeline/router.js';
import type { DetectStage, Enricher } from '../../src/pipeline/types.js';
import { FORWARD_ALL, numberedAlert as alert, runThrough } from '../support/pipeline.js';
import { wait } from '../support/wait.js';

describe('pipeline', () => {
  it('keeps order while enriching concurrently', async () => {
    const slowFirst: Enricher = {
      id: 'enrich/slow',
      enrich: async (a) => {
        const n = a.outputFields?.['n'] as number;
        await wait(n % 3 === 0 ? 15 : 1);
        return { n2: n * 2 };
      },
    };
    const alerts = Array.from({ length: 40 }, (_, i) => alert(i));
    const { got } = await runThrough(alerts, { enrichers: [slowFirst] });
    expect(got.map((a) => a.outputFields?.['n'])).toEqual(alerts.map((_, i) => i));
    expect(got.every((a) => a.companion['n2'] === (a.outputFields?.['n'] as number) * 2)).toBe(true);
    // the originals were never mutated
    expect(alerts[0]?.companion).toEqual({});
  });

  it('forwards on time with enrich_error when an enricher overruns the budget or throws', async () => {
    const hang: Enricher = { id: 'enrich/hang', enrich: () => new Promise(() => {}) };
    const boom: Enricher = { id: 'enrich/boom', enrich: async () => { throw new Error('runtime down'); } };
    const t0 = Date.now();
    const { got, metrics } = await runThrough([alert(1)], { enrichers: [hang, boom], budget: 30 });
    expect(Date.now() - t0).toBeLessThan(3000);
    const err = String(got[0]?.companion['enrich_error']);
    expect(err).toContain('enrich/hang: budget exceeded');
    expect(err).toContain('enrich/boom: runtime down');
    expect(await metrics.text()).toMatch(/falco_companion_errors_total\{component="enrich\/hang",code="E_BUDGET"\} 1/);
  });

  it('emits detections after the alert that completed them, and can hold back signal-only alerts', async () => {
    const detect: DetectStage = {
      process: (a) => ({
        forward: a.rule !== 'signal',
        detections: a.rule === 'trigger' ? [createAlert({ time: a.time, rule: 'Detection', priority: 'Critical', outputFields: { x: 1 }, origin: { kind: 'detector', component: 'detect' } })] : [],
      }),
    };
    const { got, metrics } = await runThrough([alert(1, { rule: 'signal' }), alert(2, { rule: 'trigger' })], { detect });
    expect(got.map((a) => a.rule)).toEqual(['trigger', 'Detection']);
    expect(await metrics.text()).toMatch(/discarded_total\{component="detect",reason="signal_only"\} 1/);
  });

  it('waits before the detection stage while it is not ready (a state part being checkpointed), then takes every alert in order', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(100, metrics);
    const seen: number[] = [];
    const forwarded: number[] = [];
    const detect: DetectStage = { process: (a) => (seen.push(a.outputFields?.['n'] as number), { forward: true, detections: [] }) };
    let open!: () => void;
    let gate: Promise<void> | undefined = new Promise<void>((r) => (open = r));
    const p = new Pipeline({ intake, enrichers: [], enrichBudgetMs: 50, detect, detectReady: () => gate, router: new Router(FORWARD_ALL, metrics), sinks: [], concurrency: 8, logger: silentLogger(), metrics, onForwarded: (a) => forwarded.push(a.outputFields?.['n'] as number) });
    await p.start();
    for (let i = 0; i < 5; i++) await intake.submit(alert(i));
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
    expect(seen).toEqual([]); // accepted, not yet detected nor forwarded
    expect(forwarded).toEqual([]);
    gate = undefined;
    open();
    await p.stop(Date.now() + 5000);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(forwarded).toEqual([0, 1, 2, 3, 4]);
  });

  it('never loses an alert when the detection stage throws', async () => {
    const detect: DetectStage = { process: () => { throw new Error('bug'); } };
    const { got } = await runThrough([alert(1)], { detect });
    expect(got).toHaveLength(1);
  });

  it('routes by priority, rule and tag and counts each drop by reason', async () => {
    const r: RouteConfig = { ...FORWARD_ALL, min_priority: 'Warning', exclude_rules: ['noisy'], include_tags: ['keep'], forward_internal: false };
    const alerts = [
      alert(1, { priority: 'Notice', tags: ['keep'] }),
      alert(2, { rule: 'noisy', tags: ['keep'] }),
      alert(3, { tags: ['other'] }),
      alert(4, { source: 'internal', tags: ['keep'] }),
      alert(5, { priority: 'Critical', tags: ['keep'] }),
    ];
    const { got, metrics } = await runThrough(alerts, { route: r });
    expect(got.map((a) => a.outputFields?.['n'])).toEqual([5]);
    const text = await metrics.text();
    for (const reason of ['priority', 'rule_excluded', 'tag_not_included', 'internal']) expect(text).toContain(`reason="${reason}"`);
  });
});

describe('intake', () => {
  it('refuses when full, tells waiters when space frees, and refuses after close', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const q = new MemoryIntake(2, metrics);
    await q.submit(alert(1));
    await q.submit(alert(2));
    expect(q.full).toBe(true);
    await expect(q.submit(alert(3))).rejects.toBeInstanceOf(QueueFullError);
    const freed = q.whenNotFull();
    await q.take();
    await freed;
    expect(q.full).toBe(false);
    q.close();
    await expect(q.submit(alert(4))).rejects.toBeInstanceOf(StoppedError);
    expect((await q.take())?.outputFields?.['n']).toBe(2);
    expect(await q.take()).toBeNull();
  });
});
