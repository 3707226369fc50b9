/* global URL */
// Renders Falco alerts exactly as Falco 0.40+ prints them with json_output (the shape of
// ../shared/falco-reference/recorded/): alphabetical keys, `output` = time of day + priority + the
// rule's output format with every %field filled in (<NA> for no value), `output_fields` holding
// every field the format names (typed: numbers for numeric fields, booleans for BOOL, null for no
// value) plus `evt.time` as a nanosecond integer, sorted tags. One renderer for the fixture
// generators (test/falco-rules/gen-signal-alerts.mjs, test/fixtures/scenarios/generate.mjs).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SHARED = `${ROOT}../shared/falco-reference/`;

const NUMERIC = new Set(['INT16', 'INT32', 'INT64', 'UINT32', 'UINT64', 'PORT', 'ABSTIME', 'RELTIME', 'DOUBLE']);
const PRIORITY = { EMERGENCY: 'Emergency', ALERT: 'Alert', CRITICAL: 'Critical', ERROR: 'Error', WARNING: 'Warning', NOTICE: 'Notice', INFO: 'Informational', INFORMATIONAL: 'Informational', DEBUG: 'Debug' };

/** Field name → type from a `supported-fields-falco-<version>.txt` list (name TAB type ...). */
export function fieldTypes(file) {
  return new Map(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t'))
      .map(([n, t]) => [n, t]),
  );
}

/** Rule name → {rule, output, priority, tags} of the rules files given (later files win). */
export function loadRules(...files) {
  const rules = new Map();
  for (const f of files) {
    if (!existsSync(f)) continue;
    for (const item of parse(readFileSync(f, 'utf8')) ?? []) {
      if (typeof item?.rule === 'string' && typeof item.output === 'string') rules.set(item.rule, { rule: item.rule, output: item.output.trim(), priority: item.priority, tags: item.tags ?? [] });
    }
  }
  return rules;
}

function typeOf(types, field) {
  // Listed as CHARBUF (its text form), but in JSON output Falco writes evt.time as a ns integer.
  if (field === 'evt.time') return 'ABSTIME';
  if (field.startsWith('evt.arg.') || field.startsWith('evt.arg[')) return 'CHARBUF';
  const base = field.replace(/\[.*\]$/, '');
  return types.get(base) ?? 'CHARBUF';
}

function jsonValue(types, field, v) {
  if (v === null || v === undefined) return 'null';
  const t = typeOf(types, field);
  if (t === 'BOOL') return v ? 'true' : 'false';
  if (NUMERIC.has(t)) return String(v); // exact, may exceed 2^53 (evt.time)
  return JSON.stringify(String(v));
}

const textValue = (v) => (v === null || v === undefined ? '<NA>' : String(v));

/**
 * One alert line. `rule`: {rule, output, priority, tags}; `values`: field → value (anything the
 * format names and `values` lacks has no value); `ns`: event time (bigint); `hostname`.
 */
export function renderAlert(types, rule, values, ns, hostname) {
  const date = new Date(Number(ns / 1_000_000n));
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  const time = `${date.toISOString().slice(0, 19)}.${frac}Z`;
  const clock = `${date.toISOString().slice(11, 19)}.${frac}`;
  const fields = new Map();
  const message = rule.output.replace(/%([A-Za-z_][A-Za-z0-9_.]*)(\[[^\]]*\])?/g, (_m, name, arg) => {
    const key = `${name}${arg ?? ''}`;
    const v = Object.hasOwn(values, key) ? values[key] : null;
    fields.set(key, v);
    return textValue(v);
  });
  fields.set('evt.time', ns);
  const of = [...fields.keys()].sort().map((k) => `${JSON.stringify(k)}:${jsonValue(types, k, fields.get(k))}`);
  const priority = PRIORITY[String(rule.priority).toUpperCase()] ?? rule.priority;
  const tags = [...rule.tags].sort();
  return (
    `{"hostname":${JSON.stringify(hostname)},"output":${JSON.stringify(`${clock}: ${priority} ${message}`)},` +
    `"output_fields":{${of.join(',')}},"priority":${JSON.stringify(priority)},"rule":${JSON.stringify(rule.rule)},` +
    `"source":"syscall","tags":${JSON.stringify(tags)},"time":${JSON.stringify(time)}}`
  );
}
