/**
 * CIDR blocks and the longest-prefix-match table, on the addresses of ./address.ts.
 *
 * `a.b.c.d/n`, `x::/n` or a bare address (a /32 or /128); host bits are cleared. An IPv4-mapped
 * IPv6 block with a prefix of 96 or more (`::ffff:1.2.3.0/120`) is the IPv4 block (`1.2.3.0/24`),
 * as the mapped addresses in it are IPv4 addresses (see the address policy). The prefix length is
 * decimal digits only.
 */
import { formatIp, parseIp, type Ip } from './address.js';

export interface Cidr {
  readonly v: 4 | 6;
  /** Network address (host bits cleared). */
  readonly net: number | bigint;
  readonly prefix: number;
}

const MAX128 = (1n << 128n) - 1n;

function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}
const V6_MASKS: readonly bigint[] = Array.from({ length: 129 }, (_, p) => (p === 0 ? 0n : (MAX128 >> BigInt(128 - p)) << BigInt(128 - p)));
function maskV6(prefix: number): bigint {
  return V6_MASKS[prefix] as bigint;
}

/** Parse a CIDR block (see the module comment); null when it is not one. */
export function parseCidr(input: string): Cidr | null {
  const s = input.trim();
  const slash = s.indexOf('/');
  const addr = slash >= 0 ? s.slice(0, slash) : s;
  const plen = slash >= 0 ? s.slice(slash + 1) : null;
  if (plen !== null && !/^\d{1,3}$/.test(plen)) return null;
  const ip = parseIp(addr);
  if (!ip) return null;
  if (ip.v === 4) {
    // Written as IPv4, or IPv4-mapped IPv6 (then the prefix counts the 96 mapping bits).
    const mapped = addr.includes(':');
    const max = mapped ? 128 : 32;
    const prefix = plen === null ? max : Number(plen);
    if (prefix > max) return null;
    if (mapped && prefix < 96) return { v: 6, net: ((0xffffn << 32n) | BigInt(ip.n)) & maskV6(prefix), prefix };
    const p4 = mapped ? prefix - 96 : prefix;
    return { v: 4, net: (ip.n & maskV4(p4)) >>> 0, prefix: p4 };
  }
  const prefix = plen === null ? 128 : Number(plen);
  if (prefix > 128) return null;
  return { v: 6, net: ip.n & maskV6(prefix), prefix };
}

/** `net/prefix` in canonical address text. */
export function formatCidr(c: Cidr): string {
  const ip: Ip = c.v === 4 ? { v: 4, n: c.net as number } : { v: 6, n: c.net as bigint };
  return `${formatIp(ip)}/${c.prefix}`;
}

/** True when `ip` lies in `c`. */
export function cidrContains(c: Cidr, ip: Ip): boolean {
  if (c.v !== ip.v) return false;
  if (ip.v === 4) return ((ip.n & maskV4(c.prefix)) >>> 0) === c.net;
  return (ip.n & maskV6(c.prefix)) === c.net;
}

/** True when `c` is one address (/32, /128) other than the unspecified one (`0.0.0.0`, `::`). */
export function isSingleHost(c: Cidr): boolean {
  return c.prefix === (c.v === 4 ? 32 : 128) && c.net !== 0 && c.net !== 0n;
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
