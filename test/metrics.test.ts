/**
 * Metrics that cost nothing per alert (src/metrics.ts): batched counter children add what they
 * counted when the registry is collected, gauge children are read at collection. A scrape sees
 * the same totals as direct `inc` / `set` would give.
 */
import { describe, expect, it } from 'vitest';
import { Metrics } from '../src/metrics.js';

const value = async (m: Metrics, line: RegExp): Promise<number | null> => {
  const hit = line.exec(await m.text());
  return hit ? Number(hit[1]) : null;
};

describe('batched counters', () => {
  it('count locally and show the total at every scrape, next to direct increments of other labels', async () => {
    const m = new Metrics({ collectDefault: false });
    const http = m.batched(m.received, { component: 'source/http' });
    m.received.inc({ component: 'source/grpc' }, 2);
    for (let i = 0; i < 1000; i++) http.inc();
    expect(http.pending).toBe(1000);
    expect(await value(m, /falco_companion_received_total\{component="source\/http"\} (\d+)/)).toBe(1000);
    expect(http.pending).toBe(0);
    http.inc(5);
    expect(await value(m, /falco_companion_received_total\{component="source\/http"\} (\d+)/)).toBe(1005);
    expect(await value(m, /falco_companion_received_total\{component="source\/grpc"\} (\d+)/)).toBe(2);
  });

  it('the same label set gives the same child; `get()` of the counter flushes too', async () => {
    const m = new Metrics({ collectDefault: false });
    const c = m.counter('things_total', 'Things', ['kind']);
    const a = m.batched(c, { kind: 'a' });
    expect(m.batched(c, { kind: 'a' })).toBe(a);
    a.inc(3);
    const got = await c.get();
    expect(got.values.find((v) => v.labels['kind'] === 'a')?.value).toBe(3);
  });

  it('refuses a counter of another registry (its collect hook would never run)', () => {
    const m = new Metrics({ collectDefault: false });
    const other = new Metrics({ collectDefault: false });
    expect(() => m.batched(other.received, { component: 'x' })).toThrow(/not a counter of this registry/);
  });
});

describe('gauges read at collection', () => {
  it('show the current value at every scrape; the latest source of a label set wins', async () => {
    const m = new Metrics({ collectDefault: false });
    let depth = 3;
    m.gaugeFrom(m.queueDepth, { component: 'intake/memory' }, () => depth);
    expect(await value(m, /falco_companion_queue_depth\{component="intake\/memory"\} (\d+)/)).toBe(3);
    depth = 7;
    expect(await value(m, /falco_companion_queue_depth\{component="intake\/memory"\} (\d+)/)).toBe(7);
    m.gaugeFrom(m.queueDepth, { component: 'intake/memory' }, () => 42);
    expect(await value(m, /falco_companion_queue_depth\{component="intake\/memory"\} (\d+)/)).toBe(42);
  });

  it('a gauge with its own collect hook keeps it', async () => {
    const m = new Metrics({ collectDefault: false });
    const g = m.gauge('answer', 'The answer', [], function () {
      this.set(41);
    });
    m.gaugeFrom(g, {}, () => 42);
    expect(await value(m, /falco_companion_answer (\d+)/)).toBe(42);
  });
});
