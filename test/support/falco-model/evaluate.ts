/**
 * Evaluates a parsed Falco condition (test/falco-rules/falco-condition.ts) over field values, with
 * libsinsp's semantics:
 *  - a check on a field that has no value (libsinsp's extract fails: <NA> in outputs) is false,
 *    whatever the operator (`!=` and `in` included); `not` then makes it true;
 *  - numeric fields compare numerically (operands parsed as numbers), booleans as true/false,
 *    strings exactly (`icontains`, `istartswith`, `iendswith`, `iglob` case-insensitively);
 *  - `in` / `intersects` / `pmatch` take list operands, lists are expanded by the rule loader;
 *    `pmatch` is a path-prefix match; `glob` is fnmatch-style;
 *  - fields ending in `.net` / `.snet` / `.cnet` / `.lnet` / `.rnet` match CIDRs;
 *  - a field can be multi-valued (`proc.aname` without index: any ancestor): any value matching
 *    makes the check true.
 * Macros must be expanded beforehand (./rules.ts does); an unexpanded macro is an error.
 */
import type { FieldRef, Node, Operand } from '../../falco-rules/falco-condition.js';

export type Scalar = string | number | bigint | boolean;
/** undefined: the field has no value. An array: a multi-valued field. */
export type FieldValue = Scalar | readonly Scalar[] | undefined;
export type Resolver = (field: FieldRef) => FieldValue;

function ipv4ToInt(s: string): number | null {
  const p = s.split('.');
  if (p.length !== 4) return null;
  let n = 0;
  for (const x of p) {
    if (!/^\d{1,3}$/.test(x)) return null;
    const v = Number(x);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function inCidr(ip: string, cidr: string): boolean {
  const [net, bitsText] = cidr.split('/');
  const a = ipv4ToInt(ip);
  const b = ipv4ToInt(net ?? '');
  if (a === null || b === null) return ip === cidr;
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  if (bits === 0) return true;
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}

/** fnmatch(3) without flags: `*`, `?`, `[...]` (also across `/`, as libsinsp's glob operator). */
export function globMatch(pattern: string, text: string, caseInsensitive = false): boolean {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`${re}$`, caseInsensitive ? 'is' : 's').test(text);
}

function isNetField(name: string): boolean {
  return /^fd\.[slcr]?net$/.test(name);
}

function asText(v: Scalar): string {
  return typeof v === 'boolean' ? (v ? 'true' : 'false') : String(v);
}

function equal(v: Scalar, operand: string, field: string): boolean {
  if (typeof v === 'number' || typeof v === 'bigint') {
    if (!/^-?\d+(\.\d+)?$/.test(operand.trim())) return false;
    return typeof v === 'bigint' ? v === BigInt(operand.trim().split('.')[0] as string) : v === Number(operand);
  }
  if (typeof v === 'boolean') return operand.toLowerCase() === (v ? 'true' : 'false');
  if (isNetField(field)) return inCidr(v, operand);
  return v === operand;
}

function compareNum(v: Scalar, op: string, operand: string): boolean {
  const a = typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : Number(v);
  const b = Number(operand);
  if (Number.isNaN(a) || Number.isNaN(b)) return false;
  switch (op) {
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>':
      return a > b;
    default:
      return a >= b;
  }
}

function pmatch(path: string, prefixes: readonly string[]): boolean {
  return prefixes.some((p) => {
    const q = p.endsWith('/') && p.length > 1 ? p.slice(0, -1) : p;
    return path === q || path.startsWith(q === '/' ? '/' : `${q}/`);
  });
}

function checkOne(v: Scalar, op: string, operands: readonly string[], field: string): boolean {
  const text = asText(v);
  const first = operands[0] ?? '';
  switch (op) {
    case '=':
    case '==':
      return equal(v, first, field);
    case '!=':
      return !equal(v, first, field);
    case '<':
    case '<=':
    case '>':
    case '>=':
      return compareNum(v, op, first);
    case 'contains':
      return text.includes(first);
    case 'icontains':
      return text.toLowerCase().includes(first.toLowerCase());
    case 'bcontains':
      return Buffer.from(text).toString('hex').includes(first.toLowerCase());
    case 'startswith':
      return text.startsWith(first);
    case 'istartswith':
      return text.toLowerCase().startsWith(first.toLowerCase());
    case 'bstartswith':
      return Buffer.from(text).toString('hex').startsWith(first.toLowerCase());
    case 'endswith':
      return text.endsWith(first);
    case 'iendswith':
      return text.toLowerCase().endsWith(first.toLowerCase());
    case 'glob':
      return globMatch(first, text);
    case 'iglob':
      return globMatch(first, text, true);
    case 'regex':
      return new RegExp(first).test(text);
    case 'in':
    case 'intersects':
      return operands.some((o) => equal(v, o, field));
    case 'pmatch':
      return pmatch(text, operands);
    default:
      throw new Error(`operator ${op} is not modelled`);
  }
}

function transform(v: FieldValue, transformers: readonly string[]): FieldValue {
  let cur = v;
  for (const t of [...transformers].reverse()) {
    if (cur === undefined) return undefined;
    const map = (s: Scalar): Scalar => {
      const x = asText(s);
      switch (t) {
        case 'tolower':
          return x.toLowerCase();
        case 'toupper':
          return x.toUpperCase();
        case 'b64':
          return Buffer.from(x, 'base64').toString('utf8');
        case 'basename':
          return x.slice(x.lastIndexOf('/') + 1);
        case 'len':
          return x.length;
        default:
          return s;
      }
    };
    cur = Array.isArray(cur) ? (cur as readonly Scalar[]).map(map) : map(cur as Scalar);
  }
  return cur;
}

function operandTexts(operands: readonly Operand[], resolve: Resolver): string[] | null {
  const out: string[] = [];
  for (const o of operands) {
    if (o.kind === 'value') out.push(o.text);
    else {
      const v = transform(resolve(o.field), o.field.transformers);
      if (v === undefined) return null;
      if (Array.isArray(v)) out.push(...(v as readonly Scalar[]).map(asText));
      else out.push(asText(v as Scalar));
    }
  }
  return out;
}

export function evaluate(node: Node, resolve: Resolver): boolean {
  switch (node.type) {
    case 'and':
      return node.children.every((c) => evaluate(c, resolve));
    case 'or':
      return node.children.some((c) => evaluate(c, resolve));
    case 'not':
      return !evaluate(node.child, resolve);
    case 'macro':
      throw new Error(`unexpanded macro ${node.name}`);
    case 'check': {
      const raw = transform(resolve(node.field), node.field.transformers);
      if (node.op === 'exists') return raw !== undefined;
      if (raw === undefined) return false;
      const operands = operandTexts(node.operands, resolve);
      if (operands === null) return false;
      const values: readonly Scalar[] = Array.isArray(raw) ? (raw as readonly Scalar[]) : [raw as Scalar];
      if (values.length === 0) return false;
      if (node.op === '!=') return values.every((v) => checkOne(v, node.op, operands, node.field.name));
      return values.some((v) => checkOne(v, node.op, operands, node.field.name));
    }
  }
}

/** Why a condition is false: the false conjuncts of the top-level `and`, rendered (for diagnostics). */
export function explain(node: Node, resolve: Resolver, depth = 0): string[] {
  if (evaluate(node, resolve)) return [];
  if (node.type === 'and' && depth < 8) return node.children.flatMap((c) => explain(c, resolve, depth + 1));
  const show = (n: Node): string => {
    switch (n.type) {
      case 'and':
      case 'or':
        return `(${n.children.map(show).join(` ${n.type} `)})`;
      case 'not':
        return `not ${show(n.child)}`;
      case 'macro':
        return n.name;
      case 'check': {
        const v = resolve(n.field);
        const ops = n.operands.map((o) => (o.kind === 'value' ? o.text : o.field.raw));
        return `${n.field.raw}[=${v === undefined ? '<none>' : JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))}] ${n.op} ${ops.length > 4 ? `(${ops.slice(0, 4).join(',')},…)` : ops.join(',')}`;
      }
    }
  };
  return [show(node).slice(0, 400)];
}

export type { FieldRef, Node };
