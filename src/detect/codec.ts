/**
 * The one codec of detector state (phase-b contract 2), used by the checkpoints
 * (src/detect/checkpoint.ts): plain objects, arrays, Map, Set, bigint, numbers, strings, booleans,
 * null, undefined, {@link BoundedMap} (max, eviction count and LRU order kept), LosslessNumber (an
 * alert's big integers) and the slim Signals detectors keep (`retain`: plain objects holding a
 * frozen slim alert). Anything else (functions, other class instances) is refused with the path
 * to it, so a detector that breaks the contract fails its first checkpoint test, not a restart.
 *
 * Binary and compact: every string is written once and referenced after (rule names, container
 * ids, executables repeat across thousands of kept signals), every object shape (its key list)
 * once, bigints as 8 bytes, small integers as varints. Object identity is kept: an object reached
 * twice (one kept signal shared by several arms, an alert's enrichment record shared by its
 * signals) is written once and decoded as one object, so `includes` / Set membership by identity
 * behave as before the restart. Frozen objects come back frozen.
 *
 * Decoding untrusted or truncated bytes throws {@link StateCodecError}; it never loops or
 * allocates beyond what the bytes can describe.
 */
import { CompanionError } from '../errors.js';
import { LosslessNumber } from '../json/lossless.js';
import { BoundedMap } from './detectors/kit.js';

/** Bumped when the byte layout changes (checkpoints of another layout start fresh). */
export const CODEC_VERSION = 1;
const MAGIC = [0x46, 0x43, 0x53]; // "FCS"

const enum Tag {
  Null = 0,
  Undef = 1,
  False = 2,
  True = 3,
  Int = 4,
  F64 = 5,
  Str = 6,
  StrRef = 7,
  Big64 = 8,
  BigStr = 9,
  Arr = 10,
  Obj = 11,
  ObjShape = 12,
  Map = 13,
  Set = 14,
  BMap = 15,
  Ref = 16,
  Frozen = 17,
  Lossless = 18,
  /** An array of integers: count, then zigzag varints of the differences to the previous one. */
  IntArr = 19,
}

export class StateCodecError extends CompanionError {
  /** Where in the value it happened (keys from the root), when encoding. */
  readonly path: (string | number)[] = [];
  constructor(message: string) {
    super('E_STATE_CODEC', message);
    this.name = 'StateCodecError';
  }
}

const MAX_DEPTH = 64;

/** Every element an integer small enough for a zigzag varint of its difference to the previous one. */
function isIntArray(a: readonly unknown[]): boolean {
  for (const x of a) if (typeof x !== 'number' || !Number.isInteger(x) || Math.abs(x) > ZIGZAG_MAX / 2 || Object.is(x, -0)) return false;
  return true;
}
/** Integers up to this magnitude are varints (their zigzag form stays a safe integer); larger ones are doubles. */
const ZIGZAG_MAX = 2 ** 52;
const BIG_MIN = -(2n ** 63n);
const BIG_MAX = 2n ** 63n - 1n;

/** What follows an object's header: its entries (array, map, set), its keys' values (a plain object: the keys), or nothing. */
type Entries = typeof DONE | typeof ARR | typeof MAP | typeof SET | readonly string[];
const DONE = 0;
const ARR = 1;
const MAP = 2;
const SET = 3;

/**
 * Numbers for the strings and objects written so far, in the order written, in maps of at most
 * {@link INDEX_SHARD} entries: a JavaScript Map rehashes everything when it doubles (≈ 55 ms at a
 * million objects, one stall of the sliced encoding); shards keep each doubling small. Lookups go
 * newest shard first (a full-budget state needs ~10 of them).
 */
class Index<K> {
  private readonly full: Map<K, number>[] = [];
  private cur = new Map<K, number>();
  size = 0;

  get(k: K): number | undefined {
    const i = this.cur.get(k);
    if (i !== undefined) return i;
    for (let j = this.full.length - 1; j >= 0; j--) {
      const x = (this.full[j] as Map<K, number>).get(k);
      if (x !== undefined) return x;
    }
    return undefined;
  }

  add(k: K): void {
    if (this.cur.size >= INDEX_SHARD) {
      this.full.push(this.cur);
      this.cur = new Map();
    }
    this.cur.set(k, this.size++);
  }
}
const INDEX_SHARD = 1 << 17;

class Writer {
  buf = Buffer.allocUnsafe(1 << 16);
  at = 0;
  private readonly strings = new Index<string>();
  /** Shapes by key count and first key: [keys, index] candidates compared key by key. */
  private readonly shapes = new Map<string, [readonly string[], number][]>();
  private shapeCount = 0;
  private readonly objects = new Index<object>();

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.at++] = v;
  }

  /** Unsigned LEB128 of a safe non-negative integer. */
  uint(v: number): void {
    this.room(8);
    while (v >= 0x80) {
      this.buf[this.at++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.at++] = v;
  }

  str(s: string): void {
    const idx = this.strings.get(s);
    if (idx !== undefined) {
      this.u8(Tag.StrRef);
      this.uint(idx);
      return;
    }
    this.strings.add(s);
    const n = Buffer.byteLength(s, 'utf8');
    this.u8(Tag.Str);
    this.uint(n);
    this.room(n);
    this.at += this.buf.write(s, this.at, 'utf8');
  }

  value(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'string':
        this.str(v);
        return;
      case 'number':
        if (Number.isInteger(v) && Math.abs(v) <= ZIGZAG_MAX && !Object.is(v, -0)) {
          this.u8(Tag.Int);
          this.uint(v >= 0 ? v * 2 : -v * 2 - 1); // zigzag
        } else {
          this.u8(Tag.F64);
          this.room(8);
          this.at = this.buf.writeDoubleLE(v, this.at);
        }
        return;
      case 'boolean':
        this.u8(v ? Tag.True : Tag.False);
        return;
      case 'undefined':
        this.u8(Tag.Undef);
        return;
      case 'bigint':
        if (v >= BIG_MIN && v <= BIG_MAX) {
          this.u8(Tag.Big64);
          this.room(8);
          this.at = this.buf.writeBigInt64LE(v, this.at);
        } else {
          this.u8(Tag.BigStr);
          this.str(v.toString());
        }
        return;
      case 'object':
        if (v === null) this.u8(Tag.Null);
        else this.object(v, depth);
        return;
      default:
        throw new StateCodecError(`cannot encode a ${typeof v}`);
    }
  }

  private object(v: object, depth: number): void {
    const kind = this.open(v, depth);
    if (kind === DONE) return;
    const d = depth + 1;
    if (kind === ARR) {
      const a = v as unknown[];
      for (let i = 0; i < a.length; i++) this.at1(a[i], d, i);
    } else if (kind === MAP) {
      for (const [k, x] of (v as Map<unknown, unknown>).entries()) {
        this.at1(k, d, '<key>');
        this.at1(x, d, String(k));
      }
    } else if (kind === SET) {
      for (const x of v as Set<unknown>) this.at1(x, d, '<item>');
    } else {
      const o = v as Record<string, unknown>;
      for (const k of kind) this.at1(o[k], d, k);
    }
  }

  /**
   * Writes a reference to an object already written, or the object's tags and counts (all of it
   * for an integer array or a LosslessNumber); returns what its entries are when they follow
   * (the keys of a plain object), else DONE.
   */
  private open(v: object, depth: number): Entries {
    const seen = this.objects.get(v);
    if (seen !== undefined) {
      this.u8(Tag.Ref);
      this.uint(seen);
      return DONE;
    }
    if (depth >= MAX_DEPTH) throw new StateCodecError(`nested deeper than ${MAX_DEPTH} levels`);
    if (Array.isArray(v)) {
      this.objects.add(v);
      if (Object.isFrozen(v)) this.u8(Tag.Frozen);
      if (v.length >= 4 && isIntArray(v)) {
        this.u8(Tag.IntArr);
        this.uint(v.length);
        let prev = 0;
        for (const x of v as number[]) {
          const d = x - prev;
          this.uint(d >= 0 ? d * 2 : -d * 2 - 1);
          prev = x;
        }
        return DONE;
      }
      this.u8(Tag.Arr);
      this.uint(v.length);
      return ARR;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      this.objects.add(v);
      const keys = Object.keys(v);
      if (Object.isFrozen(v)) this.u8(Tag.Frozen);
      const shape = this.shape(keys);
      if (shape >= 0) {
        this.u8(Tag.ObjShape);
        this.uint(shape);
      } else {
        this.u8(Tag.Obj);
        this.uint(keys.length);
        for (const k of keys) this.str(k);
      }
      return keys;
    }
    if (v instanceof BoundedMap) {
      this.objects.add(v);
      const m = v as BoundedMap<unknown, unknown>;
      this.u8(Tag.BMap);
      this.uint(m.max);
      this.uint(m.evicted);
      this.uint(m.size);
      return MAP;
    }
    if (v instanceof Map) {
      this.objects.add(v);
      this.u8(Tag.Map);
      this.uint(v.size);
      return MAP;
    }
    if (v instanceof Set) {
      this.objects.add(v);
      this.u8(Tag.Set);
      this.uint(v.size);
      return SET;
    }
    if (v instanceof LosslessNumber) {
      this.objects.add(v);
      this.u8(Tag.Lossless);
      this.str(v.raw);
      return DONE;
    }
    const name = (proto as { constructor?: { name?: string } } | null)?.constructor?.name ?? 'object';
    throw new StateCodecError(`cannot encode an instance of ${name} (state holds plain data, Map, Set, BoundedMap only)`);
  }

  /** The index of a known shape with exactly these keys, else -1 (and the keys become a new shape). */
  private shape(keys: readonly string[]): number {
    const sig = `${keys.length}|${keys[0] ?? ''}`;
    let list = this.shapes.get(sig);
    if (list) {
      outer: for (const [ks, idx] of list) {
        for (let i = 1; i < ks.length; i++) if (ks[i] !== keys[i]) continue outer;
        return idx;
      }
    } else this.shapes.set(sig, (list = []));
    list.push([keys, this.shapeCount++]);
    return -1;
  }

  /** One child value; a failure records where it happened. */
  private at1(v: unknown, depth: number, key: string | number): void {
    try {
      this.value(v, depth);
    } catch (err) {
      if (err instanceof StateCodecError) err.path.unshift(key);
      throw err;
    }
  }

  /**
   * {@link value} in slices, the same bytes: the objects and containers of the first
   * {@link SLICE_DEPTH} levels are written entry by entry, and after an entry the generator
   * yields when `due()` says the slice is over; deeper values are written whole. The value must
   * not change until the generator is done (the checkpoint holds the part: DetectionEngine.hold).
   */
  *steps(v: unknown, depth: number, due: () => boolean): Generator<void, void, void> {
    if (depth >= SLICE_DEPTH || v === null || typeof v !== 'object') {
      this.value(v, depth);
      return;
    }
    const kind = this.open(v, depth);
    if (kind === DONE) return;
    const d = depth + 1;
    if (kind === ARR) {
      const a = v as unknown[];
      for (let i = 0; i < a.length; i++) {
        yield* this.stepAt(a[i], d, i, due);
        if (due()) yield;
      }
    } else if (kind === MAP) {
      for (const [k, x] of (v as Map<unknown, unknown>).entries()) {
        this.at1(k, d, '<key>');
        yield* this.stepAt(x, d, String(k), due);
        if (due()) yield;
      }
    } else if (kind === SET) {
      for (const x of v as Set<unknown>) {
        yield* this.stepAt(x, d, '<item>', due);
        if (due()) yield;
      }
    } else {
      const o = v as Record<string, unknown>;
      for (const k of kind) {
        yield* this.stepAt(o[k], d, k, due);
        if (due()) yield;
      }
    }
  }

  private *stepAt(v: unknown, depth: number, key: string | number, due: () => boolean): Generator<void, void, void> {
    try {
      yield* this.steps(v, depth, due);
    } catch (err) {
      if (err instanceof StateCodecError) err.path.unshift(key);
      throw err;
    }
  }
}

/** Levels of a state written entry by entry by {@link encodeStateSliced} (the state, its fields, their entries). */
const SLICE_DEPTH = 3;

/** Encode a detector state (or any value the contract allows). Throws {@link StateCodecError}. */
export function encodeState(value: unknown): Buffer {
  const w = started();
  try {
    w.value(value, 0);
  } catch (err) {
    throw withPath(err);
  }
  return w.buf.subarray(0, w.at);
}

function started(): Writer {
  const w = new Writer();
  for (const b of MAGIC) w.u8(b);
  w.u8(CODEC_VERSION);
  return w;
}

/** An encoding error with where it happened in its message. */
function withPath(err: unknown): unknown {
  return err instanceof StateCodecError && err.path.length > 0 ? new StateCodecError(`${err.message} at ${err.path.join('.')}`) : err;
}

/**
 * {@link encodeState} in slices, for a state too large to encode in one go on the event loop (a
 * beacon state at full budget takes ~0.5 s): a generator that yields, between entries of the
 * state's first three levels (the state, its fields, their entries), once `sliceMs` have passed
 * since it was (re)started; the caller resumes it in a later turn of the event loop. Its value is
 * the bytes encodeState gives. The state must not change until it is done: the periodic
 * checkpoint holds the part meanwhile (DetectionEngine.hold). A slice lasts `sliceMs` plus the
 * entry in hand (an entry of the third level is written whole).
 */
export function* encodeStateSliced(value: unknown, sliceMs: number, now: () => number = () => performance.now()): Generator<void, Buffer, void> {
  const w = started();
  let until = now() + sliceMs;
  const due = (): boolean => now() >= until;
  try {
    const steps = w.steps(value, 0, due);
    while (!steps.next().done) {
      yield;
      until = now() + sliceMs;
    }
  } catch (err) {
    throw withPath(err);
  }
  return w.buf.subarray(0, w.at);
}

class Reader {
  at = 0;
  private readonly strings: string[] = [];
  private readonly shapes: string[][] = [];
  private readonly objects: unknown[] = [];
  constructor(private readonly buf: Buffer) {}

  private fail(what: string): never {
    throw new StateCodecError(`corrupt state at byte ${this.at}: ${what}`);
  }

  u8(): number {
    if (this.at >= this.buf.length) this.fail('truncated');
    return this.buf[this.at++] as number;
  }

  uint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      const b = this.u8();
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 0x80;
    }
    return this.fail('varint too long');
  }

  /** A count of items each taking at least one byte: never more than the bytes left. */
  count(): number {
    const n = this.uint();
    if (n > this.buf.length - this.at) this.fail(`count ${n} beyond the data`);
    return n;
  }

  str(): string {
    const tag = this.u8();
    return this.strTagged(tag);
  }

  private strTagged(tag: number): string {
    if (tag === Tag.StrRef) {
      const i = this.uint();
      const s = this.strings[i];
      if (s === undefined) this.fail(`string ref ${i}`);
      return s;
    }
    if (tag !== Tag.Str) this.fail(`expected a string, got tag ${tag}`);
    const n = this.count();
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    this.strings.push(s);
    return s;
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH + 1) this.fail('nested too deep');
    const tag = this.u8();
    switch (tag) {
      case Tag.Null:
        return null;
      case Tag.Undef:
        return undefined;
      case Tag.False:
        return false;
      case Tag.True:
        return true;
      case Tag.Int: {
        const z = this.uint();
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case Tag.F64: {
        if (this.at + 8 > this.buf.length) this.fail('truncated');
        const v = this.buf.readDoubleLE(this.at);
        this.at += 8;
        return v;
      }
      case Tag.Str:
      case Tag.StrRef:
        return this.strTagged(tag);
      case Tag.Big64: {
        if (this.at + 8 > this.buf.length) this.fail('truncated');
        const v = this.buf.readBigInt64LE(this.at);
        this.at += 8;
        return v;
      }
      case Tag.BigStr: {
        const s = this.str();
        if (!/^-?\d+$/.test(s)) this.fail('bad bigint');
        return BigInt(s);
      }
      case Tag.Ref: {
        const i = this.uint();
        if (i >= this.objects.length) this.fail(`object ref ${i}`);
        return this.objects[i];
      }
      case Tag.Frozen: {
        const next = this.buf[this.at];
        if (next !== Tag.Arr && next !== Tag.IntArr && next !== Tag.Obj && next !== Tag.ObjShape) this.fail('frozen marker before a non-object');
        return Object.freeze(this.value(depth));
      }
      case Tag.IntArr: {
        const n = this.count();
        const a: number[] = [];
        this.objects.push(a);
        let prev = 0;
        for (let i = 0; i < n; i++) {
          const z = this.uint();
          prev += z % 2 === 0 ? z / 2 : -(z + 1) / 2;
          a.push(prev);
        }
        return a;
      }
      case Tag.Arr: {
        const n = this.count();
        const a: unknown[] = [];
        this.objects.push(a);
        for (let i = 0; i < n; i++) a.push(this.value(depth + 1));
        return a;
      }
      case Tag.Obj:
      case Tag.ObjShape: {
        let keys: string[];
        if (tag === Tag.Obj) {
          const n = this.count();
          keys = [];
          for (let i = 0; i < n; i++) keys.push(this.str());
          this.shapes.push(keys);
        } else {
          const i = this.uint();
          const s = this.shapes[i];
          if (s === undefined) this.fail(`shape ref ${i}`);
          keys = s;
        }
        const o: Record<string, unknown> = {};
        this.objects.push(o);
        for (const k of keys) {
          const v = this.value(depth + 1);
          if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
          else o[k] = v;
        }
        return o;
      }
      case Tag.Map: {
        const n = this.count();
        const m = new Map<unknown, unknown>();
        this.objects.push(m);
        for (let i = 0; i < n; i++) {
          const k = this.value(depth + 1);
          m.set(k, this.value(depth + 1));
        }
        return m;
      }
      case Tag.Set: {
        const n = this.count();
        const s = new Set<unknown>();
        this.objects.push(s);
        for (let i = 0; i < n; i++) s.add(this.value(depth + 1));
        return s;
      }
      case Tag.BMap: {
        const max = this.uint();
        const evicted = this.uint();
        const n = this.count();
        if (max < 1) this.fail('bounded map without room');
        const m = new BoundedMap<unknown, unknown>(max);
        this.objects.push(m);
        for (let i = 0; i < n; i++) {
          const k = this.value(depth + 1);
          m.set(k, this.value(depth + 1));
        }
        m.evicted = evicted;
        return m;
      }
      case Tag.Lossless: {
        const v = new LosslessNumber(this.str());
        this.objects.push(v);
        return v;
      }
      default:
        return this.fail(`unknown tag ${tag}`);
    }
  }

  end(): void {
    if (this.at !== this.buf.length) this.fail(`${this.buf.length - this.at} trailing bytes`);
  }
}

/** Decode what {@link encodeState} wrote. Throws {@link StateCodecError} on a foreign, newer or corrupt buffer. */
export function decodeState(buf: Buffer): unknown {
  if (buf.length < 5 || MAGIC.some((b, i) => buf[i] !== b)) throw new StateCodecError('not a falco-companion state blob');
  const v = buf[3] as number;
  if (v !== CODEC_VERSION) throw new StateCodecError(`state codec version ${v}, this build reads ${CODEC_VERSION}`);
  const r = new Reader(buf);
  r.at = 4;
  const out = r.value(0);
  r.end();
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const p: unknown = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * Restore a decoded state into a fresh one from the detector's `init()`: the fresh object keeps
 * what cannot be stored (BoundedMaps' `onDrop` callbacks, which keep owner totals in step) and the
 * current settings' bounds. Plain fields are copied first, then every BoundedMap of the fresh state
 * is refilled from the decoded one in LRU order (oldest first; beyond a smaller new `max` the
 * oldest are evicted and counted, their `onDrop` adjusting the copied totals). Fields of the fresh
 * state the decoded one lacks keep their initial values. A fresh state that is not a plain object
 * is replaced by the decoded value.
 */
export function restoreInto<S>(fresh: S, decoded: unknown): S {
  if (!isPlain(fresh) || !isPlain(decoded)) return decoded as S;
  const target = fresh as Record<string, unknown>;
  const maps: [BoundedMap<unknown, unknown>, BoundedMap<unknown, unknown>][] = [];
  for (const [k, v] of Object.entries(decoded)) {
    const cur = target[k];
    if (cur instanceof BoundedMap && v instanceof BoundedMap) maps.push([cur as BoundedMap<unknown, unknown>, v as BoundedMap<unknown, unknown>]);
    else target[k] = v;
  }
  for (const [cur, dec] of maps) {
    for (const [k, v] of dec.entries()) cur.set(k, v);
    cur.evicted += dec.evicted;
  }
  return fresh;
}

/** Entries a state holds at its top level (sizes of its maps, sets and arrays): the state-size gauge. */
export function stateEntries(state: unknown): number {
  if (!isPlain(state)) return 0;
  let n = 0;
  for (const v of Object.values(state)) {
    if (v instanceof BoundedMap || v instanceof Map || v instanceof Set) n += v.size;
    else if (Array.isArray(v)) n += v.length;
  }
  return n;
}
