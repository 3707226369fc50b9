/**
 * The merge semantics of everything learned cluster-wide, as pure functions (the Redis scripts in
 * ./redis-store.ts apply the same rules on the server; test/cluster/tuple.test.ts checks both).
 *
 * A learned fact is a tuple of cells; every cell has a merge operator:
 *
 * | op  | cell                         | merge                           |
 * |-----|------------------------------|---------------------------------|
 * | `<` | first seen (ms), ...         | minimum                         |
 * | `>` | last seen (ms), a count seen | maximum                         |
 * | `+` | a count of observations      | sum (deltas: each sent once)    |
 * | `^` | a fact (digest, created ...) | the larger string, byte order   |
 *
 * An absent cell (null) loses to any value. `<`, `>` and `^` make a join semilattice (commutative,
 * associative, idempotent): applying a merge twice, or in any order, gives the same state. `+` is
 * commutative and associative but not idempotent: a delta is added once per write, so a write
 * retried after a lost reply counts twice (counts are approximate; first/last seen are exact).
 *
 * Tuples are encoded as cells joined by U+001F, each cell its operator then its value
 * (`<1700000000000\x1f>1700000060000\x1f+3`). String values lose any U+001F they contain.
 */

export type Op = '<' | '>' | '+' | '^';
export type Cell = number | string | null;
export type Tuple = readonly Cell[];

export const SEP = '\u001f';
const OPS: ReadonlySet<string> = new Set(['<', '>', '+', '^']);

/** `a` before `b` in UTF-8 byte order (what Redis compares), < 0, 0 or > 0. */
export function byteCompare(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function mergeCell(op: Op, a: Cell, b: Cell): Cell {
  if (a === null) return b;
  if (b === null) return a;
  switch (op) {
    case '<':
      return Number(b) < Number(a) ? b : a;
    case '>':
      return Number(b) > Number(a) ? b : a;
    case '+':
      return Number(a) + Number(b);
    case '^':
      return byteCompare(String(b), String(a)) > 0 ? b : a;
  }
}

/** Merge two tuples of the shape `ops` (one operator per cell). */
export function mergeTuple(ops: string, a: Tuple, b: Tuple): Tuple {
  const out: Cell[] = new Array<Cell>(ops.length);
  for (let i = 0; i < ops.length; i++) out[i] = mergeCell(ops[i] as Op, a[i] ?? null, b[i] ?? null);
  return out;
}

/** True when `ops` names only the four operators. */
export function validOps(ops: string): boolean {
  if (ops.length === 0) return false;
  for (const c of ops) if (!OPS.has(c)) return false;
  return true;
}

function cellText(op: Op, v: Cell): string {
  if (v === null) return '';
  if (op === '^') return String(v).split(SEP).join('');
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? String(Math.trunc(n)) : '';
}

export function encodeTuple(ops: string, t: Tuple): string {
  let s = '';
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i] as Op;
    if (i > 0) s += SEP;
    s += op + cellText(op, t[i] ?? null);
  }
  return s;
}

/**
 * Decode a stored value of the shape `ops`; null when it does not have that shape (another
 * version's layout, a foreign key). A trailing `@...` cell (the server's bookkeeping) is ignored.
 */
export function decodeTuple(ops: string, s: string): Tuple | null {
  const parts = s.split(SEP);
  if (parts.length > ops.length && (parts[ops.length] ?? '').startsWith('@')) parts.length = ops.length;
  if (parts.length !== ops.length) return null;
  const out: Cell[] = [];
  for (let i = 0; i < ops.length; i++) {
    const p = parts[i] as string;
    if (p[0] !== ops[i]) return null;
    const v = p.slice(1);
    if (v === '') out.push(null);
    else if (ops[i] === '^') out.push(v);
    else {
      const n = Number(v);
      if (!Number.isFinite(n)) return null;
      out.push(n);
    }
  }
  return out;
}

/** A bounded map of tuples: the state of one group (an image's destinations, a series' points). */
export type TupleMap = ReadonlyMap<string, Tuple>;

/**
 * Merge two groups: union of the keys, tuples merged per key, then bounded to the `max` entries
 * with the highest `recency` cell (ties: the larger key in byte order), as the store trims. Keys
 * listed in `keep` are never dropped. Commutative and idempotent; the kept key set is associative
 * (a key dropped by an intermediate bound would also be dropped by the bound over everything).
 */
export function mergeGroups(ops: string, recency: number, max: number, a: TupleMap, b: TupleMap, keep: ReadonlySet<string> = new Set()): Map<string, Tuple> {
  const all = new Map<string, Tuple>(a);
  for (const [k, t] of b) {
    const old = all.get(k);
    all.set(k, old ? mergeTuple(ops, old, t) : t);
  }
  return boundGroup(recency, max, all, keep);
}

/** Keep the `max` most recent entries of a group (plus `keep`), by the recency cell then the key. */
export function boundGroup(recency: number, max: number, m: Map<string, Tuple>, keep: ReadonlySet<string> = new Set()): Map<string, Tuple> {
  const candidates = [...m.keys()].filter((k) => !keep.has(k));
  if (candidates.length <= max) return m;
  const rec = (k: string): number => Number(m.get(k)?.[recency] ?? -Infinity);
  candidates.sort((x, y) => rec(y) - rec(x) || byteCompare(y, x));
  const out = new Map<string, Tuple>();
  for (const [k, t] of m) if (keep.has(k)) out.set(k, t);
  for (const k of candidates.slice(0, max)) out.set(k, m.get(k) as Tuple);
  return out;
}
