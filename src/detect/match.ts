/**
 * Small matchers the rules file compiles to: IPv4/IPv6 CIDR, path/image globs, domain suffixes.
 * Pure functions, no state.
 */

/** Parse an IPv4 or IPv6 address to { v6, value } (IPv4-mapped IPv6 is folded to IPv4); null if invalid. */
export function parseIp(s: string): { readonly v6: boolean; readonly value: bigint } | null {
  let t = s.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  const pct = t.indexOf('%');
  if (pct >= 0) t = t.slice(0, pct);
  if (t.includes(':')) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(t);
    if (mapped) return parseIp(mapped[1] as string);
    return parseV6(t);
  }
  const v4 = parseV4(t);
  return v4 === null ? null : { v6: false, value: v4 };
}

function parseV4(t: string): bigint | null {
  const parts = t.split('.');
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(t: string): { v6: boolean; value: bigint } | null {
  let head = t;
  let tailV4: bigint | null = null;
  const lastColon = t.lastIndexOf(':');
  if (t.slice(lastColon + 1).includes('.')) {
    tailV4 = parseV4(t.slice(lastColon + 1));
    if (tailV4 === null) return null;
    head = t.slice(0, lastColon + 1) + '0:0';
  }
  const dbl = head.split('::');
  if (dbl.length > 2) return null;
  const left = dbl[0] ? dbl[0].split(':') : [];
  const right = dbl.length === 2 && dbl[1] ? dbl[1].split(':') : [];
  const groups = dbl.length === 2 ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  if (groups.length !== 8) return null;
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4 !== null) v = (v & ~0xffffffffn) | tailV4;
  return { v6: true, value: v };
}

export interface Cidr {
  readonly v6: boolean;
  readonly base: bigint;
  readonly bits: number;
  readonly text: string;
}

/** Parse `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128); null if invalid. */
export function parseCidr(s: string): Cidr | null {
  const [addr, len, more] = s.trim().split('/');
  if (more !== undefined || addr === undefined) return null;
  const ip = parseIp(addr);
  if (!ip) return null;
  const max = ip.v6 ? 128 : 32;
  const bits = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return null;
  const shift = BigInt(max - bits);
  return { v6: ip.v6, base: (ip.value >> shift) << shift, bits, text: s.trim() };
}

export function cidrContains(c: Cidr, ip: { v6: boolean; value: bigint }): boolean {
  if (c.v6 !== ip.v6) return false;
  const shift = BigInt((c.v6 ? 128 : 32) - c.bits);
  return (ip.value >> shift) << shift === c.base;
}

/** A glob where `*` matches any run of characters (slashes too) and `?` one character. */
export function compileGlob(glob: string): (s: string) => boolean {
  if (!/[*?]/.test(glob)) return (s) => s === glob;
  // Fast paths for the common shapes: `*suffix`, `prefix*`, `*infix*`.
  if (!glob.includes('?')) {
    const inner = glob.slice(1, -1);
    if (glob.startsWith('*') && glob.endsWith('*') && glob.length >= 2 && !inner.includes('*')) return (s) => s.includes(inner);
    const tail = glob.slice(1);
    if (glob.startsWith('*') && !tail.includes('*')) return (s) => s.endsWith(tail);
    const head = glob.slice(0, -1);
    if (glob.endsWith('*') && !head.includes('*')) return (s) => s.startsWith(head);
  }
  const re = new RegExp('^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
  return (s) => re.test(s);
}

/** `example.com` matches itself and any subdomain; `.example.com` only subdomains. Case-insensitive. */
export function domainMatches(suffix: string, domain: string): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const s = suffix.toLowerCase().replace(/\.$/, '');
  if (s.startsWith('.')) return d.endsWith(s);
  return d === s || d.endsWith('.' + s);
}

const RE_SPECIAL = /[.+^${}()|[\]\\*?]/g;

/** The regular-expression source that matches exactly what `compileGlob(glob)` matches. */
function globSource(glob: string): string {
  const lit = (s: string): string => s.replace(RE_SPECIAL, '\\$&');
  if (!/[*?]/.test(glob)) return `^${lit(glob)}$`;
  if (!glob.includes('?')) {
    const inner = glob.slice(1, -1);
    if (glob.startsWith('*') && glob.endsWith('*') && glob.length >= 2 && !inner.includes('*')) return lit(inner);
    const tail = glob.slice(1);
    if (glob.startsWith('*') && !tail.includes('*')) return `${lit(tail)}$`;
    const head = glob.slice(0, -1);
    if (glob.endsWith('*') && !head.includes('*')) return `^${lit(head)}`;
  }
  return '^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$';
}

/**
 * One matcher for a list of globs: true when any glob matches (`compileGlob` semantics), as a
 * single regular expression built once, so a list costs one scan instead of one call per glob.
 */
export function compileGlobs(globs: readonly string[]): (s: string) => boolean {
  if (globs.length === 0) return () => false;
  if (globs.length === 1) return compileGlob(globs[0] as string);
  const re = new RegExp(globs.map((g) => `(?:${globSource(g)})`).join('|'));
  return (s) => re.test(s);
}
