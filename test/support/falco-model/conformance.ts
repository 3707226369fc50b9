/**
 * Compares the alerts the model rendered for a re-run scenario with what a real Falco 0.40 printed
 * for the same scenario (../shared/falco-reference/recorded/*.jsonl): the same rules fire for the
 * same event types, as often; each alert has the same top-level keys, the same output_fields keys
 * and the same JSON value types, `output` has Falco's `<clock>: <Priority> <message>` shape and
 * `time` its RFC 3339 nanosecond form. Values (pids, times, ids, names of this machine's
 * processes) differ by nature and are not compared, except where a null is structural.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isJsonObject, LosslessNumber, parse, type JsonObject, type JsonValue } from '../../../src/json/lossless.js';
import { renderAlert } from './render.mjs';

export type JsonKind = 'string' | 'number' | 'boolean' | 'null' | 'object' | 'array';

export function kindOf(v: JsonValue | undefined): JsonKind {
  if (v === null || v === undefined) return 'null';
  if (v instanceof LosslessNumber || typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'boolean';
  if (Array.isArray(v)) return 'array';
  return 'object';
}

export interface AlertShape {
  readonly rule: string;
  readonly evtType: string;
  readonly priority: string;
  readonly topKeys: string;
  readonly fields: ReadonlyMap<string, JsonKind>;
  readonly tags: string;
  readonly alert: JsonObject;
}

export function shapeOf(line: string): AlertShape {
  const a = parse(line);
  if (!isJsonObject(a)) throw new Error(`not a JSON object: ${line.slice(0, 80)}`);
  const of = isJsonObject(a['output_fields']) ? a['output_fields'] : {};
  const fields = new Map(Object.keys(of).map((k) => [k, kindOf(of[k])] as const));
  return {
    rule: String(a['rule']),
    evtType: String(of['evt.type'] ?? ''),
    priority: String(a['priority']),
    topKeys: Object.keys(a).join(','),
    fields,
    tags: JSON.stringify(a['tags']),
    alert: a,
  };
}

export function readJsonl(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

export interface CompareOptions {
  /**
   * Fields whose null-ness depends on this machine rather than on the model (e.g. the ancestors of
   * containerd-shim, which the recording host did not know): a null on one side and a value on
   * the other is accepted for them.
   */
  readonly envDependent?: ReadonlySet<string>;
}

export const ENV_DEPENDENT_FIELDS: ReadonlySet<string> = new Set(['proc.apid[3]', 'proc.aname[3]', 'proc.aname[4]', 'proc.apid[2]', 'proc.aname[2]', 'proc.pname', 'proc.ppid']);

/** Problems (empty when the model conforms). */
export function compareAlerts(model: readonly string[], recorded: readonly string[], opts: CompareOptions = {}): string[] {
  const env = opts.envDependent ?? ENV_DEPENDENT_FIELDS;
  const problems: string[] = [];
  const m = model.map(shapeOf);
  const r = recorded.map(shapeOf);
  const count = (xs: AlertShape[]): Map<string, number> => {
    const c = new Map<string, number>();
    for (const x of xs) c.set(`${x.rule} @ ${x.evtType}`, (c.get(`${x.rule} @ ${x.evtType}`) ?? 0) + 1);
    return c;
  };
  const mc = count(m);
  const rc = count(r);
  for (const k of new Set([...mc.keys(), ...rc.keys()])) {
    if ((mc.get(k) ?? 0) !== (rc.get(k) ?? 0)) problems.push(`${k}: model ${mc.get(k) ?? 0}, recording ${rc.get(k) ?? 0}`);
  }
  // Pair the i-th alert of a (rule, event type) in the recording with the model's i-th: both are
  // in event order, so the runtime's own start-up alerts pair with each other.
  const groups = (xs: AlertShape[]): Map<string, AlertShape[]> => {
    const g = new Map<string, AlertShape[]>();
    for (const x of xs) g.set(`${x.rule} @ ${x.evtType}`, [...(g.get(`${x.rule} @ ${x.evtType}`) ?? []), x]);
    return g;
  };
  const mg = groups(m);
  const pairs: [AlertShape, AlertShape][] = [];
  for (const [k, recs] of groups(r)) {
    const mods = mg.get(k) ?? [];
    for (let i = 0; i < recs.length && i < mods.length; i++) pairs.push([mods[i] as AlertShape, recs[i] as AlertShape]);
  }
  for (const [mod, rec] of pairs) {
    {
      if (mod.topKeys !== rec.topKeys) problems.push(`${rec.rule}: top-level keys ${mod.topKeys} ≠ ${rec.topKeys}`);
      if (mod.priority !== rec.priority) problems.push(`${rec.rule}: priority ${mod.priority} ≠ ${rec.priority}`);
      if (mod.tags !== rec.tags) problems.push(`${rec.rule}: tags ${mod.tags} ≠ ${rec.tags}`);
      const mk = [...mod.fields.keys()].join(',');
      const rk = [...rec.fields.keys()].join(',');
      if (mk !== rk) {
        problems.push(`${rec.rule}: output_fields keys ${mk} ≠ ${rk}`);
        continue;
      }
      for (const [k, kind] of rec.fields) {
        const mkind = mod.fields.get(k) as JsonKind;
        if (mkind === kind) continue;
        if ((mkind === 'null' || kind === 'null') && (env.has(k) || mod.evtType !== rec.evtType)) continue;
        if (mod.evtType !== rec.evtType) continue;
        problems.push(`${rec.rule} @ ${rec.evtType}: ${k} is ${mkind} (${JSON.stringify(String(mod.alert['output_fields'] && (mod.alert['output_fields'] as JsonObject)[k]))}), recording ${kind}`);
      }
    }
  }
  for (const mod of m) {
    const out = String(mod.alert['output']);
    if (!/^\d\d:\d\d:\d\d\.\d{9}: (Emergency|Alert|Critical|Error|Warning|Notice|Informational|Debug) /.test(out)) problems.push(`${mod.rule}: output prefix ${out.slice(0, 40)}`);
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/.test(String(mod.alert['time']))) problems.push(`${mod.rule}: time ${String(mod.alert['time'])}`);
    if (String(mod.alert['time']).slice(11, 29) !== out.slice(0, 18)) problems.push(`${mod.rule}: output clock ≠ time`);
    if (mod.alert['source'] !== 'syscall') problems.push(`${mod.rule}: source ${String(mod.alert['source'])}`);
  }
  return [...new Set(problems)];
}

export interface ReRendered {
  readonly file: string;
  readonly rule: string;
  readonly recorded: string;
  /** The line rendered from the rule and the recorded alert's own field values; null when `rules` lacks the rule. */
  readonly rendered: string | null;
}

/**
 * Every alert of the recordings in `dir`, rendered again by render.mjs from its rule (looked up by
 * name in `rules`) and its own output_fields, with the field types `types`.
 */
export function reRenderRecorded(
  dir: string,
  rules: ReadonlyMap<string, { readonly name: string; readonly output: string; readonly priority: string; readonly tags: readonly string[] }>,
  types: ReadonlyMap<string, string>,
): ReRendered[] {
  const out: ReRendered[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jsonl'))) {
    for (const line of readJsonl(readFileSync(join(dir, file), 'utf8'))) {
      const a = parse(line);
      if (!isJsonObject(a)) throw new Error(`${file}: not a JSON object`);
      const fields = isJsonObject(a['output_fields']) ? a['output_fields'] : {};
      const rule = rules.get(String(a['rule']));
      const value = (k: string): unknown => {
        const v = fields[k];
        return v === null || v === undefined ? null : typeof v === 'object' ? String(v) : v;
      };
      const rendered = rule ? renderAlert(rule, value, BigInt(String(fields['evt.time'])), String(a['hostname']), types) : null;
      out.push({ file, rule: String(a['rule']), recorded: line, rendered });
    }
  }
  return out;
}
