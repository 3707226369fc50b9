import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reader } from 'maxmind';
import maxmind from 'maxmind';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AsnDb } from '../../src/enrich/asn.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MmdbWriter } from '../support/mmdb-writer.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-asn-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function asnDb(): Buffer {
  return new MmdbWriter({ databaseType: 'GeoLite2-ASN' })
    .insert('8.8.8.0/24', { autonomous_system_number: 15169, autonomous_system_organization: 'GOOGLE' })
    .insert('1.0.0.0/8', { autonomous_system_number: 1, autonomous_system_organization: 'ONE-WIDE' })
    .insert('1.1.1.0/24', { autonomous_system_number: 13335, autonomous_system_organization: 'CLOUDFLARENET' })
    .insert('2606:4700::/32', { autonomous_system_number: 13335, autonomous_system_organization: 'CLOUDFLARENET' })
    .insert('203.0.113.7', { asn: 'AS64500', as_name: 'Example Bad Hosting' })
    .build();
}

describe('MmdbWriter (read back with maxmind)', () => {
  for (const recordSize of [24, 28] as const) {
    it(`IPv6 tree with IPv4 at ::/96, ${recordSize}-bit records`, () => {
      const buf = new MmdbWriter({ recordSize, databaseType: 'GeoLite2-ASN' })
        .insert('8.8.8.0/24', { autonomous_system_number: 15169, autonomous_system_organization: 'GOOGLE' })
        .insert('1.0.0.0/8', { autonomous_system_number: 1, autonomous_system_organization: 'ONE-WIDE' })
        .insert('1.1.1.0/24', { autonomous_system_number: 13335, autonomous_system_organization: 'CLOUDFLARENET' })
        .insert('1.1.0.0/16', { autonomous_system_number: 2, autonomous_system_organization: 'SIXTEEN' }) // less specific after more specific
        .insert('2606:4700::/32', { autonomous_system_number: 13335, autonomous_system_organization: 'CLOUDFLARENET', flags: [true, 1.5, 70000n] })
        .build();
      const r = new Reader<Record<string, unknown>>(buf);
      expect(r.metadata.ipVersion).toBe(6);
      expect(r.metadata.recordSize).toBe(recordSize);
      expect(r.metadata.databaseType).toBe('GeoLite2-ASN');
      expect(r.get('8.8.8.8')).toEqual({ autonomous_system_number: 15169, autonomous_system_organization: 'GOOGLE' });
      expect(r.get('8.8.9.8')).toBeNull();
      expect(r.get('1.1.1.1')?.['autonomous_system_number']).toBe(13335);
      expect(r.get('1.1.2.1')?.['autonomous_system_number']).toBe(2);
      expect(r.get('1.2.3.4')?.['autonomous_system_number']).toBe(1);
      expect(r.get('::ffff:8.8.8.8')?.['autonomous_system_number']).toBe(15169);
      expect(r.getWithPrefixLength('8.8.8.8')[1]).toBe(24);
      const v6 = r.get('2606:4700:4700::1111');
      expect(v6?.['autonomous_system_number']).toBe(13335);
      expect(v6?.['flags']).toEqual([true, 1.5, 70000n]); // uint64 comes back as a bigint
      expect(r.get('2001:db8::1')).toBeNull();
    });
  }

  it('pure IPv4 tree (ip_version 4)', () => {
    const buf = new MmdbWriter({ ipVersion: 4 }).insert('10.0.0.0/8', { asn: 65000, as_org: 'ten' }).insert('10.1.2.3', { asn: 65001, as_org: 'host' }).build();
    const r = new Reader<Record<string, unknown>>(buf);
    expect(r.metadata.ipVersion).toBe(4);
    expect(r.get('10.1.2.3')).toEqual({ asn: 65001, as_org: 'host' });
    expect(r.get('10.9.9.9')).toEqual({ asn: 65000, as_org: 'ten' });
    expect(r.get('11.0.0.1')).toBeNull();
  });

  it('long strings and big maps use the extended size encodings', () => {
    const long = 'x'.repeat(70_000);
    const mid = 'y'.repeat(300);
    const big: Record<string, string> = {};
    for (let i = 0; i < 40; i++) big[`k${i}`] = `v${i}`;
    const r = new Reader<Record<string, unknown>>(new MmdbWriter().insert('9.9.9.0/24', { long, mid, big }).build());
    const got = r.get('9.9.9.9');
    expect(got?.['long']).toBe(long);
    expect(got?.['mid']).toBe(mid);
    expect(got?.['big']).toEqual(big);
  });

  it('maxmind.open reads the file from disk', async () => {
    const p = join(dir, 'asn.mmdb');
    writeFileSync(p, asnDb());
    const r = await maxmind.open<Record<string, unknown>>(p);
    expect(r.get('1.1.1.1')?.['autonomous_system_organization']).toBe('CLOUDFLARENET');
  });
});

describe('AsnDb', () => {
  it('looks up GeoLite2 and asn/as_name style records', () => {
    const p = join(dir, 'asn.mmdb');
    writeFileSync(p, asnDb());
    const db = new AsnDb({ path: p, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    expect(db.lookup('8.8.8.8')).toBeNull(); // not loaded yet
    expect(db.checkReload(true)).toBe(true);
    expect(db.loaded).toBe(true);
    expect(db.lookup('8.8.8.8')).toEqual({ asn: 15169, org: 'GOOGLE' });
    expect(db.lookup('2606:4700::6810:84e5')).toEqual({ asn: 13335, org: 'CLOUDFLARENET' });
    expect(db.lookup('203.0.113.7')).toEqual({ asn: 64500, org: 'Example Bad Hosting' });
    expect(db.lookup('192.0.2.1')).toBeNull();
    expect(db.lookup('not an ip')).toBeNull();
    expect(db.checkReload()).toBe(false); // unchanged
  });

  it('reloads when the file changes and keeps old data when the new file is broken', async () => {
    const p = join(dir, 'asn.mmdb');
    writeFileSync(p, asnDb());
    const metrics = new Metrics({ collectDefault: false });
    const db = new AsnDb({ path: p, logger: silentLogger(), metrics });
    db.checkReload(true);
    writeFileSync(p, new MmdbWriter().insert('8.8.8.0/24', { autonomous_system_number: 99, autonomous_system_organization: 'CHANGED' }).build());
    utimesSync(p, new Date(), new Date(Date.now() + 5000));
    expect(db.checkReload()).toBe(true);
    expect(db.lookup('8.8.8.8')).toEqual({ asn: 99, org: 'CHANGED' });
    writeFileSync(p, Buffer.from('garbage, not an mmdb'));
    utimesSync(p, new Date(), new Date(Date.now() + 10_000));
    expect(db.checkReload()).toBe(false);
    expect(db.lookup('8.8.8.8')).toEqual({ asn: 99, org: 'CHANGED' });
    const text = await metrics.text();
    expect(text).toMatch(/falco_companion_asn_mmdb_loads_total\{result="error"\} 1/);
    expect(text).toMatch(/falco_companion_asn_mmdb_loads_total\{result="ok"\} 2/);
  });

  it('a missing file is an error at start when required, otherwise off', () => {
    const db = new AsnDb({ path: join(dir, 'nope.mmdb'), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    expect(() => db.checkReload(true)).toThrow(/E_ASN_MMDB|nope\.mmdb/);
    expect(db.checkReload(false)).toBe(false);
    expect(db.lookup('8.8.8.8')).toBeNull();
  });
});
