import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GAMMA, LogSketch, MAX_BINS } from '../../src/resource/sketch.js';

const REL = (GAMMA - 1) / (GAMMA + 1) + 1e-9;

function exact(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(q * (s.length - 1))] as number;
}

describe('LogSketch', () => {
  it('quantiles stay within the relative accuracy of the exact ones (within the dynamic range of MAX_BINS buckets)', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.01, max: 100, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.constantFrom(0.25, 0.5, 0.75, 0.99), (xs, q) => {
        const sk = new LogSketch();
        for (const x of xs) sk.add(x);
        const want = exact(xs, q);
        const got = sk.quantile(q);
        // The rank may fall between two values: accept either neighbour's bucket.
        const s = [...xs].sort((a, b) => a - b);
        const lo = s[Math.floor(q * (s.length - 1))] as number;
        const hi = s[Math.ceil(q * (s.length - 1))] as number;
        expect(got, `q=${q} want≈${want}`).toBeGreaterThanOrEqual(lo * (1 - REL));
        expect(got).toBeLessThanOrEqual(hi * (1 + REL));
      }),
      { numRuns: 200 },
    );
  });

  it('counts values under MIN_VALUE (idle containers) in the zero bucket', () => {
    const sk = new LogSketch();
    for (let i = 0; i < 90; i++) sk.add(0);
    for (let i = 0; i < 10; i++) sk.add(5);
    expect(sk.quantile(0.5)).toBe(0);
    expect(sk.quantile(0.99)).toBeCloseTo(5, 0);
    expect(sk.count).toBe(100);
    expect(sk.zero).toBe(90);
  });

  it('stays bounded: a value far above the range folds the lowest buckets, the upper tail keeps its accuracy', () => {
    const sk = new LogSketch();
    for (let i = 0; i < 1000; i++) sk.add(1e-3 * 1.1 ** (i % 200));
    sk.add(1e9);
    expect(sk.bins.length).toBeLessThanOrEqual(MAX_BINS);
    expect(sk.count).toBe(1001);
    expect(sk.quantile(1)).toBeGreaterThan(1e9 * (1 - REL));
    expect(sk.quantile(1)).toBeLessThan(1e9 * (1 + REL));
  });

  it('merge equals adding everything to one sketch', () => {
    const a = new LogSketch();
    const b = new LogSketch();
    const all = new LogSketch();
    for (let i = 1; i <= 200; i++) {
      (i % 2 ? a : b).add(i);
      all.add(i);
    }
    a.merge(b);
    for (const q of [0.1, 0.5, 0.9, 0.99]) expect(a.quantile(q)).toBe(all.quantile(q));
    expect(a.count).toBe(200);
  });

  it('encode/decode round-trips and decode rejects what is not a sketch', () => {
    const sk = new LogSketch();
    for (const x of [0, 0.5, 1, 2, 2, 3, 1000]) sk.add(x);
    const back = LogSketch.decode(sk.encode());
    expect(back).not.toBeNull();
    for (const q of [0, 0.3, 0.5, 0.9, 1]) expect(back?.quantile(q)).toBe(sk.quantile(q));
    expect(LogSketch.decode('')).toBeNull();
    expect(LogSketch.decode('3,1')).toBeNull();
    expect(LogSketch.decode('5,1,2,1,1')).toBeNull(); // counts do not add up
    expect(LogSketch.decode('2,0,1,x,1')).toBeNull();
    expect(LogSketch.decode('2,0,1,-1,3')).toBeNull();
    expect(new LogSketch().quantile(0.5)).toBe(0);
  });
});
