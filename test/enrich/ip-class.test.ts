import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IpClassifier, classifyIp, type IpClass } from '../../src/enrich/ip-class.js';

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

describe('IpClassifier (property)', () => {
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
