/**
 * Pure IP parsing, CIDR matching and destination classification.
 *
 * IPv4 is a uint32 number, IPv6 a bigint (128 bits). IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is
 * treated as the IPv4 address. {@link CidrMap} is a longest-prefix-match table (one hash set per
 * prefix length in use), reusable for `cidr` predicates elsewhere.
 */

export type Ip = { readonly v: 4; readonly n: number } | { readonly v: 6; readonly n: bigint };

export interface Cidr {
  readonly v: 4 | 6;
  /** Network address (host bits cleared). */
  readonly net: number | bigint;
  readonly prefix: number;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const MAX128 = (1n << 128n) - 1n;

function parseV4(s: string): number | null {
  const m = V4.exec(s);
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i] as string;
    if (part.length > 1 && part[0] === '0') return null; // no octal-looking forms
    const o = Number(part);
    if (o > 255) return null;
    n = n * 256 + o;
  }
  return n;
}

function parseV6(input: string): bigint | null {
  let s = input;
  const pct = s.indexOf('%'); // zone id (fe80::1%eth0)
  if (pct >= 0) s = s.slice(0, pct);
  if (s.length < 2 || s.length > 45) return null;
  // Embedded IPv4 in the last 32 bits: rewrite it as two hex groups.
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) >= 0) {
    const v4 = parseV4(s.slice(lastColon + 1));
    if (v4 === null) return null;
    s = `${s.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const dbl = s.indexOf('::');
  if (dbl !== s.lastIndexOf('::')) return null;
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  let groups: number[];
  if (dbl >= 0) {
    const head = parseGroups(s.slice(0, dbl));
    const rest = parseGroups(s.slice(dbl + 2));
    if (!head || !rest) return null;
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    const all = parseGroups(s);
    if (!all) return null;
    groups = all;
    if (groups.length !== 8) return null;
  }
  if (groups.length !== 8) return null;
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

/** Parse an IPv4 or IPv6 address (brackets and zone ids accepted); IPv4-mapped IPv6 becomes IPv4. */
export function parseIp(input: string): Ip | null {
  let s = input.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (s.includes(':')) {
    const n = parseV6(s);
    if (n === null) return null;
    if (n >> 32n === 0xffffn) return { v: 4, n: Number(n & 0xffffffffn) };
    return { v: 6, n };
  }
  const n = parseV4(s);
  return n === null ? null : { v: 4, n };
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run compressed). */
export function formatIp(ip: Ip): string {
  if (ip.v === 4) return `${ip.n >>> 24}.${(ip.n >>> 16) & 255}.${(ip.n >>> 8) & 255}.${ip.n & 255}`;
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((ip.n >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}
function maskV6(prefix: number): bigint {
  return prefix === 0 ? 0n : (MAX128 >> BigInt(128 - prefix)) << BigInt(128 - prefix);
}

/**
 * Parse `a.b.c.d/n`, `x::/n`, or a bare address (/32, /128). Host bits are cleared.
 * `::ffff:a.b.c.d/n` with n ≥ 96 becomes the IPv4 CIDR.
 */
export function parseCidr(input: string): Cidr | null {
  const s = input.trim();
  const slash = s.indexOf('/');
  const addr = slash >= 0 ? s.slice(0, slash) : s;
  const plen = slash >= 0 ? s.slice(slash + 1) : null;
  if (plen !== null && !/^\d{1,3}$/.test(plen)) return null;
  const isV6Text = addr.includes(':');
  if (isV6Text) {
    const n = parseV6(addr.startsWith('[') && addr.endsWith(']') ? addr.slice(1, -1) : addr);
    if (n === null) return null;
    const prefix = plen === null ? 128 : Number(plen);
    if (prefix > 128) return null;
    if (prefix >= 96 && n >> 32n === 0xffffn) return { v: 4, net: (Number(n & 0xffffffffn) & maskV4(prefix - 96)) >>> 0, prefix: prefix - 96 };
    return { v: 6, net: n & maskV6(prefix), prefix };
  }
  const n = parseV4(addr);
  if (n === null) return null;
  const prefix = plen === null ? 32 : Number(plen);
  if (prefix > 32) return null;
  return { v: 4, net: (n & maskV4(prefix)) >>> 0, prefix };
}

/** True when `ip` lies in `c`. */
export function cidrContains(c: Cidr, ip: Ip): boolean {
  if (c.v !== ip.v) return false;
  if (ip.v === 4) return ((ip.n & maskV4(c.prefix)) >>> 0) === c.net;
  return (ip.n & maskV6(c.prefix)) === c.net;
}

/**
 * Longest-prefix-match table from CIDRs to values. Lookup cost: one hash probe per distinct
 * prefix length in use (at most 33 / 129), independent of the number of entries.
 */
export class CidrMap<T> {
  private readonly v4 = new Map<number, Map<number, T>>();
  private readonly v6 = new Map<number, Map<bigint, T>>();
  private v4Lens: number[] = [];
  private v6Lens: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Add a CIDR (text or parsed). Returns false for unparsable text. A later add of the same CIDR wins. */
  set(cidr: string | Cidr, value: T): boolean {
    const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
    if (!c) return false;
    if (c.v === 4) {
      let m = this.v4.get(c.prefix);
      if (!m) {
        m = new Map();
        this.v4.set(c.prefix, m);
        this.v4Lens = [...this.v4.keys()].sort((a, b) => b - a);
      }
      if (!m.has(c.net as number)) this.count++;
      m.set(c.net as number, value);
    } else {
      let m = this.v6.get(c.prefix);
      if (!m) {
        m = new Map();
        this.v6.set(c.prefix, m);
        this.v6Lens = [...this.v6.keys()].sort((a, b) => b - a);
      }
      if (!m.has(c.net as bigint)) this.count++;
      m.set(c.net as bigint, value);
    }
    return true;
  }

  /** Value of the most specific CIDR containing `ip`, or undefined. */
  get(ip: Ip | string): T | undefined {
    const a = typeof ip === 'string' ? parseIp(ip) : ip;
    if (!a) return undefined;
    if (a.v === 4) {
      for (const len of this.v4Lens) {
        const hit = this.v4.get(len)?.get((a.n & maskV4(len)) >>> 0);
        if (hit !== undefined) return hit;
      }
      return undefined;
    }
    for (const len of this.v6Lens) {
      const hit = this.v6.get(len)?.get(a.n & maskV6(len));
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  has(ip: Ip | string): boolean {
    return this.get(ip) !== undefined;
  }
}

/** A set of CIDRs. */
export class CidrSet {
  private readonly m = new CidrMap<true>();
  constructor(cidrs: Iterable<string> = []) {
    for (const c of cidrs) this.add(c);
  }
  add(cidr: string | Cidr): boolean {
    return this.m.set(cidr, true);
  }
  has(ip: Ip | string): boolean {
    return this.m.has(ip);
  }
  get size(): number {
    return this.m.size;
  }
}

export type IpClass =
  | 'cluster_pod'
  | 'cluster_service'
  | 'loopback'
  | 'private'
  | 'cgnat'
  | 'cloud_metadata'
  | 'link_local'
  | 'multicast'
  | 'unique_local'
  | 'reserved'
  | 'public';

/** Special-purpose ranges (IANA registries, RFC 6890 and successors), most specific first within a family. */
export const SPECIAL_RANGES: readonly (readonly [string, IpClass])[] = [
  ['169.254.169.254/32', 'cloud_metadata'],
  ['fd00:ec2::254/128', 'cloud_metadata'],
  ['127.0.0.0/8', 'loopback'],
  ['::1/128', 'loopback'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['169.254.0.0/16', 'link_local'],
  ['fe80::/10', 'link_local'],
  ['224.0.0.0/4', 'multicast'],
  ['ff00::/8', 'multicast'],
  ['fc00::/7', 'unique_local'],
  ['0.0.0.0/8', 'reserved'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'reserved'],
  ['192.88.99.0/24', 'reserved'],
  ['198.18.0.0/15', 'reserved'],
  ['198.51.100.0/24', 'reserved'],
  ['203.0.113.0/24', 'reserved'],
  ['240.0.0.0/4', 'reserved'], // includes 255.255.255.255
  ['::/128', 'reserved'],
  ['100::/64', 'reserved'],
  ['64:ff9b:1::/48', 'reserved'],
  ['2001::/23', 'reserved'],
  ['2001:db8::/32', 'reserved'],
  ['3fff::/20', 'reserved'],
  ['5f00::/16', 'reserved'],
];

const NAT64 = parseCidr('64:ff9b::/96') as Cidr;
const GLOBAL_UNICAST = parseCidr('2000::/3') as Cidr;

/** Classifies addresses; the cluster CIDRs come from the operator's config. */
export class IpClassifier {
  private readonly special = new CidrMap<IpClass>();
  private readonly cluster = new CidrMap<IpClass>();

  constructor(opts: { podCidrs?: readonly string[]; serviceCidrs?: readonly string[] } = {}) {
    // Longest prefix wins inside the map, so a /32 metadata entry beats 169.254/16.
    for (const [c, cls] of SPECIAL_RANGES) this.special.set(c, cls);
    // Service CIDRs are added after pod CIDRs: on an identical CIDR the service class wins.
    for (const c of opts.podCidrs ?? []) this.cluster.set(c, 'cluster_pod');
    for (const c of opts.serviceCidrs ?? []) this.cluster.set(c, 'cluster_service');
  }

  classify(ip: Ip | string): IpClass | null {
    const a = typeof ip === 'string' ? parseIp(ip) : ip;
    if (!a) return null;
    const cl = this.cluster.get(a);
    if (cl) return cl;
    if (a.v === 6 && cidrContains(NAT64, a)) return this.classify({ v: 4, n: Number(a.n & 0xffffffffn) });
    const sp = this.special.get(a);
    if (sp) return sp;
    if (a.v === 6 && !cidrContains(GLOBAL_UNICAST, a)) return 'reserved'; // unassigned space, ::ffff:0:0/96 handled by parseIp
    return 'public';
  }
}

/** Shorthand without cluster CIDRs. */
export function classifyIp(ip: Ip | string, cluster?: { podCidrs?: readonly string[]; serviceCidrs?: readonly string[] }): IpClass | null {
  return new IpClassifier(cluster).classify(ip);
}
