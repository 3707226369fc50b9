// How Falco 0.40 prints a JSON alert (json_output with the output and tags properties), as the
// recordings in ../shared/falco-reference/recorded/ show it: keys alphabetical; `output` = the
// event time (UTC clock, 9 fractional digits) + ": " + the priority + " " + the rule's output
// format with each %field replaced by its text (<NA> when the field has no value); output_fields
// holds every field of the format plus evt.time, typed by the field's type (numbers as JSON
// numbers, exact even above 2^53; BOOL as true/false; everything else, evt.arg.* and evt.args
// included, as strings; null when the field has no value); tags sorted; source `syscall`.
//
// Plain JavaScript (with render.d.mts for TypeScript) so that test/falco-rules/gen-signal-alerts.mjs
// can use it without a TypeScript loader. No I/O except loadFieldTypes.
import { readFileSync } from 'node:fs';

const PRIORITY_NAMES = ['Emergency', 'Alert', 'Critical', 'Error', 'Warning', 'Notice', 'Informational', 'Debug'];

/** A rules-file priority (`INFO`, `WARNING`, `notice`, ...) as Falco prints it (`Informational`, `Warning`, ...). */
export function priorityName(p) {
  const l = String(p).trim().toLowerCase();
  if (l === 'info') return 'Informational';
  const hit = PRIORITY_NAMES.find((x) => x.toLowerCase() === l);
  if (!hit) throw new Error(`unknown priority ${p}`);
  return hit;
}

const NUMERIC = new Set(['INT8', 'INT16', 'INT32', 'INT64', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'PORT', 'ABSTIME', 'RELTIME', 'DOUBLE', 'ERRNO', 'FD', 'PID', 'SYSCALLID', 'SIGTYPE', 'MODE']);

/** name → type from a supported-fields list (`name<TAB>type<TAB>class<TAB>description`). */
export function loadFieldTypes(path) {
  const map = new Map();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const [name, type] = line.split('\t');
    if (name && type) map.set(name, type);
  }
  return map;
}

/** The type of an output field (`evt.arg.*` and `evt.args` are text; evt.time is a ns integer in JSON). */
export function fieldType(types, field) {
  if (field === 'evt.time') return 'ABSTIME';
  if (field === 'evt.args' || field.startsWith('evt.arg.') || field.startsWith('evt.arg[') || field.startsWith('evt.rawarg.')) return 'CHARBUF';
  const base = field.replace(/\[.*\]$/, '');
  return types.get(base) ?? 'CHARBUF';
}

/** A value's text in the `output` string. */
export function textValue(v) {
  if (v === null || v === undefined) return '<NA>';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(v);
}

/** A value as it appears in output_fields (JSON text). */
export function jsonValue(types, field, v) {
  if (v === null || v === undefined) return 'null';
  const t = fieldType(types, field);
  if (t === 'BOOL') return v === true || v === 'true' ? 'true' : 'false';
  if (NUMERIC.has(t)) {
    const s = String(v);
    if (/^-?\d+(\.\d+)?$/.test(s)) return s;
    return JSON.stringify(s);
  }
  return JSON.stringify(String(v));
}

/** `2026-12-03T06:42:34.014857642Z` and `06:42:34.014857642` for a realtime ns timestamp. */
export function timeStrings(ns) {
  const date = new Date(Number(ns / 1000000n));
  const frac = (ns % 1000000000n).toString().padStart(9, '0');
  const iso = `${date.toISOString().slice(0, 19)}.${frac}Z`;
  return { iso, clock: `${date.toISOString().slice(11, 19)}.${frac}` };
}

const FIELD_RE = /%([A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_])(\[[^\]]*\])?/g;

/**
 * Render one alert line.
 * @param {{ name: string, output: string, priority: string, tags: readonly string[] }} rule
 *   priority as printed (Emergency ... Debug); output with %container.info already replaced.
 * @param {(field: string) => unknown} value the field's value (undefined/null: no value).
 * @param {bigint} timeNs realtime ns of the event.
 * @param {string} hostname
 * @param {Map<string,string>} types field types (loadFieldTypes).
 */
export function renderAlert(rule, value, timeNs, hostname, types) {
  const fields = new Map();
  const message = rule.output.replace(FIELD_RE, (_m, name, arg) => {
    const key = `${name}${arg ?? ''}`;
    const v = value(key);
    fields.set(key, v);
    return textValue(v);
  });
  fields.set('evt.time', timeNs);
  const { iso, clock } = timeStrings(timeNs);
  const of = [...fields.keys()].sort().map((k) => `${JSON.stringify(k)}:${jsonValue(types, k, fields.get(k))}`);
  const tags = [...rule.tags].sort();
  return (
    `{"hostname":${JSON.stringify(hostname)},"output":${JSON.stringify(`${clock}: ${rule.priority} ${message}`)},` +
    `"output_fields":{${of.join(',')}},"priority":${JSON.stringify(rule.priority)},"rule":${JSON.stringify(rule.name)},` +
    `"source":"syscall","tags":${JSON.stringify(tags)},"time":${JSON.stringify(iso)}}`
  );
}
