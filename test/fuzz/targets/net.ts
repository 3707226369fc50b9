/**
 * Network text from alerts and lists: IP addresses and CIDR blocks (src/net/address.ts, cidr.ts),
 * glob lists of the rules file matched against workload text (src/detect/suppress.ts), Falco's
 * `fd.name` socket tuples (src/net/socket.ts).
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { compileGlob, compileGlobs } from '../../../src/detect/suppress.js';
import { canonicalIp, formatIp, parseIp, type Ip } from '../../../src/net/address.js';
import { CidrMap, cidrContains, formatCidr, parseCidr } from '../../../src/net/cidr.js';
import { parseFdName } from '../../../src/net/socket.js';
import { longRun, nastyString } from '../arbitraries.js';
import type { FuzzTarget } from '../harness.js';

const v4 = fc.integer({ min: 0, max: 0xffffffff }).map((n): Ip => ({ v: 4, n }));
const v6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((n): Ip => ({ v: 6, n }));
const ip = fc.oneof(v4, v6, fc.constantFrom<Ip>({ v: 6, n: 0n }, { v: 6, n: 1n }, { v: 4, n: 0 }, { v: 6, n: (0xffffn << 32n) | 0x01020304n }));

/** The ways an address is written: canonical, full, upper case, zero-padded groups, embedded IPv4, brackets, blanks. */
function writings(a: Ip): fc.Arbitrary<string> {
  const canon = formatIp(a);
  if (a.v === 4) return fc.constantFrom(canon, ` ${canon}`, `${canon}\n`, `::ffff:${canon}`, `[::ffff:${canon}]`, `::FFFF:${canon}`);
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((a.n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return fc.constantFrom(canon, canon.toUpperCase(), groups.join(':'), groups.map((g) => g.padStart(4, '0')).join(':'), `[${canon}]`, `${groups.slice(0, 6).join(':')}:${Number((a.n >> 24n) & 0xffn)}.${Number((a.n >> 16n) & 0xffn)}.${Number((a.n >> 8n) & 0xffn)}.${Number(a.n & 0xffn)}`);
}

const garbageAddress = fc.oneof(
  nastyString,
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:./[]% -'), maxLength: 50 }),
  fc.constantFrom('1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', '::1::', ':::', '1:2:3:4:5:6:7:8:9', '1.2.3.4/33', '::/129', '1.2.3.4/-1', '1.2.3.4/08', 'fe80::1%eth0', '[::1', '::ffff:1.2.3.256', '1.2.3.4/ 8', '0x7f.1', '4294967296'),
  longRun,
);

type NetInput = { readonly kind: 'ip'; readonly a: Ip; readonly text: string; readonly prefix: number; readonly probe: Ip } | { readonly kind: 'garbage'; readonly text: string };

export const addresses: FuzzTarget<NetInput> = {
  name: 'IP addresses and CIDR blocks',
  module: 'src/net/address.ts, src/net/cidr.ts',
  arb: fc.oneof(
    ip.chain((a) => fc.record({ kind: fc.constant('ip' as const), a: fc.constant(a), text: writings(a), prefix: fc.integer({ min: 0, max: a.v === 4 ? 32 : 128 }), probe: fc.oneof(ip, fc.constant(a)) })),
    fc.record({ kind: fc.constant('garbage' as const), text: garbageAddress }),
  ),
  check: (x) => {
    if (x.kind === 'garbage') {
      const p = parseIp(x.text);
      if (p) expect(parseIp(formatIp(p))).toEqual(p); // whatever is accepted has a canonical form that parses back
      const c = parseCidr(x.text);
      if (c) expect(parseCidr(formatCidr(c))).toEqual(c);
      const m = new CidrMap<number>();
      m.set(x.text, 1);
      return;
    }
    // Every writing of an address parses to it; the canonical text is stable.
    const p = parseIp(x.text);
    expect(p).toEqual(x.a.v === 6 && x.a.n >> 32n === 0xffffn ? { v: 4, n: Number(x.a.n & 0xffffffffn) } : x.a);
    const canon = canonicalIp(x.text);
    expect(canon).toBe(formatIp(p as Ip));
    expect(canonicalIp(canon as string)).toBe(canon);
    // CIDR: net/prefix round trip, containment agrees with the bits, longest prefix match finds it.
    const c = parseCidr(`${formatIp(x.a)}/${x.prefix}`);
    if (!c) throw new Error(`valid CIDR rejected: ${formatIp(x.a)}/${x.prefix}`);
    expect(parseCidr(formatCidr(c))).toEqual(c);
    const a = parseIp(formatIp(x.a)) as Ip;
    // Policy (src/net/address.ts): an IPv4-mapped address is IPv4, so an IPv6 block wider than
    // the mapped range (/96) never contains it.
    expect(cidrContains(c, a)).toBe(a.v === c.v);
    const probe = parseIp(formatIp(x.probe)) as Ip;
    const bits = c.v === 4 ? 32 : 128;
    const inside =
      probe.v === c.v &&
      (c.v === 4 ? c.prefix === 0 || (probe.n as number) >>> (32 - c.prefix) === (c.net as number) >>> (32 - c.prefix) : c.prefix === 0 || (probe.n as bigint) >> BigInt(bits - c.prefix) === (c.net as bigint) >> BigInt(bits - c.prefix));
    expect(cidrContains(c, probe)).toBe(inside);
    const m = new CidrMap<string>();
    expect(m.set(formatCidr(c), 'hit')).toBe(true);
    expect(m.get(a)).toBe(a.v === c.v ? 'hit' : undefined);
  },
  shortRuns: 400,
};

// ---------------------------------------------------------------------------------------------

/** Reference glob matcher (dynamic programming): `*` any run, `?` one code unit. */
function globRef(glob: string, s: string): boolean {
  let prev = new Array<boolean>(s.length + 1).fill(false);
  prev[0] = true;
  for (let g = 0; g < glob.length; g++) {
    const cur = new Array<boolean>(s.length + 1).fill(false);
    const c = glob[g];
    if (c === '*') {
      let any = false;
      for (let i = 0; i <= s.length; i++) {
        any = any || (prev[i] as boolean);
        cur[i] = any;
      }
    } else for (let i = 1; i <= s.length; i++) cur[i] = (prev[i - 1] as boolean) && (c === '?' || c === s[i - 1]);
    prev = cur;
  }
  return prev[s.length] as boolean;
}

const globChar = fc.constantFrom('a', 'b', '/', '.', '*', '*', '?', '-', '\n', '(', '$', '\\', '[', '^');
const glob = fc.oneof(fc.string({ unit: globChar, maxLength: 10 }), fc.constantFrom('*a*a*b', '*a*a*a*a*b', '*/bin/*sh', '*?*?*?x', '**', '*', '?', '', 'a*b*c', '*kube-proxy*', '/usr/*/bin/*'));
const subject = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: fc.constantFrom('a', 'b', '/', '.', '-', '\n', '(', '$', '\\', 'x', '\u2028'), maxLength: 16 }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', '/bin/', 'ab', 's'), fc.integer({ min: 1000, max: 8000 })).map(([m, n]) => m.repeat(Math.ceil(n / m.length))) },
  { weight: 1, arbitrary: longRun },
);

export const globLists: FuzzTarget<{ globs: string[]; s: string }> = {
  name: 'glob lists (rules file) on workload text',
  module: 'src/detect/suppress.ts',
  arb: fc.record({ globs: fc.array(glob, { maxLength: 5 }), s: subject }),
  check: ({ globs, s }) => {
    const any = globs.some((g) => globRef(g, s));
    for (const g of globs) expect(compileGlob(g)(s), `${JSON.stringify(g)} ~ ${JSON.stringify(s.slice(0, 40))}`).toBe(globRef(g, s));
    expect(compileGlobs(globs)(s)).toBe(any);
  },
  shortRuns: 300,
};

// ---------------------------------------------------------------------------------------------

const port = fc.integer({ min: 0, max: 65535 });
/** A socket tuple as Falco prints it, and what it must parse to. */
const tuple = fc.record({ c: ip, cp: port, s: ip, sp: port, brackets: fc.boolean(), ws: fc.constantFrom('', ' ', '\t') }).map((t) => {
  const end = (a: Ip, p: number): string => (a.v === 6 && t.brackets ? `[${formatIp(a)}]:${p}` : `${formatIp(a)}:${p}`);
  return { ...t, text: `${t.ws}${end(t.c, t.cp)}->${end(t.s, t.sp)}${t.ws}` };
});

type FdInput = { readonly kind: 'inet'; readonly t: { c: Ip; cp: number; s: Ip; sp: number; text: string } } | { readonly kind: 'unix'; readonly a: string; readonly b: string; readonly path: string } | { readonly kind: 'any'; readonly text: string };

export const fdNames: FuzzTarget<FdInput> = {
  name: 'fd.name socket tuples',
  module: 'src/net/socket.ts',
  arb: fc.oneof(
    fc.record({ kind: fc.constant('inet' as const), t: tuple }),
    fc.record({ kind: fc.constant('unix' as const), a: fc.stringMatching(/^[0-9a-f]{1,16}$/), b: fc.stringMatching(/^[0-9a-f]{1,16}$/), path: fc.oneof(fc.constant(''), fc.stringMatching(/^\/[a-z./_-]{1,40}$/)) }),
    fc.record({ kind: fc.constant('any' as const), text: fc.oneof(nastyString, garbageAddress, fc.string({ unit: fc.constantFrom(...'0123456789abcdef:.->[] /'), maxLength: 80 }), longRun.map((r) => `${r}->${r}`)) }),
  ),
  check: (x) => {
    if (x.kind === 'any') {
      const r = parseFdName(x.text);
      if (r?.kind === 'inet') {
        expect(r.client.port).toBeGreaterThanOrEqual(0);
        expect(r.server.port).toBeLessThanOrEqual(65535);
      }
      return;
    }
    if (x.kind === 'unix') {
      const r = parseFdName(`${x.a}->${x.b}${x.path ? ' ' + x.path : ''}`);
      expect(r).toEqual({ kind: 'unix', local: x.a, peer: x.b, path: x.path === '' ? null : x.path });
      return;
    }
    const r = parseFdName(x.t.text);
    if (r?.kind !== 'inet') throw new Error(`tuple not parsed: ${x.t.text}`);
    const norm = (a: Ip): Ip => (a.v === 6 && a.n >> 32n === 0xffffn ? { v: 4, n: Number(a.n & 0xffffffffn) } : a);
    expect([r.client.ip, r.client.port, r.server.ip, r.server.port]).toEqual([norm(x.t.c), x.t.cp, norm(x.t.s), x.t.sp]);
  },
  shortRuns: 300,
};
