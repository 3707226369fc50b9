/**
 * Validate a YAML document against a schema, reporting every problem at once as
 * `file:line:col: message`. Also applies environment variables and flag overrides.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node as YamlNode } from 'yaml';
import { ConfigError, errorMessage } from '../errors.js';
import { deepFreeze } from '../json/lossless.js';
import { envName, leaves, parseCidrValue, parseDays, parseDuration, parseSize, parseUtcTime, type ObjectSpec, type Spec } from './dsl.js';

export interface Problem {
  readonly where: string;
  readonly message: string;
}

function fmt(p: Problem): string {
  return `${p.where}: ${p.message}`;
}

export type Path = readonly (string | number)[];

/** `signals[0].emit.kind`: keys joined with dots, list indices in brackets; `(root)` for the document. */
function dottedPath(path: Path): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out || '(root)';
}

interface Ctx {
  readonly file: string;
  readonly lc: LineCounter | null;
  readonly problems: Problem[];
  /** Deprecated settings found (null: not collected). */
  readonly warnings?: Problem[] | null;
}

/**
 * The one YAML position lookup: the child of a mapping (by key; `key: true` gives the key's own
 * node, else its value, else its key) or of a sequence (by index); null when there is none.
 */
function childNode(node: YamlNode | null | undefined, step: string | number, key = false): YamlNode | null {
  if (!node) return null;
  if (isMap(node)) {
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(step));
    if (!pair) return null;
    return ((key ? null : (pair.value as YamlNode | null)) ?? (pair.key as YamlNode | null)) ?? null;
  }
  if (isSeq(node) && typeof step === 'number') return (node.items[step] as YamlNode | undefined) ?? null;
  return null;
}

/** The node at `path` under `node`, or the deepest one on the way (for a position). */
function nodeAt(node: YamlNode | null | undefined, path: Path, key = false): YamlNode | null {
  let cur = node ?? null;
  for (let i = 0; i < path.length && cur; i++) {
    const next = childNode(cur, path[i] as string | number, key && i === path.length - 1);
    if (!next) break;
    cur = next;
  }
  return cur;
}

function whereOf(ctx: Ctx, node: YamlNode | null | undefined, path: Path): string {
  if (ctx.lc && node?.range) {
    const { line, col } = ctx.lc.linePos(node.range[0]);
    return `${ctx.file}:${line}:${col}`;
  }
  return `${ctx.file}: ${dottedPath(path)}`;
}

function report(ctx: Ctx, node: YamlNode | null | undefined, path: Path, msg: string): undefined {
  ctx.problems.push({ where: whereOf(ctx, node, path), message: `${dottedPath(path)}: ${msg}` });
  return undefined;
}

/** Convert and check one value against a spec. `node` gives positions (null for env/flags). */
function check(ctx: Ctx, spec: Spec, value: unknown, node: YamlNode | null | undefined, path: Path): unknown {
  const bad = (msg: string): undefined => report(ctx, node, path, msg);
  if (spec.optional && (value === undefined || value === null)) return null;
  if (spec.required && value === undefined) return bad('is required');
  switch (spec.kind) {
    case 'string': {
      if (value === null) return spec.default === null ? null : bad('must be a string, not null');
      if (typeof value === 'number' || typeof value === 'boolean') value = String(value);
      if (typeof value !== 'string') return bad('must be a string');
      const err = spec.check?.(value);
      return err ? bad(err) : value;
    }
    case 'int':
    case 'number': {
      const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n)) return bad(`must be a number, got ${JSON.stringify(value)}`);
      if (spec.kind === 'int' && !Number.isInteger(n)) return bad('must be a whole number');
      if (spec.min !== undefined && n < spec.min) return bad(`must be ≥ ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return bad(`must be ≤ ${spec.max}`);
      const err = spec.kind === 'int' ? spec.check?.(n) : null;
      return err ? bad(err) : n;
    }
    case 'bool': {
      if (typeof value === 'boolean') return value;
      if (typeof value === 'string' && /^(true|false|1|0|yes|no)$/i.test(value)) return /^(true|1|yes)$/i.test(value);
      return bad('must be true or false');
    }
    case 'enum': {
      const s = typeof value === 'string' ? value : String(value);
      const hit = spec.values.find((v) => (spec.caseInsensitive ? v.toLowerCase() === s.toLowerCase() : v === s));
      return hit ?? bad(`must be one of ${spec.values.join(', ')}; got ${JSON.stringify(value)}`);
    }
    case 'duration': {
      const ms = parseDuration(value);
      if (ms === null) return bad(`must be a duration such as 500ms, 10s, 5m, 1h (got ${JSON.stringify(value)})`);
      if (spec.min !== undefined && ms < spec.min) return bad(`must be ≥ ${spec.min} ms`);
      if (spec.max !== undefined && ms > spec.max) return bad(`must be ≤ ${spec.max} ms`);
      return ms;
    }
    case 'size': {
      const b = parseSize(value);
      if (b === null) return bad(`must be a size such as 1048576, 512KiB, 1MiB (got ${JSON.stringify(value)})`);
      if (spec.min !== undefined && b < spec.min) return bad(`must be ≥ ${spec.min} bytes`);
      return b;
    }
    case 'scalar': {
      if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) return value;
      return bad('must be a string, number or boolean');
    }
    case 'cidr': {
      const c = parseCidrValue(typeof value === 'number' ? String(value) : value);
      return c ?? bad(`${JSON.stringify(value)} is not an IPv4/IPv6 address or CIDR`);
    }
    case 'days': {
      const d = parseDays(value ?? spec.default);
      return typeof d === 'string' ? bad(d) : d;
    }
    case 'utc_time': {
      const m = parseUtcTime(value);
      return m ?? bad(`must be a UTC time "HH:MM" (got ${JSON.stringify(value)})`);
    }
    case 'map': {
      if (value === null) return {};
      if (typeof value !== 'object' || Array.isArray(value)) return bad('must be a mapping of strings');
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (v === null || typeof v === 'object') report(ctx, childNode(node, k) ?? node, [...path, k], 'must be a string');
        else out[k] = String(v);
      }
      return out;
    }
    case 'list': {
      let arr: unknown[];
      if (value === null) arr = [];
      else if (Array.isArray(value)) arr = value;
      else if (spec.items.kind !== 'object' && (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')) {
        arr = spec.scalar === 'item' ? [value] : String(value).split(',').map((x) => x.trim()).filter((x) => x !== '');
      } else return bad('must be a list');
      const seq = node && isSeq(node) ? node : null;
      return arr.map((item, i) => check(ctx, spec.items, item, (seq?.items[i] as YamlNode | undefined) ?? node, seq ? [...path, i] : path));
    }
    case 'object': {
      if (value === null || value === undefined) value = {};
      if (typeof value !== 'object' || Array.isArray(value)) return bad('must be a mapping');
      const before = ctx.problems.length;
      const src = value as Record<string, unknown>;
      const mapNode = node && isMap(node) ? node : null;
      const out: Record<string, unknown> = {};
      const noun = spec.keyNoun ?? 'key';
      for (const k of Object.keys(src)) {
        if (!(k in spec.fields)) {
          const known = Object.keys(spec.fields);
          const close = known.find((x) => x.replace(/_/g, '') === k.replace(/[_-]/g, '').toLowerCase());
          report(ctx, childNode(mapNode, k, true) ?? node, [...path, k], `unknown ${noun}${close ? ` (did you mean "${close}"?)` : ''}; known ${noun}s: ${known.join(', ')}`);
        }
      }
      for (const [k, s] of Object.entries(spec.fields)) {
        if (s.deprecated !== undefined) {
          if (k in src && src[k] !== undefined) {
            const at = childNode(mapNode, k, true) ?? node;
            check(ctx, s, src[k], childNode(mapNode, k), [...path, k]);
            ctx.warnings?.push({ where: whereOf(ctx, at, [...path, k]), message: `${dottedPath([...path, k])}: deprecated: ${s.deprecated}` });
          }
          continue;
        }
        if (k in src && src[k] !== undefined) {
          out[k] = check(ctx, s, src[k], childNode(mapNode, k), [...path, k]);
        } else if (s.required) {
          report(ctx, node, [...path, k], 'is required');
        } else {
          out[k] = s.optional ? null : s.kind === 'object' ? check(ctx, s, {}, null, [...path, k]) : structuredClone(s.default);
        }
      }
      if (spec.check && ctx.problems.length === before) {
        spec.check(out, (message, at = []) => report(ctx, nodeAt(node, at) ?? node, [...path, ...at], message));
      }
      return out;
    }
  }
}

/** A YAML file parsed for validation: the plain value, its root node and positions, syntax problems. */
export interface ParsedYaml {
  readonly raw: unknown;
  readonly root: YamlNode | null;
  readonly lc: LineCounter;
  /** Syntax errors and warnings as `file:line:col` problems. */
  readonly problems: Problem[];
  /** True when the document could not be read as YAML (raw is undefined). */
  readonly broken: boolean;
}

/** Parse YAML text for {@link checkSpec}: duplicate keys and syntax errors are problems with positions. */
export function parseYaml(file: string, text: string): ParsedYaml {
  const lc = new LineCounter();
  const problems: Problem[] = [];
  const broken = (message: string): ParsedYaml => {
    problems.push({ where: `${file}:1:1`, message });
    return { raw: undefined, root: null, lc, problems, broken: true };
  };
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    // The YAML parser's own limits (e.g. nesting beyond the stack): a problem, not a crash.
    return broken(`cannot be read as YAML: ${errorMessage(err)}`);
  }
  for (const e of [...doc.errors, ...doc.warnings]) {
    const pos = lc.linePos(e.pos[0]);
    problems.push({ where: `${file}:${pos.line}:${pos.col}`, message: e.message.split('\n')[0] ?? e.message });
  }
  if (doc.errors.length > 0) return { raw: undefined, root: null, lc, problems, broken: true };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    // Alias bombs ("billion laughs") stop at maxAliasCount with a ReferenceError.
    return broken(`YAML aliases expand too much (more than 100 alias uses): ${errorMessage(err)}`);
  }
  return { raw, root: (doc.contents as YamlNode | null) ?? null, lc, problems, broken: false };
}

export interface LoadOptions {
  /** Path of the YAML file; null for defaults only. */
  readonly file: string | null;
  /** YAML text (instead of reading `file`). */
  readonly text?: string;
  /** Environment (defaults to process.env); keys FALCO_COMPANION_<PATH>. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Overrides by dotted path (from CLI flags), applied last. */
  readonly overrides?: Readonly<Record<string, unknown>>;
}

/** Load, override and validate. Throws ConfigError listing every problem. */
export function loadConfig<T>(schema: ObjectSpec, opts: LoadOptions): T {
  const file = opts.file ?? '(defaults)';
  const problems: Problem[] = [];
  let raw: unknown = {};
  let root: YamlNode | null = null;
  let lc: LineCounter | null = null;
  if (opts.file !== null || opts.text !== undefined) {
    let text: string;
    try {
      text = opts.text ?? readFileSync(opts.file as string, 'utf8');
    } catch (err) {
      throw new ConfigError([`${file}: cannot read: ${(err as Error).message}`]);
    }
    const y = parseYaml(file, text);
    problems.push(...y.problems);
    lc = y.lc;
    if (!y.broken) {
      raw = y.raw ?? {};
      root = y.root;
    }
  }
  const ctx: Ctx = { file, lc, problems };
  const value = check(ctx, schema, raw, root, []) as Record<string, unknown> | undefined;

  // Environment, then flags: validated against the leaf spec, reported by variable / flag name.
  const env = opts.env ?? process.env;
  for (const { path, spec } of leaves(schema)) {
    if (spec.env === false) continue;
    const name = envName(path);
    const v = env[name];
    if (v === undefined || value === undefined) continue;
    const envCtx: Ctx = { file: `environment ${name}`, lc: null, problems };
    const parsed = parseEnvValue(spec, v);
    const res = check(envCtx, spec, parsed, null, path);
    if (res !== undefined || spec.kind === 'string') setPath(value, path, res);
  }
  for (const [dotted, v] of Object.entries(opts.overrides ?? {})) {
    if (v === undefined || value === undefined) continue;
    const path = dotted.split('.');
    const spec = specAt(schema, path);
    if (!spec) {
      problems.push({ where: 'command line', message: `${dotted}: no such setting` });
      continue;
    }
    const res = check({ file: 'command line', lc: null, problems }, spec, v, null, path);
    if (res !== undefined) setPath(value, path, res);
  }
  if (problems.length > 0 || value === undefined) throw new ConfigError(problems.map(fmt));
  return deepFreeze(value) as T;
}

function parseEnvValue(spec: Spec, v: string): unknown {
  if (spec.kind === 'list' && spec.items.kind === 'object') {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  if (spec.kind === 'map') {
    try {
      return JSON.parse(v);
    } catch {
      return Object.fromEntries(v.split(',').filter(Boolean).map((kv) => kv.split('=', 2) as [string, string]));
    }
  }
  if (spec.kind === 'string' && v === '') return spec.default === null ? null : '';
  return v;
}

function specAt(schema: ObjectSpec, path: readonly string[]): Spec | null {
  let s: Spec = schema;
  for (const p of path) {
    if (s.kind !== 'object') return null;
    const next: Spec | undefined = s.fields[p];
    if (!next) return null;
    s = next;
  }
  return s;
}

function setPath(o: Record<string, unknown>, path: readonly string[], v: unknown): void {
  let cur = o;
  for (const p of path.slice(0, -1)) cur = cur[p] as Record<string, unknown>;
  cur[path[path.length - 1] as string] = v;
}

/**
 * Check one parsed value against a spec, positions taken from its YAML node (for other YAML files
 * that embed schema-defined sections, e.g. the companion rules file). Problems are appended.
 */
export function checkSpec(file: string, lc: LineCounter | null, problems: Problem[], spec: Spec, value: unknown, node: YamlNode | null | undefined, path: Path = [], warnings: Problem[] | null = null): unknown {
  return check({ file, lc, problems, warnings }, spec, value, node, path);
}

/** Format problems as ConfigError lines (`file:line:col: path: message`). */
export function formatProblems(problems: readonly Problem[]): string[] {
  return problems.map(fmt);
}
