/** The enrichers' cache: LRU order, counted evictions, a TTL per entry on the injected clock. */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { TtlLru } from '../../src/enrich/ttl-lru.js';

const v = (n: number): { n: number } => ({ n });

describe('TtlLru', () => {
  it('evicts the least recently used entry beyond max and counts only evictions', () => {
    let evicted = 0;
    const c = new TtlLru<string, { n: number }>({ max: 2, clock: new ManualClock(0), onEvict: () => evicted++ });
    c.set('a', v(1), 1000);
    c.set('b', v(2), 1000);
    expect(c.get('a')).toEqual(v(1)); // a is now the most recently used
    c.set('c', v(3), 1000);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toEqual(v(1));
    expect(c.get('c')).toEqual(v(3));
    expect(evicted).toBe(1);
    c.set('a', v(4), 1000); // replacement, delete and expiry are not evictions
    c.delete('c');
    expect(c.size).toBe(1);
    expect(evicted).toBe(1);
  });

  it('keeps each entry for its own TTL on the injected clock, from time 0', () => {
    const clock = new ManualClock(0);
    const c = new TtlLru<string, { n: number }>({ max: 10, clock });
    c.set('short', v(1), 500);
    c.set('long', v(2), 60_000);
    c.set('forever', v(3));
    clock.advance(500);
    expect(c.get('short')).toEqual(v(1));
    clock.advance(1);
    expect(c.get('short')).toBeUndefined();
    expect(c.size).toBe(2); // the expired entry was dropped on read
    clock.advance(60_000);
    expect(c.get('long')).toBeUndefined();
    expect(c.get('forever')).toEqual(v(3));
  });

  it('keeps nothing for a TTL of 0 and drops the older entry of that key', () => {
    const c = new TtlLru<string, { n: number }>({ max: 10, clock: new ManualClock(5) });
    c.set('k', v(1), 1000);
    c.set('k', v(2), 0);
    expect(c.get('k')).toBeUndefined();
    expect(c.size).toBe(0);
  });
});
