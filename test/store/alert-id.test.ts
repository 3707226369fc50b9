import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AlertIdGenerator, alertIdFloor, alertIdTimeMs } from '../../src/store/alert-id.js';

describe('companion.alert_id', () => {
  it('is a 26-character ULID whose timestamp reads back', () => {
    const g = new AlertIdGenerator(() => 1_767_225_600_123);
    const id = g.next();
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(alertIdTimeMs(id)).toBe(1_767_225_600_123);
    expect(id >= alertIdFloor(1_767_225_600_123)).toBe(true);
    expect(id < alertIdFloor(1_767_225_600_124)).toBe(true);
  });

  it('sorts in the order ids were made, whatever the clock does (same ms, steps back)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -3, max: 5 }), { minLength: 1, maxLength: 400 }), (steps) => {
        let t = 1_700_000_000_000;
        const g = new AlertIdGenerator(() => t);
        const ids: string[] = [];
        for (const s of steps) {
          t += s;
          ids.push(g.next());
        }
        const sorted = [...ids].sort();
        expect(sorted).toEqual(ids);
        expect(new Set(ids).size).toBe(ids.length);
      }),
      { numRuns: 200 },
    );
  });

  it('stays unique and ordered for many ids in one millisecond', () => {
    const g = new AlertIdGenerator(() => 5);
    let prev = '';
    for (let i = 0; i < 20_000; i++) {
      const id = g.next();
      expect(id > prev).toBe(true);
      prev = id;
    }
  });
});

describe('alert ids', () => {
  it('are time-ordered, unique and carry their millisecond', () => {
    let t = 1_767_225_600_000;
    const g = new AlertIdGenerator(() => t);
    const ids: string[] = [];
    for (let i = 0; i < 2000; i++) {
      if (i % 500 === 0) t += 1;
      ids.push(g.next());
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    expect(alertIdTimeMs(ids[0] as string)).toBe(1_767_225_600_001);
    t -= 10_000; // clock steps back: still increasing
    const after = g.next();
    expect(after > (ids[ids.length - 1] as string)).toBe(true);
  });
});
