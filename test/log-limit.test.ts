/** The rate-limited log helper shared by the HTTP, file and gRPC inputs and the intel lists. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { countSuppressed, rateLimited } from '../src/log-limit.js';
import { Metrics } from '../src/metrics.js';

function memoryLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

describe('rateLimited', () => {
  it('logs `burst` lines per interval, counts the rest and reports them on the next line', async () => {
    const { logger, lines } = memoryLogger();
    const m = new Metrics({ collectDefault: false });
    let t = 1000;
    const warn = rateLimited(logger, { intervalMs: 1000, burst: 2, now: () => t, onSuppressed: countSuppressed(m, 'source/test') });
    expect(warn({ n: 1 }, 'bad')).toBe(true);
    expect(warn({ n: 2 }, 'bad')).toBe(true);
    expect(warn({ n: 3 }, 'bad')).toBe(false);
    expect(warn({ n: 4 }, 'bad')).toBe(false);
    expect(warn.suppressed).toBe(2);
    t += 999;
    expect(warn({ n: 5 }, 'bad')).toBe(false); // same window
    t += 1;
    expect(warn({ n: 6 }, 'bad')).toBe(true);
    expect(warn.suppressed).toBe(0);
    expect(warn({ n: 7 }, 'bad')).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l['n'], l['suppressed'], l['level'], l['msg']])).toEqual([
      [1, undefined, 40, 'bad'],
      [2, undefined, 40, 'bad'],
      [6, 3, 40, 'bad'],
      [7, undefined, 40, 'bad'],
    ]);
    expect(await m.registry.getSingleMetricAsString('falco_companion_log_suppressed_total')).toContain('falco_companion_log_suppressed_total{component="source/test"} 3');
  });

  it('with an infinite interval logs the first `burst` lines only, at the level asked for', async () => {
    const { logger, lines } = memoryLogger();
    const err = rateLimited(logger, { intervalMs: Infinity, burst: 3, level: 'error' });
    for (let i = 0; i < 10; i++) err({ i }, 'malformed');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l['i'])).toEqual([0, 1, 2]);
    expect(lines.every((l) => l['level'] === 50)).toBe(true);
    expect(err.suppressed).toBe(7);
  });
});
