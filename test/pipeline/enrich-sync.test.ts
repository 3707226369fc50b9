import { describe, expect, it } from 'vitest';
import type { Enricher } from '../../src/pipeline/types.js';
import { numberedAlert as alert, runThrough } from '../support/pipeline.js';
import { wait } from '../support/wait.js';

describe('pipeline enrichSync fast path', () => {
  it('uses the synchronous answer when there is one, and the budgeted path (same alert, once) when not', async () => {
    const calls = { sync: 0, async: 0 };
    const cached: Enricher = {
      id: 'enrich/cached',
      enrichSync: (a) => {
        calls.sync++;
        const n = a.outputFields?.['n'] as number;
        return n % 2 === 0 ? { even: true, n } : undefined;
      },
      enrich: async (a) => {
        calls.async++;
        await wait(1);
        return { even: false, n: a.outputFields?.['n'] as number };
      },
    };
    const plain: Enricher = { id: 'enrich/plain', enrich: async () => ({ plain: 1 }) };
    const alerts = Array.from({ length: 20 }, (_, i) => alert(i));
    const { got } = await runThrough(alerts, { enrichers: [cached, plain] });
    expect(got.map((a) => a.outputFields?.['n'])).toEqual(alerts.map((_, i) => i)); // order kept
    expect(got.map((a) => a.companion['even'])).toEqual(alerts.map((_, i) => i % 2 === 0));
    expect(got.every((a, i) => a.companion['n'] === i && a.companion['plain'] === 1)).toBe(true);
    expect(calls).toEqual({ sync: 20, async: 10 });
  });

  it('a throwing enrichSync is recorded in enrich_error and counted; the alert goes on', async () => {
    const bad: Enricher = {
      id: 'enrich/bad',
      enrichSync: () => {
        throw new Error('boom');
      },
      enrich: async () => ({ never: true }),
    };
    const { got, metrics } = await runThrough([alert(1)], { enrichers: [bad] });
    expect(got).toHaveLength(1);
    expect(got[0]?.companion['enrich_error']).toMatch(/enrich\/bad: boom/);
    expect(got[0]?.companion['never']).toBeUndefined();
    expect(await metrics.text()).toMatch(/falco_companion_errors_total\{component="enrich\/bad"[^}]*\} 1/);
  });

  it('an enricher that must wait still gets the budget (aborted, named in enrich_error)', async () => {
    const slow: Enricher = { id: 'enrich/slow', enrichSync: () => undefined, enrich: () => new Promise(() => undefined) };
    const t0 = Date.now();
    const { got } = await runThrough([alert(1)], { enrichers: [slow], budget: 20 });
    expect(got[0]?.companion['enrich_error']).toMatch(/enrich\/slow: budget exceeded/);
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});
