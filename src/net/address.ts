/**
 * The one IP address parser of the project (detection and enrichment both use it).
 *
 * Policy (the same as `node:net` `isIP`, which the property tests hold it to, plus two edge forms):
 * - IPv4: exactly four decimal octets 0–255. Leading zeros are rejected (`010.0.0.1`: inet_aton
 *   reads it as octal 8.0.0.1, other parsers as decimal 10.0.0.1; an address that means two things
 *   is not an address). No short (`10.1`), hex or octal forms.
 * - IPv6: RFC 4291 text, 1–4 hex digits per group, at most one `::`, which stands for at least one
 *   zero group (`1::2:3:4:5:6:7:8` is nine groups: rejected). A dotted IPv4 tail in the last 32 bits
 *   (`::ffff:1.2.3.4`, `64:ff9b::192.0.2.1`) follows the IPv4 rules above.
 * - Zone ids (`fe80::1%eth0`, characters `[0-9A-Za-z.:-]`) are accepted and dropped: the address is
 *   the same with or without them. IPv6 may be written in brackets (`[::1]`, as in URLs and socket
 *   tuples); IPv4 may not. Surrounding blanks are ignored.
 * - IPv4-mapped IPv6 (`::ffff:0:0/96`, whether written `::ffff:1.2.3.4` or `::ffff:0102:0304`) IS the
 *   IPv4 address: parsed to `{ v: 4 }`, so a CIDR `1.2.3.0/24` contains it and it formats as
 *   `1.2.3.4`. IPv4-compatible (`::1.2.3.4`, deprecated) and NAT64 (`64:ff9b::/96`) addresses stay
 *   IPv6 (classification looks inside NAT64: src/enrich/ip-class.ts).
 *
 * IPv4 is a uint32 number, IPv6 a 128-bit bigint. Hand-written rather than a library: the egress
 * enricher and the signal mapping parse addresses on every alert, and both need the numeric value
 * (CIDR tables), which `node:net` does not expose; `ipaddr.js` would read `010.0.0.1` as octal.
 */

export type Ip = { readonly v: 4; readonly n: number } | { readonly v: 6; readonly n: bigint };

/** Longer text is never an address (45 characters of IPv6 with an IPv4 tail, brackets, a zone id). */
const MAX_TEXT = 128;

/** Parse `s[start, end)` as a dotted quad: the uint32 value, or -1. */
function parseV4(s: string, start: number, end: number): number {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return -1; // leading zero
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return -1;
    } else if (c === 46) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + octet;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function isZoneChar(c: number): boolean {
  return (c >= 48 && c <= 58) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46;
}

/** Parse `s[start, end)` as IPv6 text (zone id allowed): the 128-bit value, or null. */
function parseV6(s: string, start: number, end: number): bigint | null {
  const pct = s.indexOf('%', start);
  if (pct >= 0 && pct < end) {
    if (pct + 1 === end) return null;
    for (let i = pct + 1; i < end; i++) if (!isZoneChar(s.charCodeAt(i))) return null;
    end = pct;
  }
  const groups: number[] = [];
  let gap = -1; // index in `groups` where `::` stands
  let i = start;
  if (end - start >= 2 && s.charCodeAt(i) === 58 && s.charCodeAt(i + 1) === 58) {
    gap = 0;
    i += 2;
    if (i === end) return 0n; // `::`
  } else if (s.charCodeAt(i) === 58) return null; // a lone leading colon
  while (i < end) {
    // One group, or a dotted IPv4 tail.
    let j = i;
    let value = 0;
    while (j < end && j - i < 5) {
      const d = hexDigit(s.charCodeAt(j));
      if (d < 0) break;
      value = value * 16 + d;
      j++;
    }
    const next = j < end ? s.charCodeAt(j) : -1;
    if (next === 46) {
      // Embedded IPv4: must run to the end and fill the last 32 bits.
      const v4 = parseV4(s, i, end);
      if (v4 < 0 || groups.length > 6) return null;
      groups.push(Math.floor(v4 / 65536), v4 % 65536);
      i = end;
      break;
    }
    const len = j - i;
    if (len === 0 || len > 4) return null;
    groups.push(value);
    if (groups.length > 8) return null;
    if (j === end) {
      i = end;
      break;
    }
    if (next !== 58) return null;
    if (j + 1 < end && s.charCodeAt(j + 1) === 58) {
      if (gap >= 0) return null; // a second `::`
      gap = groups.length;
      i = j + 2;
      if (i === end) break; // trailing `::`
    } else {
      i = j + 1;
      if (i === end) return null; // a lone trailing colon
    }
  }
  let all: number[];
  if (gap >= 0) {
    const fill = 8 - groups.length;
    if (fill < 1) return null; // `::` must stand for at least one group
    all = [...groups.slice(0, gap), ...new Array<number>(fill).fill(0), ...groups.slice(gap)];
  } else {
    if (groups.length !== 8) return null;
    all = groups;
  }
  // Two 64-bit halves as numbers would lose bits: build from 32-bit words.
  const w0 = (all[0] as number) * 65536 + (all[1] as number);
  const w1 = (all[2] as number) * 65536 + (all[3] as number);
  const w2 = (all[4] as number) * 65536 + (all[5] as number);
  const w3 = (all[6] as number) * 65536 + (all[7] as number);
  return (BigInt(w0) << 96n) | (BigInt(w1) << 64n) | (BigInt(w2) << 32n) | BigInt(w3);
}

const MAPPED_TOP = 0xffffn;

/** IPv6 value to the address it denotes (IPv4-mapped becomes IPv4). */
function fromV6(n: bigint): Ip {
  if (n >> 32n === MAPPED_TOP) return { v: 4, n: Number(n & 0xffffffffn) };
  return { v: 6, n };
}

/** Parse an IPv4 or IPv6 address (policy in the module comment); null when it is not one. */
export function parseIp(input: string): Ip | null {
  const len = input.length;
  if (len === 0) return null;
  if (input.charCodeAt(0) <= 32 || input.charCodeAt(len - 1) <= 32) {
    const t = input.trim();
    return t.length === 0 || t.length === len ? null : parseIp(t);
  }
  if (len > MAX_TEXT) return null;
  let start = 0;
  let end = len;
  const bracketed = input.charCodeAt(0) === 91; /* [ */
  if (bracketed) {
    if (input.charCodeAt(len - 1) !== 93 /* ] */) return null;
    start = 1;
    end = len - 1;
  }
  const colon = input.indexOf(':', start);
  if (colon < 0 || colon >= end) {
    if (bracketed) return null;
    const n = parseV4(input, start, end);
    return n < 0 ? null : { v: 4, n };
  }
  const n = parseV6(input, start, end);
  return n === null ? null : fromV6(n);
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest run of ≥ 2 zero groups compressed, the first on a tie). */
export function formatIp(ip: Ip): string {
  if (ip.v === 4) return `${ip.n >>> 24}.${(ip.n >>> 16) & 255}.${(ip.n >>> 8) & 255}.${ip.n & 255}`;
  const g: number[] = [];
  // 32 bits at a time: Number() of a wider slice would lose bits.
  for (let w = 3; w >= 0; w--) {
    const word = Number((ip.n >> BigInt(w * 32)) & 0xffffffffn);
    g.push(Math.floor(word / 65536), word % 65536);
  }
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

/**
 * Canonical text of an address already parsed from `text`: `text` itself when it is a plain dotted
 * quad (every accepted dotted quad is canonical: no leading zeros, no blanks), else {@link formatIp}.
 * Saves formatting the common case on hot paths.
 */
export function ipText(text: string, ip: Ip): string {
  if (ip.v === 4 && text.length <= 15 && text.charCodeAt(0) !== 91 && text.indexOf(':') < 0 && text.charCodeAt(0) > 32 && text.charCodeAt(text.length - 1) > 32) return text;
  return formatIp(ip);
}

/** Canonical text of an address given as text, or null when it is not an address. */
export function canonicalIp(text: string): string | null {
  const ip = parseIp(text);
  return ip === null ? null : ipText(text, ip);
}
