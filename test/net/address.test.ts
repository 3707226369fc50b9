import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalIp, formatIp, parseIp, type Ip } from '../../src/net/address.js';

describe('parseIp / formatIp', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    [' 10.0.0.1 ', '10.0.0.1'],
    ['::1', '::1'],
    ['::', '::'],
    ['[2001:DB8::1]', '2001:db8::1'],
    ['::ffff:8.8.8.8', '8.8.8.8'],
    ['::ffff:0808:0808', '8.8.8.8'],
    ['0:0:0:0:0:ffff:0102:0304', '1.2.3.4'],
    ['fe80::1%eth0', 'fe80::1'],
    ['[fe80::1%eth0]', 'fe80::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['1::2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ['::1.2.3.4', '::102:304'],
  ])('%j → %s', (a, b) => {
    const ip = parseIp(a);
    expect(ip).not.toBeNull();
    expect(formatIp(ip as Ip)).toBe(b);
  });

  it.each([
    '',
    ' ',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '010.0.0.1', // octal for inet_aton, decimal for others: not an address here
    '1.2.3.04',
    '1:2:3:4:5:6:7:8:9',
    '1::2:3:4:5:6:7:8', // `::` standing for no group at all
    '1::2::3',
    ':1::2',
    '1::2:',
    'gg::1',
    '12345::1',
    '::ffff:1.2.3.256',
    '::ffff:01.2.3.4',
    '1:2:3:4:5:6:7:1.2.3.4',
    '::1.2.3.4:5',
    'fe80::1%',
    'fe80::1%eth 0',
    '1.2.3.4%eth0',
    '[1.2.3.4]',
    '[::1',
    'example.com',
    '1.2.3.4:80',
    '\u00011.2.3.4',
  ])('rejects %j', (s) => {
    expect(parseIp(s)).toBeNull();
  });

  it('canonicalIp keeps a dotted quad as it is and formats the rest', () => {
    expect(canonicalIp('203.0.113.9')).toBe('203.0.113.9');
    expect(canonicalIp('::FFFF:203.0.113.9')).toBe('203.0.113.9');
    expect(canonicalIp('2001:DB8:0::1')).toBe('2001:db8::1');
    expect(canonicalIp(' 203.0.113.9')).toBe('203.0.113.9');
    expect(canonicalIp('nope')).toBeNull();
  });
});

// Generators: structured addresses (including the edge forms), and free text over the characters addresses use.
const octet = fc.oneof({ arbitrary: fc.nat(255).map(String), weight: 19 }, { arbitrary: fc.nat(99).map((n) => `0${n}`), weight: 1 });
const v4text = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const group = fc.oneof(
  { arbitrary: fc.nat(0xffff).map((n) => n.toString(16)), weight: 10 },
  { arbitrary: fc.nat(0xffff).map((n) => n.toString(16).toUpperCase().padStart(4, '0')), weight: 5 },
  { arbitrary: fc.constant('0'), weight: 5 },
  { arbitrary: fc.constant('00000'), weight: 1 },
);
const v6text = fc
  .tuple(
    fc.array(group, { minLength: 0, maxLength: 9 }),
    fc.option(fc.nat(9), { freq: 2 }),
    fc.option(v4text, { freq: 3 }),
    fc.option(fc.constantFrom('%eth0', '%1', '%lo.1:x-y', '%', '%a b'), { freq: 3 }),
  )
  .map(([groups, gapAt, tail, zone]) => {
    const parts: string[] = [...groups];
    let t = parts.join(':');
    if (gapAt !== null) t = [...parts.slice(0, gapAt), ''].join(':') + ':' + parts.slice(gapAt).join(':');
    if (tail !== null) t += (t.endsWith(':') ? '' : ':') + tail;
    return t + (zone ?? '');
  });
const noise = fc.array(fc.constantFrom('0', '1', '9', 'a', 'f', 'F', 'g', ':', ':', '.', '%', 'e'), { maxLength: 20 }).map((cs) => cs.join(''));
const anyText = fc.oneof(v4text, v6text, noise);

describe('parseIp against node:net (property)', () => {
  it('accepts exactly what isIP accepts (no brackets or blanks, which isIP never takes)', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const ours = parseIp(s);
        expect(ours !== null, JSON.stringify(s)).toBe(isIP(s) !== 0);
      }),
      { numRuns: 20_000 },
    );
  });

  it('parse ∘ format is the identity on addresses, and format ∘ parse on canonical text', () => {
    const v4 = fc.nat(0xffffffff).map((n): Ip => ({ v: 4, n }));
    const v6 = fc
      .bigInt({ min: 0n, max: (1n << 128n) - 1n })
      .filter((n) => n >> 32n !== 0xffffn) // IPv4-mapped: those ARE IPv4 addresses
      .map((n): Ip => ({ v: 6, n }));
    const sparse = fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff), { minLength: 8, maxLength: 8 }).map((g): Ip => ({ v: 6, n: g.reduce((acc, x) => (acc << 16n) | BigInt(x), 0n) })).filter((ip) => (ip.n as bigint) >> 32n !== 0xffffn);
    fc.assert(
      fc.property(fc.oneof(v4, v6, sparse), (ip) => {
        const text = formatIp(ip);
        expect(parseIp(text)).toEqual(ip);
        expect(formatIp(parseIp(text) as Ip)).toBe(text);
        expect(isIP(text)).toBe(ip.v);
      }),
      { numRuns: 5000 },
    );
  });

  it('an accepted text means one address: its canonical text parses back to the same value', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        const ip = parseIp(s);
        if (ip) expect(parseIp(formatIp(ip))).toEqual(ip);
      }),
      { numRuns: 5000 },
    );
  });
});
