import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CidrMap, CidrSet, IpClassifier, classifyIp, formatIp, parseCidr, parseIp, type IpClass } from '../../src/enrich/ip-class.js';

describe('parseIp / formatIp', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::1', '::1'],
    ['[2001:DB8::1]', '2001:db8::1'],
    ['::ffff:8.8.8.8', '8.8.8.8'],
    ['::ffff:0808:0808', '8.8.8.8'],
    ['fe80::1%eth0', 'fe80::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
  ])('%s → %s', (a, b) => {
    const ip = parseIp(a);
    expect(ip).not.toBeNull();
    expect(formatIp(ip!)).toBe(b);
  });

  it.each(['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1:2:3:4:5:6:7:8:9', '1::2::3', 'gg::1', '::ffff:1.2.3.256', 'example.com', '1.2.3.4:80'])('rejects %j', (s) => {
    expect(parseIp(s)).toBeNull();
  });
});

const table: [string, IpClass][] = [
  ['127.0.0.1', 'loopback'],
  ['127.255.0.9', 'loopback'],
  ['::1', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['10.1.2.3', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.1', 'public'],
  ['192.168.1.1', 'private'],
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  ['100.128.0.1', 'public'],
  ['169.254.169.254', 'cloud_metadata'],
  ['::ffff:169.254.169.254', 'cloud_metadata'],
  ['fd00:ec2::254', 'cloud_metadata'],
  ['169.254.1.1', 'link_local'],
  ['fe80::1', 'link_local'],
  ['febf::1', 'link_local'],
  ['224.0.0.251', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['ff02::1', 'multicast'],
  ['fc00::1', 'unique_local'],
  ['fd12:3456::1', 'unique_local'],
  ['0.0.0.0', 'reserved'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'reserved'],
  ['198.18.0.1', 'reserved'],
  ['198.19.255.255', 'reserved'],
  ['198.51.100.1', 'reserved'],
  ['203.0.113.1', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'reserved'],
  ['::', 'reserved'],
  ['2001:db8::1', 'reserved'],
  ['100::1', 'reserved'],
  ['4000::1', 'reserved'], // outside 2000::/3: unassigned
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001::200e', 'public'],
  ['64:ff9b::8.8.8.8', 'public'], // NAT64: the embedded IPv4 decides
  ['64:ff9b::10.0.0.1', 'private'],
];

describe('classifyIp', () => {
  it.each(table)('%s is %s', (ip, cls) => {
    expect(classifyIp(ip)).toBe(cls);
  });

  it('cluster pod and service CIDRs are checked first', () => {
    const c = new IpClassifier({ podCidrs: ['10.42.0.0/16', 'fd00:10:244::/56'], serviceCidrs: ['10.43.0.0/16', '100.64.0.0/24'] });
    expect(c.classify('10.42.1.30')).toBe('cluster_pod');
    expect(c.classify('10.43.0.1')).toBe('cluster_service');
    expect(c.classify('10.44.0.1')).toBe('private');
    expect(c.classify('100.64.0.10')).toBe('cluster_service');
    expect(c.classify('100.64.1.10')).toBe('cgnat');
    expect(c.classify('fd00:10:244::5')).toBe('cluster_pod');
    expect(c.classify('::ffff:10.42.0.5')).toBe('cluster_pod');
    expect(c.classify('nonsense')).toBeNull();
  });
});

describe('parseCidr and CidrMap', () => {
  it('clears host bits and rejects bad prefixes', () => {
    expect(parseCidr('10.1.2.3/8')).toEqual({ v: 4, net: 0x0a000000, prefix: 8 });
    expect(parseCidr('1.2.3.4')).toEqual({ v: 4, net: 0x01020304, prefix: 32 });
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ v: 4, net: 0x0a000000, prefix: 8 });
    expect(parseCidr('2001:db8::1/32')).toEqual({ v: 6, net: 0x20010db8n << 96n, prefix: 32 });
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/a', 'x/8', '']) expect(parseCidr(bad)).toBeNull();
  });

  it('longest prefix wins', () => {
    const m = new CidrMap<string>();
    m.set('10.0.0.0/8', 'eight');
    m.set('10.1.0.0/16', 'sixteen');
    m.set('10.1.2.3', 'host');
    m.set('::/0', 'all6');
    expect(m.get('10.1.2.3')).toBe('host');
    expect(m.get('10.1.2.4')).toBe('sixteen');
    expect(m.get('10.2.0.0')).toBe('eight');
    expect(m.get('11.0.0.0')).toBeUndefined();
    expect(m.get('2001:db8::1')).toBe('all6');
    expect(m.size).toBe(4);
    expect(new CidrSet(['0.0.0.0/0']).has('203.0.113.9')).toBe(true);
  });

  // Reference: the naive "compare the first `prefix` bits" definition, over BigInt bit strings.
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
  const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
  const bits = (s: string): string => {
    const ip = parseIp(s)!;
    return ip.v === 4 ? ip.n.toString(2).padStart(32, '0') : ip.n.toString(2).padStart(128, '0');
  };

  it('matches the reference for random IPv4 and IPv6 CIDRs (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(v4, fc.nat(32), v4), fc.tuple(v6, fc.nat(128), v6)), ([net, prefix, probe]) => {
        const set = new CidrSet([`${net}/${prefix}`]);
        const a = bits(net);
        const b = bits(probe);
        const expected = parseIp(probe)!.v === parseIp(net)!.v && a.slice(0, prefix) === b.slice(0, prefix);
        // IPv4-looking IPv6 (::ffff:...) is normalised; the generators never produce it in practice.
        if (parseIp(net)!.v !== (net.includes(':') ? 6 : 4)) return;
        expect(set.has(probe)).toBe(expected);
        // A probe inside the network by construction always matches.
        expect(set.has(net)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('formatIp(parseIp(x)) round-trips (property)', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), (s) => {
        const ip = parseIp(s)!;
        expect(parseIp(formatIp(ip))).toEqual(ip);
      }),
      { numRuns: 500 },
    );
  });

  it('classification of random IPv4 agrees with a naive range table (property)', () => {
    const ranges: [number, number, IpClass][] = [
      [0x7f000000, 8, 'loopback'],
      [0x0a000000, 8, 'private'],
      [0xac100000, 12, 'private'],
      [0xc0a80000, 16, 'private'],
      [0x64400000, 10, 'cgnat'],
      [0xa9fe0000, 16, 'link_local'],
      [0xe0000000, 4, 'multicast'],
      [0x00000000, 8, 'reserved'],
      [0xc0000000, 24, 'reserved'],
      [0xc0000200, 24, 'reserved'],
      [0xc0586300, 24, 'reserved'],
      [0xc6120000, 15, 'reserved'],
      [0xc6336400, 24, 'reserved'],
      [0xcb007100, 24, 'reserved'],
      [0xf0000000, 4, 'reserved'],
    ];
    const ref = (n: number): IpClass => {
      if (n === 0xa9fea9fe) return 'cloud_metadata';
      for (const [net, p, c] of ranges) if (Math.floor(n / 2 ** (32 - p)) === Math.floor(net / 2 ** (32 - p))) return c;
      return 'public';
    };
    const c = new IpClassifier();
    fc.assert(
      fc.property(fc.nat(0xffffffff), (n) => {
        expect(c.classify({ v: 4, n })).toBe(ref(n));
      }),
      { numRuns: 2000 },
    );
  });
});
