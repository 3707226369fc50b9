/**
 * A small but correct MaxMind DB (MMDB v2) writer for tests.
 *
 * - Search tree of 24- or 28-bit records; IPv6 trees put IPv4 networks under ::/96 (as the
 *   reader expects), IPv4 trees (ip_version 4) use 32-bit keys.
 * - Data section: maps, arrays, UTF-8 strings, uint16/uint32/uint64, booleans, doubles.
 * - Metadata after the `\xAB\xCD\xEFMaxMind.com` marker.
 * More specific networks override less specific ones regardless of insertion order.
 */
import { parseCidr } from '../../src/net/cidr.js';

export type MmdbValue = string | number | boolean | bigint | readonly MmdbValue[] | { readonly [k: string]: MmdbValue };

export interface MmdbOptions {
  readonly ipVersion?: 4 | 6;
  readonly recordSize?: 24 | 28;
  readonly databaseType?: string;
  readonly description?: string;
  readonly buildEpoch?: number;
}

interface TNode {
  l: TNode | number | null; // number = index into data records
  r: TNode | number | null;
}

const METADATA_MARKER = Buffer.from([0xab, 0xcd, 0xef, ...Buffer.from('MaxMind.com')]);

function ctrl(type: number, size: number): Buffer {
  const out: number[] = [];
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 285) {
    sizeBits = 29;
    extra.push(size - 29);
  } else if (size < 65_821) {
    sizeBits = 30;
    const v = size - 285;
    extra.push(v >> 8, v & 255);
  } else {
    sizeBits = 31;
    const v = size - 65_821;
    extra.push((v >> 16) & 255, (v >> 8) & 255, v & 255);
  }
  if (type <= 7) out.push((type << 5) | sizeBits);
  else out.push(sizeBits, type - 7);
  return Buffer.from([...out, ...extra]);
}

function uintBytes(v: bigint): Buffer {
  const bytes: number[] = [];
  let x = v;
  while (x > 0n) {
    bytes.unshift(Number(x & 255n));
    x >>= 8n;
  }
  return Buffer.from(bytes);
}

/** Encode one value of the data section. */
export function encodeValue(v: MmdbValue): Buffer {
  if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([ctrl(2, b.length), b]);
  }
  if (typeof v === 'boolean') return ctrl(14, v ? 1 : 0);
  if (typeof v === 'bigint') {
    const b = uintBytes(v);
    return Buffer.concat([ctrl(9, b.length), b]);
  }
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      const b = uintBytes(BigInt(v));
      return Buffer.concat([ctrl(6, b.length), b]);
    }
    const b = Buffer.alloc(8);
    b.writeDoubleBE(v);
    return Buffer.concat([ctrl(3, 8), b]);
  }
  if (Array.isArray(v)) {
    return Buffer.concat([ctrl(11, v.length), ...v.map((x: MmdbValue) => encodeValue(x))]);
  }
  const entries = Object.entries(v as { readonly [k: string]: MmdbValue });
  return Buffer.concat([ctrl(7, entries.length), ...entries.flatMap(([k, x]) => [encodeValue(k), encodeValue(x)])]);
}

function uint16(v: number): Buffer {
  const b = uintBytes(BigInt(v));
  return Buffer.concat([ctrl(5, b.length), b]);
}

export class MmdbWriter {
  private readonly root: TNode = { l: null, r: null };
  private readonly data: MmdbValue[] = [];
  /** Prefix length (tree depth) of each data record's network. */
  private readonly depth: number[] = [];
  private readonly o: Required<MmdbOptions>;

  constructor(opts: MmdbOptions = {}) {
    this.o = {
      ipVersion: opts.ipVersion ?? 6,
      recordSize: opts.recordSize ?? 24,
      databaseType: opts.databaseType ?? 'Test-ASN',
      description: opts.description ?? 'falco-companion test database',
      buildEpoch: opts.buildEpoch ?? 1_700_000_000,
    };
  }

  /** Add a network (`1.2.3.0/24`, `2001:db8::/32`, or a bare address) with its record. */
  insert(cidr: string, value: MmdbValue): this {
    const c = parseCidr(cidr);
    if (!c) throw new Error(`bad CIDR ${cidr}`);
    let bits: number[];
    const bitsOf = (n: bigint, width: number, count: number): number[] => {
      const out: number[] = [];
      for (let i = 0; i < count; i++) out.push(Number((n >> BigInt(width - 1 - i)) & 1n));
      return out;
    };
    if (this.o.ipVersion === 4) {
      if (c.v !== 4) throw new Error(`IPv6 network ${cidr} in an IPv4 database`);
      bits = bitsOf(BigInt(c.net), 32, c.prefix);
    } else if (c.v === 4) {
      bits = [...new Array<number>(96).fill(0), ...bitsOf(BigInt(c.net), 32, c.prefix)];
    } else {
      bits = bitsOf(c.net as bigint, 128, c.prefix);
    }
    if (bits.length === 0) throw new Error('a /0 network is not supported');
    this.data.push(value);
    this.depth.push(bits.length);
    const idx = this.data.length - 1;
    let node = this.root;
    for (let i = 0; i < bits.length; i++) {
      const side = bits[i] === 0 ? 'l' : 'r';
      if (i === bits.length - 1) {
        // More specific networks inserted earlier live below: keep them, overwrite the rest.
        const cur = node[side];
        if (cur !== null && typeof cur === 'object') overwriteLessSpecific(cur, idx, this.depth);
        else node[side] = idx;
        return this;
      }
      const cur = node[side];
      if (cur === null || typeof cur === 'number') {
        const next: TNode = { l: cur, r: cur }; // split a less specific leaf
        node[side] = next;
        node = next;
      } else node = cur;
    }
    return this;
  }


  /** Make ::ffff:0:0/96 an alias of the IPv4 subtree at ::/96, as MaxMind's databases do. */
  private aliasMapped(): void {
    let v4: TNode | number | null = this.root;
    for (let i = 0; i < 96 && v4 !== null && typeof v4 === 'object'; i++) v4 = v4.l;
    if (v4 === null || typeof v4 === 'number') return;
    let node = this.root;
    for (let i = 0; i < 95; i++) {
      const side = i < 80 ? 'l' : 'r';
      let c = node[side];
      if (c === null) {
        c = { l: null, r: null };
        node[side] = c;
      }
      if (typeof c === 'number') return; // covered by a network already
      node = c;
    }
    if (node.r === null) node.r = v4;
  }

  /** The database file. */
  build(): Buffer {
    if (this.o.ipVersion === 6) this.aliasMapped();
    // Number nodes breadth-first; root is 0. The alias makes the tree a DAG: number each node once.
    const nodes: TNode[] = [];
    const ids = new Map<TNode, number>();
    const queue: TNode[] = [this.root];
    while (queue.length > 0) {
      const n = queue.shift() as TNode;
      if (ids.has(n)) continue;
      ids.set(n, nodes.length);
      nodes.push(n);
      for (const c of [n.l, n.r]) if (c !== null && typeof c === 'object' && !ids.has(c)) queue.push(c);
    }
    const nodeCount = nodes.length;
    // Data section, each record once.
    const offsets: number[] = [];
    const chunks: Buffer[] = [];
    let off = 0;
    for (const v of this.data) {
      const b = encodeValue(v);
      offsets.push(off);
      chunks.push(b);
      off += b.length;
    }
    const dataSection = Buffer.concat(chunks);
    const recordValue = (c: TNode | number | null): number => {
      if (c === null) return nodeCount;
      if (typeof c === 'number') return nodeCount + 16 + (offsets[c] as number);
      return ids.get(c) as number;
    };
    const rs = this.o.recordSize;
    const maxRecord = 2 ** rs - 1;
    const nodeBytes = (rs * 2) / 8;
    const tree = Buffer.alloc(nodeCount * nodeBytes);
    nodes.forEach((n, i) => {
      const l = recordValue(n.l);
      const r = recordValue(n.r);
      if (l > maxRecord || r > maxRecord) throw new Error(`record value does not fit in ${rs} bits`);
      const o = i * nodeBytes;
      if (rs === 24) {
        tree.writeUIntBE(l, o, 3);
        tree.writeUIntBE(r, o + 3, 3);
      } else {
        tree.writeUIntBE(l & 0xffffff, o, 3);
        tree[o + 3] = (((l >>> 24) & 0x0f) << 4) | ((r >>> 24) & 0x0f);
        tree.writeUIntBE(r & 0xffffff, o + 4, 3);
      }
    });
    const meta = Buffer.concat([
      ctrl(7, 9),
      encodeValue('binary_format_major_version'),
      uint16(2),
      encodeValue('binary_format_minor_version'),
      uint16(0),
      encodeValue('build_epoch'),
      encodeValue(BigInt(this.o.buildEpoch)),
      encodeValue('database_type'),
      encodeValue(this.o.databaseType),
      encodeValue('description'),
      encodeValue({ en: this.o.description }),
      encodeValue('ip_version'),
      uint16(this.o.ipVersion),
      encodeValue('languages'),
      encodeValue(['en']),
      encodeValue('node_count'),
      encodeValue(nodeCount),
      encodeValue('record_size'),
      uint16(rs),
    ]);
    return Buffer.concat([tree, Buffer.alloc(16), dataSection, METADATA_MARKER, meta]);
  }
}

/** Fill empty slots and leaves of less specific networks below `n` with `idx`; keep more specific ones. */
function overwriteLessSpecific(n: TNode, idx: number, depth: readonly number[]): void {
  for (const side of ['l', 'r'] as const) {
    const c = n[side];
    if (c === null || (typeof c === 'number' && (depth[c] as number) < (depth[idx] as number))) n[side] = idx;
    else if (typeof c === 'object') overwriteLessSpecific(c, idx, depth);
  }
}
