import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseIp, type Ip } from '../../src/net/address.js';
import { CidrMap, cidrContains, formatCidr, isSingleHost, parseCidr, type Cidr } from '../../src/net/cidr.js';

describe('parseCidr and CidrMap', () => {
  it('clears host bits and rejects bad prefixes', () => {
    expect(parseCidr('10.1.2.3/8')).toEqual({ v: 4, net: 0x0a000000, prefix: 8 });
    expect(parseCidr('1.2.3.4')).toEqual({ v: 4, net: 0x01020304, prefix: 32 });
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ v: 4, net: 0x0a000000, prefix: 8 });
    expect(parseCidr('2001:db8::1/32')).toEqual({ v: 6, net: 0x20010db8n << 96n, prefix: 32 });
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/a', 'x/8', '', '010.0.0.0/8', '1::2:3:4:5:6:7:8/64', '10.0.0.0/8/8']) expect(parseCidr(bad)).toBeNull();
  });

  it('an IPv4-mapped address is in the IPv4 block, however it is written (the old allowlist/egress disagreement)', () => {
    const c = parseCidr('1.2.3.0/24') as Cidr;
    for (const a of ['1.2.3.4', '::ffff:1.2.3.4', '::ffff:0102:0304', '[::ffff:102:304]', '0:0:0:0:0:ffff:102:304']) expect(cidrContains(c, parseIp(a) as Ip), a).toBe(true);
    expect(parseCidr('::ffff:1.2.3.0/120')).toEqual(c);
    expect(cidrContains(c, parseIp('::1.2.3.4') as Ip)).toBe(false); // IPv4-compatible is IPv6
  });

  it('single hosts', () => {
    for (const h of ['1.2.3.4', '1.2.3.4/32', '2001:db8::1/128', '::ffff:1.2.3.4/128']) expect(isSingleHost(parseCidr(h) as Cidr), h).toBe(true);
    for (const n of ['1.2.3.0/24', '0.0.0.0', '0.0.0.0/0', '::', '::/128', '2001:db8::/64']) expect(isSingleHost(parseCidr(n) as Cidr), n).toBe(false);
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
    const all = new CidrMap<true>();
    all.set('0.0.0.0/0', true);
    expect(all.has('203.0.113.9')).toBe(true);
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
        const set = new CidrMap<true>();
        set.set(`${net}/${prefix}`, true);
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

  it('formatCidr(parseCidr(x)) round-trips (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(v4, fc.nat(32)), fc.tuple(v6, fc.nat(128))), ([net, prefix]) => {
        const c = parseCidr(`${net}/${prefix}`);
        expect(c).not.toBeNull();
        expect(parseCidr(formatCidr(c as Cidr))).toEqual(c);
      }),
      { numRuns: 1000 },
    );
  });
});
