/**
 * Field types and operators as libsinsp checks them when Falco compiles a condition or an
 * exception (userspace/libsinsp/filter_compare.cpp `flt_is_comparable`, and the value parsing of
 * sinsp_filter_check::parse_filter_value): shared by the rules-pack operator test and the tests
 * of proposals that append exception values (`falco-companion tune`).
 */
import { strings, type RuleItem } from './support.js';

const NUMERIC = new Set(['INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'PORT', 'RELTIME', 'ABSTIME', 'DOUBLE', 'ERRNO', 'FD', 'PID']);
const STRING = new Set(['CHARBUF', 'FSPATH', 'FSRELPATH']);
const IP = new Set(['IPADDR', 'IPNET']);

/** Operators libsinsp accepts per field type (flt_is_comparable_*); `exists` is always accepted. */
export function allowedOps(type: string): ReadonlySet<string> {
  if (NUMERIC.has(type)) return new Set(['=', '==', '!=', '<', '<=', '>', '>=', 'in', 'intersects']);
  if (type === 'BOOL') return new Set(['=', '==', '!=', 'in', 'intersects']);
  if (IP.has(type)) return new Set(['=', '==', '!=', 'in', 'intersects']);
  if (STRING.has(type))
    return new Set(['=', '==', '!=', '<', '<=', '>', '>=', 'contains', 'icontains', 'in', 'startswith', 'glob', 'iglob', 'pmatch', 'endswith', 'intersects', 'regex']);
  if (type === 'BYTEBUF') return new Set(['=', '==', '!=', 'contains', 'in', 'startswith', 'endswith', 'intersects', 'bcontains', 'bstartswith']);
  return new Set();
}

/** List items may carry their own quotes (`items: ['"10.0.0.0/8"']`); Falco strips them. */
export const unquote = (v: string): string => (/^(".*"|'.*')$/.test(v) ? v.slice(1, -1) : v);

const IPV4 = /^(\d{1,3})(\.\d{1,3}){3}$/;
const isIp = (v: string): boolean => IPV4.test(v) || (v.includes(':') && /^[0-9a-fA-F:.]+$/.test(v));

/** Whether a literal parses as a value of the field type (libsinsp value parsing). */
export function literalFits(type: string, text: string): boolean {
  if (NUMERIC.has(type)) return /^-?\d+$/.test(text);
  if (type === 'BOOL') return text === 'true' || text === 'false';
  if (type === 'IPADDR') return isIp(text);
  if (type === 'IPNET') {
    const [addr, bits, extra] = text.split('/');
    return extra === undefined && addr !== undefined && isIp(addr) && (bits === undefined || /^\d{1,3}$/.test(bits));
  }
  return true;
}

export interface Problem {
  where: string;
  msg: string;
}

export function fieldType(name: string, fields: ReadonlyMap<string, { type: string }>): string | undefined {
  const direct = fields.get(name)?.type;
  if (direct !== undefined) return direct;
  for (const prefix of ['evt.arg', 'evt.rawarg']) if (name.startsWith(`${prefix}.`)) return fields.get(prefix)?.type;
  return undefined;
}

/** Exception comps must be valid operators for their field's type; values must fit too. */
export function checkExceptions(rule: RuleItem, fields: ReadonlyMap<string, { type: string }>, out: Problem[]): void {
  const ex = rule.exceptions;
  if (!Array.isArray(ex)) return;
  for (const e of ex as Record<string, unknown>[]) {
    const names = strings(e.fields);
    const comps = e.comps === undefined ? names.map(() => '=') : strings(e.comps);
    const where = `${String(rule.rule)} / exception ${String(e.name)}`;
    if (comps.length !== names.length) out.push({ where, msg: `${names.length} fields but ${comps.length} comps` });
    names.forEach((f, i) => {
      const type = fieldType(f, fields);
      const comp = comps[i] ?? '=';
      if (type !== undefined && !allowedOps(type).has(comp)) out.push({ where, msg: `comp '${comp}' on ${f} (${type})` });
    });
    for (const row of (Array.isArray(e.values) ? e.values : []) as unknown[]) {
      const vals = Array.isArray(row) ? row.map(String) : [String(row)];
      vals.forEach((v, i) => {
        const f = names[i];
        const type = f === undefined ? undefined : fieldType(f, fields);
        if (type !== undefined && !literalFits(type, v)) out.push({ where, msg: `exception value ${JSON.stringify(v)} does not parse as ${type} for ${f}` });
      });
    }
  }
}

