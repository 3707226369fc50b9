import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { alertFromJson, createAlert, type Alert, type FieldValue } from '../../src/alert.js';
import { systemClock } from '../../src/clock.js';
import { defaults } from '../../src/config/dsl.js';
import { egressEnrichSection } from '../../src/config/sections/enrich-egress.js';
import { EgressEnricher, destinationOf, type EgressConfig } from '../../src/enrich/egress.js';
import { formatIp } from '../../src/net/address.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Dnsmasq, dnsmasqAvailable, silentDnsServer } from '../support/dnsmasq.js';
import { MmdbWriter } from '../support/mmdb-writer.js';

type DeepPartial<T> = { -readonly [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

function config(over: DeepPartial<EgressConfig> = {}): EgressConfig {
  const base = defaults(egressEnrichSection) as unknown as EgressConfig;
  return {
    ...base,
    ...over,
    rdns: { ...base.rdns, ...(over.rdns ?? {}) },
    intel: { ...base.intel, ...(over.intel ?? {}) },
    baseline: { ...base.baseline, ...(over.baseline ?? {}) },
  } as EgressConfig;
}

function alert(fields: Record<string, FieldValue>, time = '2026-01-01T00:00:00.000000000Z'): Alert {
  return createAlert({ time, rule: 'Outbound connection', priority: 'Notice', outputFields: { 'container.id': 'abcdef123456', 'container.image.repository': 'ghcr.io/acme/web', 'container.image.tag': '1.0', ...fields }, origin: { kind: 'test', component: 'test' } });
}

const never = new AbortController().signal;
let dir: string;
let db: Db;
const enrichers: EgressEnricher[] = [];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-egress-'));
  db = openStateDb(join(dir, 'state'));
});
afterEach(async () => {
  for (const e of enrichers.splice(0)) await e.stop(Date.now() + 2000);
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

async function enricher(c: EgressConfig, withDb = true): Promise<EgressEnricher> {
  const e = new EgressEnricher({ config: c, db: withDb ? db : null, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock });
  enrichers.push(e);
  await e.start();
  return e;
}

describe('destination extraction (the fd.name direction trap)', () => {
  it('reads IPv6 tuples with and without brackets, and no peer from a unix socket', () => {
    const b = destinationOf(alert({ 'evt.type': 'connect', 'fd.name': '[2001:db8::1]:5000->[2606:4700::1]:443' }));
    expect(b && [formatIp(b.ip), b.port]).toEqual(['2606:4700::1', 443]);
    const n = destinationOf(alert({ 'evt.type': 'connect', 'fd.name': '2001:db8::1:5000->2606:4700::1:443' }));
    expect(n && [formatIp(n.ip), n.port]).toEqual(['2606:4700::1', 443]);
    // What a real Falco printed for a connect to the Docker socket (falco-reference/recorded/README.md).
    expect(destinationOf(alert({ 'evt.type': 'connect', 'fd.name': 'ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock' }))).toBeNull();
  });

  it('IPv4-mapped IPv6 is the IPv4 address, written either way', () => {
    for (const sip of ['::ffff:1.2.3.4', '::ffff:0102:0304']) {
      const d = destinationOf(alert({ 'fd.sip': sip, 'fd.sport': 443 }));
      expect(d && formatIp(d.ip), sip).toBe('1.2.3.4');
    }
  });

  it('outbound: the server of the tuple, not fd.rip/fd.rport', () => {
    // A connect where Falco's rport/rip name the local side: the tuple is authoritative.
    const d = destinationOf(alert({ 'evt.type': 'connect', 'fd.name': '10.42.1.30:42244->198.51.100.7:443', 'fd.rip': '10.42.1.30', 'fd.rport': 42244 }));
    expect(d && formatIp(d.ip)).toBe('198.51.100.7');
    expect(d?.port).toBe(443);
    expect(d?.direction).toBe('outbound');
  });

  it('fd.sip/fd.sport win; accept takes the client; fd.rip is the last resort', () => {
    const s = destinationOf(alert({ 'fd.sip': '192.0.2.9', 'fd.sport': 8443, 'fd.name': '10.0.0.1:1->192.0.2.10:80', 'fd.sip.name': 'API.example.' }));
    expect(s && [formatIp(s.ip), s.port, s.domain]).toEqual(['192.0.2.9', 8443, 'api.example']);
    const a = destinationOf(alert({ 'evt.type': 'accept4', 'fd.name': '203.0.113.5:5555->10.0.0.2:22' }));
    expect(a && [formatIp(a.ip), a.port, a.direction]).toEqual(['203.0.113.5', 5555, 'inbound']);
    const r = destinationOf(alert({ 'fd.rip': '::ffff:8.8.4.4', 'fd.rport': 53, 'fd.name': '<NA>' }));
    expect(r && [formatIp(r.ip), r.port]).toEqual(['8.8.4.4', 53]);
    expect(destinationOf(alert({ 'fd.name': '/root/kubectl' }))).toBeNull();
    expect(destinationOf(alert({ 'proc.name': 'bash' }))).toBeNull();
  });
});

describe('EgressEnricher', () => {
  it('skips non-network alerts quickly and classifies cluster traffic', async () => {
    const e = await enricher(config({ cluster_pod_cidrs: ['10.42.0.0/16'], cluster_service_cidrs: ['10.43.0.0/16'], rdns: { enabled: false } }));
    expect(await e.enrich(alert({ 'fd.name': '/etc/shadow' }), never)).toEqual({});
    const out = await e.enrich(alert({ 'fd.name': '10.42.1.30:42244->10.43.0.1:443' }), never);
    expect(out).toEqual({ 'dest.ip': '10.43.0.1', 'dest.port': 443, 'dest.class': 'cluster_service', 'dest.new_for_image': true, 'dest.learning': true });
    const meta = await e.enrich(alert({ 'fd.sip': '169.254.169.254', 'fd.sport': 80 }), never);
    expect(meta['dest.class']).toBe('cloud_metadata');
  });

  it('host processes get no baseline keys; a second alert is not new', async () => {
    const e = await enricher(config({ rdns: { enabled: false } }));
    const host = await e.enrich(alert({ 'container.id': 'host', 'fd.sip': '8.8.8.8', 'fd.sport': 53 }), never);
    expect(host).toEqual({ 'dest.ip': '8.8.8.8', 'dest.port': 53, 'dest.class': 'public' });
    expect((await e.enrich(alert({ 'fd.sip': '8.8.8.8', 'fd.sport': 53 }), never))['dest.new_for_image']).toBe(true);
    expect((await e.enrich(alert({ 'fd.sip': '8.8.8.8', 'fd.sport': 53 }, '2026-01-01T05:00:00Z'), never))).toMatchObject({ 'dest.new_for_image': false, 'dest.learning': false });
    expect((await e.enrich(alert({ 'fd.sip': '8.8.4.4', 'fd.sport': 53 }, '2026-01-01T05:00:01Z'), never))).toMatchObject({ 'dest.new_for_image': true, 'dest.learning': false });
  });

  it('a slow resolver: the alert goes on within the wait with enrich_error; loopback is never looked up', async () => {
    const silent = await silentDnsServer();
    try {
      const e = await enricher(config({ rdns: { servers: [silent.server], timeout: 300, wait: 30, classes: ['public', 'loopback'] } }));
      const t0 = Date.now();
      const out = await e.enrich(alert({ 'fd.sip': '192.0.2.200', 'fd.sport': 443 }), never);
      expect(out['dest.class']).toBe('reserved'); // not a looked-up class
      expect(out['enrich_error']).toBeUndefined();
      const pub = await e.enrich(alert({ 'fd.sip': '1.0.0.1', 'fd.sport': 443 }), never);
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(pub).toMatchObject({ 'dest.ip': '1.0.0.1', 'dest.class': 'public', enrich_error: 'egress: rdns slow (pending)' });
      const before = silent.received();
      const lo = await e.enrich(alert({ 'fd.sip': '127.0.0.1', 'fd.sport': 8080 }), never);
      expect(lo['dest.class']).toBe('loopback');
      expect(lo['enrich_error']).toBeUndefined();
      expect(silent.received()).toBe(before);
      // The background lookup times out and its error is cached: the next alert says so at once.
      await new Promise((r) => setTimeout(r, 600));
      expect((await e.enrich(alert({ 'fd.sip': '1.0.0.1', 'fd.sport': 443 }), never))['enrich_error']).toBe('egress: rdns timeout');
    } finally {
      await silent.close();
    }
  });

  it('an already aborted budget still returns the synchronous keys', async () => {
    const silent = await silentDnsServer();
    try {
      const e = await enricher(config({ rdns: { servers: [silent.server], timeout: 200, wait: 5000 } }));
      const ac = new AbortController();
      ac.abort();
      const out = await e.enrich(alert({ 'fd.sip': '9.9.9.9', 'fd.sport': 853 }), ac.signal);
      expect(out).toMatchObject({ 'dest.ip': '9.9.9.9', 'dest.class': 'public', enrich_error: 'egress: rdns slow (pending)' });
    } finally {
      await silent.close();
    }
  });

  it('fails at start when a configured MMDB or intel list cannot be read', async () => {
    const e1 = new EgressEnricher({ config: config({ asn_mmdb: join(dir, 'missing.mmdb') }), db: null, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock });
    await expect(e1.start()).rejects.toThrow(/missing\.mmdb/);
    const e2 = new EgressEnricher({ config: config({ intel: { lists: [{ name: 'x', path: join(dir, 'missing.txt') }] } }), db: null, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock });
    await expect(e2.start()).rejects.toThrow(/intel lists not readable: x/);
  });

  const ref = join(process.cwd(), '../shared/falco-reference/falco-alerts.jsonl');
  it.skipIf(!existsSync(ref))(existsSync(ref) ? 'real Falco alerts: connection tuples give the server side' : 'real Falco alerts (SKIPPED: ../shared/falco-reference absent)', async () => {
    const e = await enricher(config({ rdns: { enabled: false }, cluster_service_cidrs: ['10.43.0.0/16', '10.96.0.0/12'] }));
    const lines = readFileSync(ref, 'utf8').split('\n').filter((l) => l.includes('->'));
    let seen = 0;
    for (const line of lines) {
      let a: Alert;
      try {
        a = alertFromJson(parse(line), { kind: 'test', component: 'test' });
      } catch {
        continue;
      }
      const name = a.outputFields?.['fd.name'];
      if (typeof name !== 'string' || !name.includes('->')) continue;
      const out = await e.enrich(a, never);
      expect(out['dest.ip']).toBe(name.split('->')[1]?.replace(/:\d+$/, ''));
      expect(out['dest.class']).toBe('cluster_service');
      expect(out['dest.port']).toBe(443);
      seen++;
    }
    expect(seen).toBeGreaterThanOrEqual(3);
  });
});

describe.skipIf(!dnsmasqAvailable())(dnsmasqAvailable() ? 'EgressEnricher end to end (dnsmasq, MMDB, intel)' : 'EgressEnricher end to end (SKIPPED: dnsmasq not installed)', () => {
  const dns = new Dnsmasq('93.184.216.34 evil-host.example\n');
  beforeAll(async () => {
    await dns.start();
  });
  afterAll(async () => {
    await dns.dispose();
  });

  it('an intel-listed public IP gets class, list names, ASN, reverse DNS and baseline keys', async () => {
    const mmdb = join(dir, 'asn.mmdb');
    writeFileSync(mmdb, new MmdbWriter({ databaseType: 'GeoLite2-ASN' }).insert('93.184.216.0/24', { autonomous_system_number: 15133, autonomous_system_organization: 'EDGECAST' }).build());
    const ips = join(dir, 'ips.txt');
    writeFileSync(ips, '# known C2\n93.184.216.34\n');
    const domains = join(dir, 'domains.txt');
    writeFileSync(domains, '*.unrelated.example\nevil-host.example\n');
    const e = await enricher(
      config({
        asn_mmdb: mmdb,
        rdns: { servers: [dns.server], wait: 3000, timeout: 2000 },
        intel: { lists: [{ name: 'c2-ips', path: ips }, { name: 'bad-domains', path: domains }] },
      }),
    );
    const out = await e.enrich(alert({ 'evt.type': 'connect', 'fd.name': '172.17.0.9:43812->93.184.216.34:443' }), never);
    expect(out).toEqual({
      'dest.ip': '93.184.216.34',
      'dest.port': 443,
      'dest.class': 'public',
      'dest.asn': 15133,
      'dest.as_org': 'EDGECAST',
      'dest.rdns': 'evil-host.example',
      'dest.intel': 'c2-ips,bad-domains',
      'dest.new_for_image': true,
      'dest.learning': true,
    });
    for (const v of Object.values(out)) expect(String(v).length).toBeLessThan(512);
    // The second alert answers reverse DNS from the cache: dnsmasq saw one query.
    const again = await e.enrich(alert({ 'fd.sip': '93.184.216.34', 'fd.sport': 443 }), never);
    expect(again['dest.rdns']).toBe('evil-host.example');
    expect(again['dest.new_for_image']).toBe(false);
    expect(dns.queries('34.216.184.93.in-addr.arpa')).toBe(1);
  });
});
