/**
 * Chaos: DNS timeouts. The companion's reverse-DNS resolver is a UDP socket on 127.0.0.1 that
 * reads every query and never answers (a resolver that hangs). Under a steady load of connect
 * alerts to many destinations, every PTR lookup times out; alerts must not wait for them beyond
 * `rdns.wait` (they go on with `companion.enrich_error` naming the slow lookup), lookups stay
 * bounded (`rdns.max_inflight`), and every accepted alert is delivered.
 */
import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { isJsonObject } from '../../src/json/lossless.js';
import { until } from '../support/wait.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { chaosScope, endsHealthyNothingLost, load, markedAlert, metricValue, STRETCH } from './support.js';

const s = chaosScope('fc-chaos-dns-');

/** A UDP "resolver" on 127.0.0.1 that swallows every query. */
async function blackHole(): Promise<{ port: number; queries: () => number; close: () => Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  let queries = 0;
  sock.on('message', () => void queries++);
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { port: sock.address().port, queries: () => queries, close: () => new Promise((r) => sock.close(() => r())) };
}

/** A marked alert for a connect to a documentation address (class `reserved`, which this companion looks up). */
const connectAlert = (n: number): string => withOutputFields(markedAlert(n), { 'evt.type': 'connect', 'fd.sip': `203.0.113.${(n % 200) + 1}`, 'fd.sport': 443, 'fd.name': `192.0.2.7:40000->203.0.113.${(n % 200) + 1}:443` });

describe('chaos: DNS that never answers', () => {
  it('alerts go on without the name after rdns.wait, lookups stay bounded, nothing accepted is lost', async () => {
    const dns = await blackHole();
    s.cleanup.push(() => dns.close());
    const { sidekick: sk, cli, base } = await s.httpCompanion({
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'true',
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_SERVERS: `127.0.0.1:${dns.port}`,
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_CLASSES: 'reserved',
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_TIMEOUT: '2s',
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_ERROR_TTL: '0',
      FALCO_COMPANION_ENRICH_EGRESS_RDNS_MAX_INFLIGHT: '32',
    });
    const l = await load({ base, perSecond: 60, durationMs: 3000 * STRETCH, body: connectAlert });
    expect(l.refused).toEqual([]);
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: l.acked, probeSeq: 1_000_000 });
    expect(dns.queries(), 'the lookups went to the resolver that never answers').toBeGreaterThan(10);
    await until(async () => (await metricValue(base, /^falco_companion_rdns_lookups_total\{result="(?:timeout|error)"\} (\d+)$/)) > 0, 10_000, 'lookup timeouts counted');
    // bounded: lookups beyond rdns.max_inflight are refused (counted), not queued
    expect(await metricValue(base, /^falco_companion_rdns_lookups_total\{result="refused"\} (\d+)$/)).toBeGreaterThan(0);
    // no alert waited for the 2 s timeout: every enrichment finished well under it (1 s leaves room for a busy machine)
    const enriched = await metricValue(base, /^falco_companion_enrich_duration_seconds_count (\d+)$/);
    expect(enriched).toBeGreaterThanOrEqual(l.acked.length);
    expect(await metricValue(base, /^falco_companion_enrich_duration_seconds_bucket\{le="1"\} (\d+)$/)).toBe(enriched);
    // every delivered alert of the load carries its destination class and no name: the lookup was not waited for
    const loadAlerts = sk.accepted.filter((x) => x.raw.includes('203.0.113.'));
    expect(loadAlerts.length).toBeGreaterThanOrEqual(l.acked.length);
    let classified = 0;
    for (const a of loadAlerts) {
      const f = a.parsed['output_fields'];
      if (!isJsonObject(f)) throw new Error('no output_fields');
      expect(f['companion.dest.rdns']).toBeUndefined();
      // classified, or (enrichment budget overrun on a busy machine) marked as not enriched
      if (f['companion.dest.class'] === 'reserved') classified++;
      else expect(f['companion.enrich_error'], a.raw.slice(0, 300)).toBeDefined();
    }
    expect(classified).toBeGreaterThan(loadAlerts.length / 2);
    expect(sk.accepted.some((a) => /rdns (slow|timeout|E[A-Z]+)/i.test(a.raw)), 'the slow lookup is named on the alert').toBe(true);
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
