/**
 * The baseline and deviation logic on fixed series (src/resource/analyser.ts): lone replicas,
 * fleet-wide load, single instances, drift, step changes, bursts, restarts, warm-up, time of day.
 * One tick = 10 s; the baseline learns for 10 min (TEST_BASELINE).
 */
import { describe, expect, it } from 'vitest';
import { groupOf, ownerOfPod } from '../../src/resource/analyser.js';
import { emptyMeta } from '../../src/resource/types.js';
import { idle, jitter, Sim, T0, testSettings, TEST_BASELINE } from './sim.js';

const LEARN = 70; // ticks: 11.7 min > learning period, > min_samples

describe('lone replica vs load', () => {
  it('one replica burning CPU and sending bytes while its sibling idles: one event, lone, with the numbers', () => {
    const sim = new Sim();
    sim.add('a', 'shop/api', (i) => (i >= LEARN ? { ...idle(1)(i), cpu: 1.2, tx: 5e6, txp: 4000 } : idle(1)(i)));
    sim.add('b', 'shop/api', idle(2));
    expect(sim.run(LEARN)).toEqual([]);
    const evs = sim.run(30);
    expect(evs).toHaveLength(1);
    const { tick, ev } = evs[0] as (typeof evs)[number];
    // Held 30 s without interruption: the fourth deviating tick (0, 10, 20, 30 s).
    expect(tick).toBe(LEARN + 3);
    expect(ev.meta.name).toBe('a');
    const cpu = ev.metrics.find((m) => m.metric === 'cpu');
    expect(cpu?.verdict).toBe('lone');
    expect(cpu?.siblings).toBe(1);
    expect(cpu?.siblingsShowing).toBe(0);
    expect(cpu?.value).toBeCloseTo(1.2, 5);
    expect(cpu?.baseline).toBeGreaterThan(0.04);
    expect(cpu?.baseline).toBeLessThan(0.06);
    expect(cpu?.ratio).toBeGreaterThan(15);
    expect(cpu?.siblingValues[0]).toMatch(/^b=0\.0\d$/);
    // The bytes deviate in the same episode: in the same event, not a second one.
    expect(ev.metrics.map((m) => m.metric).sort()).toEqual(['cpu', 'net_tx_bytes', 'net_tx_packets']);
    expect(sim.deviations.get('cpu|lone')).toBe(1);
  });

  it('both replicas burning at the same time: load, counted, for each', () => {
    const sim = new Sim();
    sim.add('a', 'shop/api', (i) => (i >= LEARN ? { ...idle(1)(i), cpu: 1.2 } : idle(1)(i)));
    sim.add('b', 'shop/api', (i) => (i >= LEARN + 1 ? { ...idle(2)(i), cpu: 0.9 } : idle(2)(i)));
    sim.run(LEARN);
    const evs = sim.run(30);
    expect(evs.map((e) => [e.ev.meta.name, e.ev.metrics[0]?.verdict])).toEqual([
      ['a', 'load'],
      ['b', 'load'],
    ]);
    expect(sim.deviations.get('cpu|load')).toBe(2);
    expect(sim.deviations.get('cpu|lone')).toBeUndefined();
  });

  it('a replica that stays far below the deviation threshold does not make it load ("most" siblings, sibling_share)', () => {
    const sim = new Sim();
    sim.add('a', 'shop/api', (i) => (i >= LEARN ? { ...idle(1)(i), cpu: 1.5 } : idle(1)(i)));
    sim.add('b', 'shop/api', (i) => (i >= LEARN ? { ...idle(2)(i), cpu: 0.08 } : idle(2)(i)));
    sim.add('c', 'shop/api', idle(3));
    sim.run(LEARN);
    const evs = sim.run(10);
    expect(evs).toHaveLength(1);
    expect(evs[0]?.ev.metrics[0]).toMatchObject({ metric: 'cpu', verdict: 'lone', siblings: 2, siblingsShowing: 0 });
  });

  it('during a rollout the new version is not the old one\'s sibling: a heavier release is single, not lone', () => {
    const sim = new Sim();
    sim.add('old', 'shop/api', idle(1), { tag: '3.1' });
    sim.add('new', 'shop/api', (i) => (i >= LEARN ? { ...idle(2)(i), cpu: 1.0 } : idle(2)(i)), { tag: '3.2' });
    sim.run(LEARN);
    const evs = sim.run(10);
    expect(evs).toHaveLength(1);
    expect(evs[0]?.ev.metrics[0]).toMatchObject({ metric: 'cpu', verdict: 'single', siblings: 0 });
  });

  it('a single instance is judged against its own history (verdict single)', () => {
    const sim = new Sim();
    sim.add('solo', 'batch/worker', (i) => (i >= LEARN ? { ...idle(4)(i), cpu: 2 } : idle(4)(i)));
    sim.run(LEARN);
    const evs = sim.run(10);
    expect(evs).toHaveLength(1);
    expect(evs[0]?.ev.metrics[0]).toMatchObject({ metric: 'cpu', verdict: 'single', siblings: 0 });
  });
});

describe('what is not a deviation', () => {
  it('nothing is judged while the baseline learns (counted)', () => {
    const sim = new Sim();
    sim.add('a', 'shop/api', (i) => (i >= 10 ? { cpu: 3 } : idle(1)(i)));
    sim.add('b', 'shop/api', idle(2));
    expect(sim.run(40)).toEqual([]);
    expect(sim.exempt.get('learning')).toBeGreaterThan(0);
  });

  it('a spike shorter than hold is no event; short bursts seen before raise the peak', () => {
    const sim = new Sim();
    // A cron-like burst every 20 ticks lasting 2 ticks (20 s), before and after learning.
    const bursty = (seed: number) => (i: number) => (i % 20 < 2 ? { ...idle(seed)(i), cpu: 1.5 } : idle(seed)(i));
    sim.add('a', 'shop/cron', bursty(1));
    sim.add('b', 'shop/cron', (i) => idle(2)(i));
    expect(sim.run(LEARN + 200)).toEqual([]);
  });

  it('slow drift (a cache warming up over hours) is learnt, never signalled', () => {
    const sim = new Sim();
    const drift = (seed: number) => (i: number) => ({ ...idle(seed)(i), memory: 200e6 * (1 + i / 720) + 5e6 * jitter(i, seed), cpu: 0.2 + i / 7200 });
    sim.add('a', 'shop/cache', drift(1));
    sim.add('b', 'shop/cache', drift(2));
    expect(sim.run(3 * 360)).toEqual([]); // 3 h: memory ×2.5, CPU ×1.75
  });

  it('a step change shared by the fleet (new release) is load, then learnt: no more events', () => {
    const sim = new Sim();
    const step = (seed: number) => (i: number) => (i >= LEARN ? { ...idle(seed)(i), cpu: 0.5 + 0.02 * jitter(i, seed) } : idle(seed)(i));
    sim.add('a', 'shop/api', step(1));
    sim.add('b', 'shop/api', step(2));
    sim.add('c', 'shop/api', step(3));
    sim.run(LEARN);
    const evs = sim.run(2 * 360);
    expect(evs.every((e) => e.ev.metrics.every((m) => m.verdict === 'load'))).toBe(true);
    expect(evs).toHaveLength(3); // one episode each
    // The baseline has moved up: the same level is normal now.
    expect(sim.run(60)).toEqual([]);
  });

  it('a lasting step change of a single instance: one event, then adapt_after lets the baseline learn it', () => {
    const sim = new Sim(10, testSettings({ adaptAfterMs: 600_000 }), { ...TEST_BASELINE, windowMs: 1_800_000 });
    sim.add('solo', 'batch/worker', (i) => (i >= LEARN ? { ...idle(4)(i), cpu: 1 + 0.05 * jitter(i, 9) } : idle(4)(i)));
    sim.run(LEARN);
    const evs = sim.run(4 * 360);
    expect(evs).toHaveLength(1);
    expect(sim.run(60)).toEqual([]);
  });

  it('a restart (counters back to zero) is no negative rate and no event; warm-up after it', () => {
    const sim = new Sim(10, testSettings({ warmupMs: 60_000 }));
    const a = sim.add('a', 'shop/api', idle(1));
    sim.add('b', 'shop/api', idle(2));
    sim.run(LEARN);
    a.restarts.add(LEARN + 5);
    // Start-up burst right after the restart, within warm-up.
    a.usage = (i) => (i >= LEARN + 5 && i < LEARN + 10 ? { ...idle(1)(i), cpu: 2 } : idle(1)(i));
    expect(sim.run(40)).toEqual([]);
    expect(sim.exempt.get('restart')).toBe(1);
    expect(sim.exempt.get('warmup')).toBeGreaterThan(0);
  });

  it('a container that comes back after the episode ended is signalled again (new episode)', () => {
    const sim = new Sim();
    sim.add('a', 'shop/api', (i) => ((i >= LEARN && i < LEARN + 10) || i >= LEARN + 30 ? { ...idle(1)(i), cpu: 1.5 } : idle(1)(i)));
    sim.add('b', 'shop/api', idle(2));
    sim.run(LEARN);
    const evs = sim.run(50);
    expect(evs.map((e) => e.tick)).toEqual([LEARN + 3, LEARN + 33]);
  });

  it('a lone deviation is kept out of the baseline (the attacker cannot teach it) until adapt_after', () => {
    const sim = new Sim(10, testSettings({ adaptAfterMs: 3_600_000 }));
    sim.add('a', 'shop/api', (i) => (i >= LEARN ? { ...idle(1)(i), cpu: 1.5 } : idle(1)(i)));
    sim.add('b', 'shop/api', idle(2));
    sim.run(LEARN + 200);
    expect(sim.events).toHaveLength(1);
    const st = sim.baselines.stats('image:shop/api|cpu', T0 + BigInt((LEARN + 199) * 10) * 1_000_000_000n);
    expect(st?.median).toBeLessThan(0.07);
    expect(st?.p99).toBeLessThan(0.1);
  });
});

describe('time-of-day buckets', () => {
  it('a short daily batch is normal for its bucket once learnt, while the all-day baseline flags it every day', () => {
    const day = 86_400;
    // 10 minutes a day: 0.7 % of the day (above the all-day p99), 5.6 % of a 3-hour bucket.
    const busy = (t: number): boolean => t % day >= 9 * 3600 && t % day < 9 * 3600 + 600;
    const series = (seed: number) => (i: number, t: number) => (busy(t) ? { ...idle(seed)(i), cpu: 1.2 + 0.05 * jitter(i, seed) } : idle(seed)(i));
    const run = (buckets: number): number => {
      const sim = new Sim(60, testSettings({ timeOfDayBuckets: buckets }), { windowMs: 7 * day * 1000, slots: 14, learningPeriodMs: 600_000, minSamples: 20, maxKeys: 1000 });
      sim.add('solo', 'reports/app', series(1));
      sim.run(3 * 1440); // three days, one tick a minute
      return sim.events.filter((e) => e.tick >= 1440).length; // day 2 and 3
    };
    expect(run(8)).toBe(0);
    expect(run(0)).toBeGreaterThan(0);
  });
});

describe('groups', () => {
  it('workload from the pod name, else the image, else the container', () => {
    expect(ownerOfPod('api-6b8f9d7c5-q9zt2')).toBe('api');
    expect(ownerOfPod('node-exporter-x7k2p')).toBe('node-exporter');
    expect(ownerOfPod('postgres-0')).toBe('postgres');
    expect(ownerOfPod('web-proxy')).toBe('web-proxy');
    expect(groupOf({ ...emptyMeta('a'.repeat(64)), namespace: 'shop', pod: 'api-6b8f9d7c5-q9zt2', containerName: 'api', image: 'x' })).toBe('workload:shop/api/api');
    expect(groupOf({ ...emptyMeta('a'.repeat(64)), image: 'shop/api' })).toBe('image:shop/api');
    expect(groupOf(emptyMeta('a'.repeat(64)))).toBe('container:aaaaaaaaaaaa');
  });
});
