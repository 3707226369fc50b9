/**
 * Chaos: Falcosidekick flapping under steady load. The stand-in goes down and comes back every
 * second or so (connections refused and cut mid-request), answers bursts of 503 and 429 with
 * Retry-After, and slows down, while alerts keep coming over HTTP. With the spool (the default)
 * and without it (a bounded memory queue that retries forever), the companion keeps accepting,
 * and everything it accepted arrives at least once, counted by companion.alert_id.
 */
import { describe, expect, it } from 'vitest';
import { chaosScope, endsHealthyNothingLost, every, load, STRETCH } from './support.js';

const s = chaosScope('fc-chaos-flap-');

describe('chaos: the Falcosidekick sink flapping', () => {
  for (const spool of [true, false]) {
    it(`spool ${spool ? 'on' : 'off'}: sink down/up every second, 503/429 bursts, slow answers; nothing accepted is lost`, async () => {
      const { sidekick: sk, cli, base } = await s.httpCompanion(spool ? {} : { FALCO_COMPANION_SPOOL_ENABLED: 'false' });
      const phaseMs = 5000 * STRETCH;
      const flaps = every(1000, phaseMs, async (i) => {
        switch (i % 4) {
          case 0:
            await sk.down(); // refused, and in-flight requests cut
            break;
          case 1:
            await sk.up();
            sk.failNext(5, 503, { retryAfter: '1' });
            break;
          case 2:
            sk.delay(150);
            sk.failNext(3, 429, { retryAfter: '0' });
            break;
          default:
            sk.delay(0);
        }
      });
      const [l, n] = await Promise.all([load({ base, perSecond: 40, durationMs: phaseMs }), flaps]);
      await sk.up();
      sk.delay(0);
      sk.clearFailures();
      expect(n).toBeGreaterThanOrEqual(5);
      // the sink being down is no reason to refuse alerts: with the spool, or in memory
      expect(l.refused, JSON.stringify([...l.statuses])).toEqual([]);
      // the chaos really hit the deliveries: refused connections and 503/429 answers
      expect(cli.logs.filter((x) => x['component'] === 'sink/falcosidekick' && /delivery failed/.test(String(x['msg']))).length).toBeGreaterThan(0);
      expect(sk.attempts.length).toBeGreaterThan(0);
      const r = await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: l.acked, probeSeq: 1_000_000 });
      expect(r.delivered).toBeGreaterThanOrEqual(l.acked.length);
      expect(await cli.stop('SIGTERM')).toBe(0);
    });
  }
});
