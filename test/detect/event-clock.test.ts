/**
 * The detection clock (src/detect/event-clock.ts): follows the event times, ignores an alert far
 * ahead or behind, jumps when the whole stream moves (three agreeing outliers in a row).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLOCK_CONFIRM, CLOCK_LEAP_NS, EventClock, type ClockTick } from '../../src/detect/event-clock.js';

const S = 1_000_000_000n;
const H = 3600n * S;
const T0 = 1_767_225_600n * S; // 2026-01-01
const YEAR = 365n * 24n * H;

function feed(c: EventClock, times: bigint[]): ClockTick[] {
  return times.map((t) => c.observe(t));
}

describe('EventClock', () => {
  it('follows the latest event time; late alerts within the leap neither move it nor count', () => {
    const c = new EventClock();
    expect(c.now).toBe(0n);
    expect(feed(c, [T0, T0 + S, T0 + 10n * S, T0 + 2n * S, T0 - 30n * 60n * S])).toEqual(['in', 'in', 'in', 'in', 'in']);
    expect(c.now).toBe(T0 + 10n * S);
    // a quiet hour (exactly the leap) is still in range
    expect(c.observe(T0 + 10n * S + CLOCK_LEAP_NS)).toBe('in');
  });

  it('one alert ten years ahead (a wrong Falco clock, a forged alert) does not move it', () => {
    const c = new EventClock();
    feed(c, [T0, T0 + S]);
    expect(c.observe(T0 + 10n * YEAR)).toBe('outlier_ahead');
    expect(c.now).toBe(T0 + S);
    expect(c.observe(T0 + 2n * S)).toBe('in');
    expect(c.now).toBe(T0 + 2n * S);
    // nor do outliers that disagree with each other, or that are interrupted by the real stream
    feed(c, [T0 + 10n * YEAR, T0 + 20n * YEAR, T0 + 30n * YEAR, T0 + 10n * YEAR, T0 + 3n * S, T0 + 10n * YEAR, T0 + 10n * YEAR]);
    expect(c.now).toBe(T0 + 3n * S);
  });

  it('a clock step forward of the whole stream is followed after three agreeing alerts', () => {
    const c = new EventClock();
    feed(c, [T0]);
    const t = T0 + 2n * H;
    expect(feed(c, [t, t + S, t + 5n * S])).toEqual(['outlier_ahead', 'outlier_ahead', 'jump_ahead']);
    expect(c.now).toBe(t + 5n * S);
    expect(c.observe(t + 6n * S)).toBe('in');
  });

  it('a clock step back of the whole stream (NTP after boot, a restored VM) is followed too', () => {
    const c = new EventClock();
    feed(c, [T0, T0 + S]);
    const back = T0 - 30n * 24n * H;
    expect(feed(c, [back, back + S, back + 2n * S])).toEqual(['outlier_behind', 'outlier_behind', 'jump_behind']);
    expect(c.now).toBe(back + 2n * S);
    expect(c.observe(back + 3n * S)).toBe('in');
    expect(c.now).toBe(back + 3n * S);
  });

  it('a restored (checkpointed) clock counts when later; a poisoned one heals after three agreeing alerts', () => {
    const c = new EventClock();
    c.restore(T0);
    c.restore(T0 - H);
    expect(c.now).toBe(T0);
    const poisoned = new EventClock();
    poisoned.restore(T0 + 10n * YEAR);
    expect(feed(poisoned, [T0, T0 + S, T0 + 2n * S]).at(-1)).toBe('jump_behind');
    expect(poisoned.now).toBe(T0 + 2n * S);
  });

  it('property: after an in-range alert, the next one alone never moves the clock by more than the leap', () => {
    const time = fc.bigInt({ min: T0 - 100n * YEAR, max: T0 + 100n * YEAR });
    fc.assert(
      fc.property(fc.array(time, { maxLength: 40 }), fc.bigInt({ min: -CLOCK_LEAP_NS, max: CLOCK_LEAP_NS }), time, (before, near, t) => {
        const c = new EventClock();
        for (const b of before) c.observe(b);
        if (c.now === 0n) c.observe(T0);
        expect(c.observe(c.now + near)).toBe('in'); // clears any run of outliers
        const was = c.now;
        c.observe(t);
        const moved = c.now - was;
        return moved <= CLOCK_LEAP_NS && moved >= -CLOCK_LEAP_NS && (moved === 0n || c.now === t);
      }),
      { numRuns: 2000 },
    );
  });

  it(`property: ${CLOCK_CONFIRM} agreeing outliers in a row always move it`, () => {
    fc.assert(
      fc.property(fc.boolean(), fc.bigInt({ min: 2n * CLOCK_LEAP_NS, max: 50n * YEAR }), fc.array(fc.bigInt({ min: 0n, max: CLOCK_LEAP_NS / 2n }), { minLength: CLOCK_CONFIRM, maxLength: CLOCK_CONFIRM }), (ahead, dist, jitter) => {
        const c = new EventClock();
        c.observe(T0);
        const base = ahead ? T0 + dist : T0 - dist;
        const ticks = jitter.map((j) => c.observe(base + j));
        return ticks.at(-1) === (ahead ? 'jump_ahead' : 'jump_behind') && c.now === jitter.reduce((m, j) => (base + j > m ? base + j : m), base);
      }),
    );
  });

  it('property: the stream of a running node (increasing times, gaps under the leap) is followed exactly', () => {
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: 0n, max: CLOCK_LEAP_NS }), { minLength: 1, maxLength: 200 }), (gaps) => {
        const c = new EventClock();
        let t = T0;
        for (const g of gaps) {
          t += g;
          if (c.observe(t) !== 'in') return false;
        }
        return c.now === t;
      }),
    );
  });
});
