/**
 * A tiny schema language: one definition gives types, defaults, environment variable names and
 * documentation (docs/config.md and the example config are checked against it in tests). The
 * config file (src/config/schema.ts) and the companion rules file (src/detect/rules/schema.ts) are
 * both written in it; src/config/validate.ts checks a YAML document against a spec and reports
 * every problem at once as `file:line:col: path: message`.
 */
import { parseCidr, type Cidr } from '../net/cidr.js';

export type Spec =
  | StringSpec
  | IntSpec
  | NumberSpec
  | BoolSpec
  | EnumSpec
  | DurationSpec
  | SizeSpec
  | ListSpec
  | ObjectSpec
  | MapSpec
  | ScalarSpec
  | CidrSpec
  | DaysSpec
  | UtcTimeSpec;

interface Base {
  readonly doc: string;
  /** Env var overrides are derived from the path unless `env: false`. */
  readonly env?: boolean;
  /** Absent is a problem (`path: is required`) instead of taking the default. */
  readonly required?: boolean;
  /** Absent (or YAML null) is null instead of the default (see {@link opt}). */
  readonly optional?: boolean;
  /**
   * A setting that is no longer used: still accepted (and checked) so old files keep loading, left
   * out of the validated value, and reported as a warning with this text (see {@link deprecated}).
   */
  readonly deprecated?: string;
}

export interface StringSpec extends Base {
  readonly kind: 'string';
  readonly default: string | null;
  /** Extra check; return an error message or null. */
  readonly check?: (v: string) => string | null;
}
export interface IntSpec extends Base {
  readonly kind: 'int';
  readonly default: number;
  readonly min?: number;
  readonly max?: number;
  /** Extra check; return an error message or null. */
  readonly check?: (v: number) => string | null;
}
export interface NumberSpec extends Base {
  readonly kind: 'number';
  readonly default: number;
  readonly min?: number;
  readonly max?: number;
}
export interface BoolSpec extends Base {
  readonly kind: 'bool';
  readonly default: boolean;
}
export interface EnumSpec extends Base {
  readonly kind: 'enum';
  readonly values: readonly string[];
  readonly default: string;
  /** Case-insensitive match, value normalised to the listed spelling. */
  readonly caseInsensitive?: boolean;
}
/** Durations: numbers are milliseconds; strings like `250ms`, `5s`, `2m`, `1h`, `7d`. Value in ms. */
export interface DurationSpec extends Base {
  readonly kind: 'duration';
  readonly default: number;
  readonly min?: number;
  readonly max?: number;
}
/** Sizes: numbers are bytes; strings like `512KiB`, `1MiB`, `2GB`. Value in bytes. */
export interface SizeSpec extends Base {
  readonly kind: 'size';
  readonly default: number;
  readonly min?: number;
}
export interface ListSpec extends Base {
  readonly kind: 'list';
  readonly items: Exclude<Spec, ObjectSpec | ListSpec | MapSpec> | ObjectSpec;
  readonly default: readonly unknown[];
  /**
   * A lone scalar where the list is expected: `split` (the default) splits it on commas, as
   * environment values are; `item` makes it a one-item list (globs, rule names, CIDRs: a rule name
   * may contain a comma).
   */
  readonly scalar?: 'split' | 'item';
}

/** Reports a problem found by an object's cross-field check, at a path relative to the object. */
export type Report = (message: string, at?: readonly (string | number)[]) => void;

export interface ObjectSpec extends Base {
  readonly kind: 'object';
  readonly fields: Readonly<Record<string, Spec>>;
  /** What the keys name, for the unknown-key message (`unknown detector; known detectors: ...`). Default `key`. */
  readonly keyNoun?: string;
  /**
   * Cross-field rules, run on the validated value when every field in it was valid (so one mistake
   * is not reported twice).
   */
  readonly check?: (value: Readonly<Record<string, unknown>>, report: Report) => void;
}
/** Free-form string → string map (e.g. pod label selectors). */
export interface MapSpec extends Base {
  readonly kind: 'map';
  readonly default: Readonly<Record<string, string>>;
}
/** A string, number or boolean kept as its YAML type (a value to compare a field with). */
export interface ScalarSpec extends Base {
  readonly kind: 'scalar';
  readonly default: string | number | boolean | null;
}
/** An IPv4/IPv6 address or CIDR block (src/net/cidr.ts), value a {@link Cidr}. */
export interface CidrSpec extends Base {
  readonly kind: 'cidr';
  readonly default: string;
}
/** Days of the week: `mon-fri`, `sat,sun`, `fri-mon` (wraps) or a list of those; value: day numbers, 0 = Sunday, sorted. */
export interface DaysSpec extends Base {
  readonly kind: 'days';
  readonly default: string;
}
/** A UTC time of day `HH:MM` (`24:00` is the end of the day); value: minutes after 00:00. */
export interface UtcTimeSpec extends Base {
  readonly kind: 'utc_time';
  readonly default: string;
}

export const str = <D extends string | null>(doc: string, def: D, extra: Partial<Omit<StringSpec, 'kind' | 'default'>> = {}): StringSpec & { default: D } => ({ kind: 'string', doc, default: def, ...extra });
export const int = (doc: string, def: number, extra: Partial<IntSpec> = {}): IntSpec => ({ kind: 'int', doc, default: def, ...extra });
export const num = (doc: string, def: number, extra: Partial<NumberSpec> = {}): NumberSpec => ({ kind: 'number', doc, default: def, ...extra });
export const bool = (doc: string, def: boolean): BoolSpec => ({ kind: 'bool', doc, default: def });
export const oneOf = <const V extends readonly string[]>(doc: string, values: V, def: V[number], extra: Partial<Omit<EnumSpec, 'kind' | 'values'>> = {}): EnumSpec & { values: V } => ({ kind: 'enum', doc, values, default: def, ...extra });
export const duration = (doc: string, def: number, extra: Partial<DurationSpec> = {}): DurationSpec => ({ kind: 'duration', doc, default: def, ...extra });
export const size = (doc: string, def: number, extra: Partial<SizeSpec> = {}): SizeSpec => ({ kind: 'size', doc, default: def, ...extra });
export const list = <I extends ListSpec['items']>(doc: string, items: I, def: readonly unknown[] = []): ListSpec & { items: I } => ({ kind: 'list', doc, items, default: def });
export const obj = <F extends Record<string, Spec>>(doc: string, fields: F): ObjectSpec & { fields: F } => ({ kind: 'object', doc, fields });
export const map = (doc: string, def: Record<string, string> = {}): MapSpec => ({ kind: 'map', doc, default: def });
export const scalar = (doc: string): ScalarSpec => ({ kind: 'scalar', doc, default: null });
export const cidr = (doc: string): CidrSpec => ({ kind: 'cidr', doc, default: '0.0.0.0/0' });
export const days = (doc: string, def = 'sun-sat'): DaysSpec => ({ kind: 'days', doc, default: def });
export const utcTime = (doc: string, def = '00:00'): UtcTimeSpec => ({ kind: 'utc_time', doc, default: def });

const NON_EMPTY = (v: string): string | null => (v === '' ? 'must be a non-empty string' : null);
/** A non-empty string. */
export const text = (doc: string): StringSpec & { default: string } => str(doc, '', { check: NON_EMPTY });
/** A string or a list of non-empty strings (globs, names); a lone string is one item, never split. */
export const strings = (doc: string): ListSpec & { items: StringSpec & { default: string } } => ({ ...list(doc, text('')), scalar: 'item' });
/** A CIDR or a list of them; a lone string is one item. */
export const cidrs = (doc: string): ListSpec & { items: CidrSpec } => ({ ...list(doc, cidr('')), scalar: 'item' });

/** The same spec, absent → null (the type gains `| null`). */
export const opt = <S extends Spec>(spec: S): S & { optional: true } => ({ ...spec, optional: true });
/** The same spec, absent → a problem. */
export const req = <S extends Spec>(spec: S): S & { required: true } => ({ ...spec, required: true });
/**
 * The same spec, deprecated: accepted and checked, left out of the value, and reported as a warning
 * `<file>:<line>:<col>: <path>: deprecated: <why>` (the loaders log it; nothing fails).
 */
export const deprecated = <S extends Spec>(spec: S, why: string): S & { deprecated: string } => ({ ...spec, deprecated: why });
/** The same object spec with a cross-field check. */
export const checked = <S extends ObjectSpec>(spec: S, check: NonNullable<ObjectSpec['check']>): S => ({ ...spec, check });

/** The TypeScript type of a validated value of a spec. */
export type Infer<S> = S extends { optional: true } ? InferValue<S> | null : InferValue<S>;

type InferValue<S> = S extends { kind: 'string'; default: infer D }
  ? null extends D
    ? string | null
    : string
  : S extends { kind: 'int' | 'number' | 'duration' | 'size' }
    ? number
    : S extends { kind: 'bool' }
      ? boolean
      : S extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : S extends { kind: 'list'; items: infer I }
          ? readonly Infer<I>[]
          : S extends { kind: 'object'; fields: infer F }
            ? { readonly [K in keyof F as F[K] extends { deprecated: string } ? never : K]: Infer<F[K]> }
            : S extends { kind: 'map' }
              ? Readonly<Record<string, string>>
              : S extends { kind: 'scalar' }
                ? string | number | boolean
                : S extends { kind: 'cidr' }
                  ? Cidr
                  : S extends { kind: 'days' }
                    ? readonly number[]
                    : S extends { kind: 'utc_time' }
                      ? number
                      : never;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/** Parse `250ms`, `1.5s`, `2m`, `1h30m`, `7d`, or a bare number of ms. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number);
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? total : null;
}

export function parseSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return null;
  const unit = (m[2] ?? '').toLowerCase() || 'b';
  const mult = SIZE_UNITS[unit];
  return mult === undefined ? null : Math.round(Number(m[1]) * mult);
}

export function envName(path: readonly string[]): string {
  return 'FALCO_COMPANION_' + path.map((p) => p.toUpperCase().replace(/[^A-Z0-9]/g, '_')).join('_');
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** Days of the week (see {@link DaysSpec}); a message naming the bad part when not days. */
export function parseDays(v: unknown): readonly number[] | string {
  const parts = Array.isArray(v) ? v.flatMap((x) => String(x).split(',')) : typeof v === 'string' ? v.split(',') : null;
  if (!parts || parts.length === 0) return 'must be days like `mon-fri`, `sat,sun` or a list';
  const out = new Set<number>();
  for (const part of parts) {
    const m = /^\s*([a-z]{3})[a-z]*\s*(?:-\s*([a-z]{3})[a-z]*\s*)?$/i.exec(part);
    const a = m ? DAY_NAMES.indexOf((m[1] as string).toLowerCase()) : -1;
    const b = m?.[2] ? DAY_NAMES.indexOf(m[2].toLowerCase()) : a;
    if (a < 0 || b < 0) return `${JSON.stringify(part.trim())} is not a day or day range (${DAY_NAMES.join(', ')})`;
    for (let d = a; ; d = (d + 1) % 7) {
      out.add(d);
      if (d === b) break;
    }
  }
  return [...out].sort((x, y) => x - y);
}

/** `HH:MM` (UTC) → minutes after 00:00, `24:00` → 1440; null when not a time of day. */
export function parseUtcTime(v: unknown): number | null {
  // YAML 1.1 sexagesimal is off in yaml v2's core schema: "02:00" unquoted stays a string.
  const m = typeof v === 'string' ? /^(\d{1,2}):(\d{2})$/.exec(v.trim()) : null;
  if (!m) return null;
  const h = Number(m[1]);
  const min = Number(m[2]);
  if (h > 24 || min > 59 || (h === 24 && min !== 0)) return null;
  return h * 60 + min;
}

/** Parse a CIDR spec value. */
export function parseCidrValue(v: unknown): Cidr | null {
  return typeof v === 'string' ? parseCidr(v) : null;
}

/** Every leaf with its path, for docs and env overrides. */
export function* leaves(spec: ObjectSpec, path: string[] = []): Generator<{ path: string[]; spec: Exclude<Spec, ObjectSpec> }> {
  for (const [k, s] of Object.entries(spec.fields)) {
    if (s.deprecated !== undefined) continue;
    if (s.kind === 'object') yield* leaves(s, [...path, k]);
    else yield { path: [...path, k], spec: s };
  }
}

/** The defaults of a schema as a plain object. */
export function defaults(spec: ObjectSpec): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec.fields)) {
    if (s.deprecated !== undefined) continue;
    o[k] = s.optional ? null : s.kind === 'object' ? defaults(s) : structuredClone(s.default);
  }
  return o;
}
