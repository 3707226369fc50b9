/* global URL */
// The fixture generators' view of the Falco model's renderer (test/support/falco-model/render.mjs,
// the one the kernel CI holds to the real Falco 0.40 recordings): field types, the rules' output
// formats, and one alert line as Falco 0.40+ prints it with json_output. Used by
// test/fixtures/scenarios/generate.mjs.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadFieldTypes, priorityName, renderAlert as renderModel } from './falco-model/render.mjs';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SHARED = `${ROOT}../shared/falco-reference/`;

/** Field name → type from a `supported-fields-falco-<version>.txt` list. */
export const fieldTypes = loadFieldTypes;

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

/**
 * One alert line. `rule`: {rule, output, priority, tags}; `values`: field → value (anything the
 * format names and `values` lacks has no value); `ns`: event time (bigint); `hostname`.
 */
export function renderAlert(types, rule, values, ns, hostname) {
  const value = (key) => (Object.hasOwn(values, key) ? values[key] : null);
  return renderModel({ name: rule.rule, output: rule.output, priority: priorityName(rule.priority), tags: rule.tags }, value, ns, hostname, types);
}
