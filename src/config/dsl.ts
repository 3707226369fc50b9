/**
 * A tiny schema language: one definition gives types, defaults, environment variable names and
 * documentation (docs/config.md and the example config are checked against it in tests).
 */

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
  | MapSpec;

interface Base {
  readonly doc: string;
  /** Env var overrides are derived from the path unless `env: false`. */
  readonly env?: boolean;
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
  /** Environment value is split on commas. */
}
export interface ObjectSpec extends Base {
  readonly kind: 'object';
  readonly fields: Readonly<Record<string, Spec>>;
}
/** Free-form string → string map (e.g. pod label selectors). */
export interface MapSpec extends Base {
  readonly kind: 'map';
  readonly default: Readonly<Record<string, string>>;
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

/** The TypeScript type of a validated value of a spec. */
export type Infer<S> = S extends { kind: 'string'; default: infer D }
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
            ? { readonly [K in keyof F]: Infer<F[K]> }
            : S extends { kind: 'map' }
              ? Readonly<Record<string, string>>
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

/** Every leaf with its path, for docs and env overrides. */
export function* leaves(spec: ObjectSpec, path: string[] = []): Generator<{ path: string[]; spec: Exclude<Spec, ObjectSpec> }> {
  for (const [k, s] of Object.entries(spec.fields)) {
    if (s.kind === 'object') yield* leaves(s, [...path, k]);
    else yield { path: [...path, k], spec: s };
  }
}

/** The defaults of a schema as a plain object. */
export function defaults(spec: ObjectSpec): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec.fields)) {
    o[k] = s.kind === 'object' ? defaults(s) : structuredClone(s.default);
  }
  return o;
}
