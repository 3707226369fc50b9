/** The egress enricher's synchronous fast path (enrichSync): same answer as enrich, no side effect when it must wait. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import { systemClock } from '../../src/clock.js';
import { defaults } from '../../src/config/dsl.js';
import { egressEnrichSection } from '../../src/config/sections/enrich-egress.js';
import { EgressEnricher, type EgressConfig } from '../../src/enrich/egress.js';
import { ReverseDns, type PtrResolver } from '../../src/enrich/rdns.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';

function alert(ip: string, time: string): Alert {
  return createAlert({
    time,
    rule: 'Outbound connection',
    priority: 'Notice',
    outputFields: { 'evt.type': 'connect', 'fd.sip': ip, 'fd.sport': 443, 'container.id': 'abcdef123456', 'container.image.repository': 'ghcr.io/acme/web' },
    origin: { kind: 'test', component: 'test' },
  });
}

let dir = '';
let db: Db | null = null;
let egress: EgressEnricher | null = null;
afterEach(async () => {
  await egress?.stop(Date.now() + 1000);
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('EgressEnricher enrichSync', () => {
  it('waits for uncached reverse DNS without touching the baseline, then answers hits synchronously', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-egress-sync-'));
    db = openStateDb(dir);
    const metrics = new Metrics({ collectDefault: false });
    let answer: ((names: string[]) => void) | null = null;
    const resolver: PtrResolver = { setServers: () => undefined, reverse: () => new Promise<string[]>((r) => (answer = r)), cancel: () => undefined };
    const base = defaults(egressEnrichSection) as unknown as EgressConfig;
    const config: EgressConfig = { ...base, rdns: { ...base.rdns, wait: 5_000 } };
    const rdns = new ReverseDns({ servers: [], timeoutMs: 5_000, cacheSize: 100, positiveTtlMs: 60_000, negativeTtlMs: 60_000, errorTtlMs: 1_000, maxInflight: 10, clock: systemClock, metrics, logger: silentLogger(), newResolver: () => resolver });
    egress = new EgressEnricher({ config, db, logger: silentLogger(), metrics, clock: systemClock, resolver: rdns });
    await egress.start();

    const a1 = alert('93.184.216.34', '2026-01-01T00:00:00.000000000Z');
    expect(egress.enrichSync(a1)).toBeUndefined(); // rDNS not cached: must wait
    expect(egress.baseline?.size).toBe(0); // and nothing was recorded
    const pending = egress.enrich(a1, new AbortController().signal);
    await new Promise((r) => setTimeout(r, 10));
    expect(egress.baseline?.size).toBe(1); // the baseline is recorded before the lookup is awaited
    (answer as ((names: string[]) => void) | null)?.(['edge.example.net.']);
    const slow = await pending;
    expect(slow).toMatchObject({ 'dest.ip': '93.184.216.34', 'dest.class': 'public', 'dest.port': 443, 'dest.rdns': 'edge.example.net', 'dest.new_for_image': true });

    const a2 = alert('93.184.216.34', '2026-01-01T00:00:05.000000000Z');
    const fast = egress.enrichSync(a2);
    expect(fast).toEqual({ ...slow, 'dest.new_for_image': false });
    // A destination rDNS is not asked about (cluster-internal classes) is answered synchronously as well.
    expect(egress.enrichSync(alert('127.0.0.1', '2026-01-01T00:00:06.000000000Z'))).toMatchObject({ 'dest.class': 'loopback' });
    expect(await metrics.text()).toMatch(/falco_companion_rdns_lookups_total\{result="hit"\} 1/);
  });
});
