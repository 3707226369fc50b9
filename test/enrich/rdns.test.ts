import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { ReverseDns, type ReverseDnsOptions } from '../../src/enrich/rdns.js';
import { Dnsmasq, dnsmasqAvailable, silentDnsServer } from '../support/dnsmasq.js';
import { until } from '../support/wait.js';

const HAVE = dnsmasqAvailable();

const HOSTS = ['203.0.113.10 web.example.test', '198.51.100.20 api.example.test', '192.0.2.30 c2.bad.test', '192.0.2.31 lru1.test', '192.0.2.32 lru2.test', '192.0.2.33 lru3.test', '192.0.2.40 ttl.test', ''].join('\n');

async function metric(m: Metrics, result: string): Promise<number> {
  const text = await m.text();
  const line = text.split('\n').find((l) => l.startsWith(`falco_companion_rdns_lookups_total{result="${result}"}`));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe.skipIf(!HAVE)(HAVE ? 'ReverseDns against a real dnsmasq' : 'ReverseDns against a real dnsmasq (SKIPPED: dnsmasq not installed, Debian dnsmasq-base)', () => {
  const dns = new Dnsmasq(HOSTS);
  beforeAll(async () => {
    await dns.start();
  });
  afterAll(async () => {
    await dns.dispose();
  });

  const make = (over: Partial<ReverseDnsOptions> = {}): { r: ReverseDns; m: Metrics; clock: ManualClock } => {
    const m = new Metrics({ collectDefault: false });
    const clock = new ManualClock(1_000_000);
    const r = new ReverseDns({
      servers: [dns.server],
      timeoutMs: 2000,
      cacheSize: 100,
      positiveTtlMs: 60_000,
      negativeTtlMs: 10_000,
      errorTtlMs: 1000,
      maxInflight: 16,
      clock,
      metrics: m,
      logger: silentLogger(),
      ...over,
    });
    return { r, m, clock };
  };

  it('answers a PTR from the hosts file and caches it', async () => {
    const { r, m } = make();
    expect(await r.lookup('203.0.113.10')).toEqual({ kind: 'name', name: 'web.example.test' });
    expect(r.cached('203.0.113.10')).toEqual({ kind: 'name', name: 'web.example.test' });
    expect(await r.lookup('203.0.113.10')).toEqual({ kind: 'name', name: 'web.example.test' });
    expect(await metric(m, 'hit')).toBe(1);
    expect(dns.queries('10.113.0.203.in-addr.arpa')).toBe(1);
  });

  it('caches a negative answer (ENOTFOUND) and re-asks after the negative TTL', async () => {
    const { r, m, clock } = make();
    expect(await r.lookup('198.51.100.99')).toEqual({ kind: 'none' });
    expect(await r.lookup('198.51.100.99')).toEqual({ kind: 'none' });
    expect(await metric(m, 'not_found')).toBe(1);
    expect(dns.queries('99.100.51.198.in-addr.arpa')).toBe(1);
    clock.advance(10_001);
    expect(r.cached('198.51.100.99')).toBeUndefined();
    expect(await r.lookup('198.51.100.99')).toEqual({ kind: 'none' });
    expect(await metric(m, 'not_found')).toBe(2);
  });

  it('positive entries expire after their TTL', async () => {
    const { r, clock } = make({ positiveTtlMs: 5000 });
    expect(await r.lookup('192.0.2.40')).toEqual({ kind: 'name', name: 'ttl.test' });
    clock.advance(4999);
    expect(r.cached('192.0.2.40')).toBeDefined();
    clock.advance(2);
    expect(r.cached('192.0.2.40')).toBeUndefined();
  });

  it('coalesces concurrent lookups of one address into one query', async () => {
    const { r, m } = make();
    const before = dns.queries('20.100.51.198.in-addr.arpa');
    const all = await Promise.all(Array.from({ length: 10 }, () => r.lookup('198.51.100.20')));
    for (const a of all) expect(a).toEqual({ kind: 'name', name: 'api.example.test' });
    expect(await metric(m, 'coalesced')).toBe(9);
    // dnsmasq logs each query it receives: exactly one for the ten lookups.
    await until(() => dns.queries('20.100.51.198.in-addr.arpa') !== before, 2000, 'the query in the dnsmasq log', 20);
    expect(dns.queries('20.100.51.198.in-addr.arpa') - before).toBe(1);
  });

  it('keeps the cache within cache_size (LRU, evictions counted)', async () => {
    const { r, m } = make({ cacheSize: 2 });
    await r.lookup('192.0.2.31');
    await r.lookup('192.0.2.32');
    r.cached('192.0.2.31'); // touch: 192.0.2.32 is now the least recently used
    await r.lookup('192.0.2.33');
    expect(r.size).toBe(2);
    expect(r.cached('192.0.2.32')).toBeUndefined();
    expect(r.cached('192.0.2.31')).toEqual({ kind: 'name', name: 'lru1.test' });
    expect(await m.text()).toMatch(/falco_companion_rdns_cache_evictions_total 1/);
  });

  it('IPv6 reverse lookups go through too (not in the hosts file: none)', async () => {
    const { r } = make();
    expect(await r.lookup('2001:db8::99')).toEqual({ kind: 'none' });
  });
});

describe('ReverseDns timeouts and aborts (a UDP server that never answers)', () => {
  it('times out hard, cancels the query and caches the error briefly', async () => {
    const silent = await silentDnsServer();
    try {
      const m = new Metrics({ collectDefault: false });
      const clock = new ManualClock(0);
      const r = new ReverseDns({ servers: [silent.server], timeoutMs: 150, cacheSize: 10, positiveTtlMs: 1000, negativeTtlMs: 1000, errorTtlMs: 500, maxInflight: 4, clock, metrics: m, logger: silentLogger() });
      const t0 = Date.now();
      expect(await r.lookup('203.0.113.77')).toEqual({ kind: 'error', error: 'timeout' });
      expect(Date.now() - t0).toBeLessThan(5000); // the hard timeout, not c-ares' retries
      expect(silent.received()).toBeGreaterThanOrEqual(1);
      expect(r.inflightCount).toBe(0);
      expect(r.cached('203.0.113.77')).toEqual({ kind: 'error', error: 'timeout' });
      clock.advance(501);
      expect(r.cached('203.0.113.77')).toBeUndefined();
      expect(await metric(m, 'timeout')).toBe(1);
    } finally {
      await silent.close();
    }
  });

  it('an abort stops the wait, the lookup goes on in the background and fills the cache', async () => {
    const silent = await silentDnsServer();
    try {
      const r = new ReverseDns({ servers: [silent.server], timeoutMs: 300, cacheSize: 10, positiveTtlMs: 1000, negativeTtlMs: 1000, errorTtlMs: 60_000, maxInflight: 1, clock: new ManualClock(0), metrics: new Metrics({ collectDefault: false }), logger: silentLogger() });
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 20);
      expect(await r.lookup('203.0.113.78', ac.signal)).toEqual({ kind: 'pending' });
      expect(r.inflightCount).toBe(1);
      // max_inflight is 1: another address is refused, not queued.
      expect(await r.lookup('203.0.113.79')).toEqual({ kind: 'error', error: 'too many lookups in flight' });
      const aborted = new AbortController();
      aborted.abort();
      expect(await r.lookup('203.0.113.78', aborted.signal)).toEqual({ kind: 'pending' });
      await r.close();
      expect(r.inflightCount).toBe(0);
      expect(r.cached('203.0.113.78')).toEqual({ kind: 'error', error: 'timeout' });
    } finally {
      await silent.close();
    }
  });
});
