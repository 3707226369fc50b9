/**
 * Operator / field-type compatibility of every comparison in the shipped rules, as libsinsp checks it
 * when Falco compiles a condition (userspace/libsinsp/filter_compare.cpp `flt_is_comparable`, and
 * the value parsing of sinsp_filter_check::parse_filter_value): a wrong pairing is a load error
 * ("'contains' operator not supported for numeric filters", "could not parse ..."), not a warning.
 * Field types come from the 0.40 and 0.44 supported-fields lists; the test runs over both.
 */
import { describe, expect, it } from 'vitest';
import { parseCondition, type Node } from './falco-condition.js';
import { allowedOps, checkExceptions, fieldType, literalFits, unquote, type Problem } from './field-types.js';
import { HAVE_REF, MAIN_RULES, NO_REF_MESSAGE, OVERRIDE_042, REF_DIR, loadFieldList, loadYamlItems, strings, type RuleItem } from './support.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';

/** Walk a parsed condition; list references are expanded with `lists` (as Falco does before compiling). */
function checkNode(node: Node, where: string, fields: ReadonlyMap<string, { type: string }>, lists: ReadonlyMap<string, string[]>, out: Problem[]): void {
  switch (node.type) {
    case 'and':
    case 'or':
      for (const c of node.children) checkNode(c, where, fields, lists, out);
      return;
    case 'not':
      checkNode(node.child, where, fields, lists, out);
      return;
    case 'macro':
      return;
    case 'check': {
      if (node.op === 'exists') return;
      const type = fieldType(node.field.name, fields);
      if (type === undefined) return; // unknown fields are rules-pack.test.ts's concern
      if (node.field.transformers.length > 0) return;
      if (!allowedOps(type).has(node.op)) out.push({ where, msg: `'${node.op}' on ${node.field.raw} (${type})` });
      const values: string[] = [];
      for (const o of node.operands) {
        if (o.kind !== 'value') continue;
        const expanded = !o.quoted ? lists.get(o.text) : undefined;
        if (expanded !== undefined) values.push(...expanded.map(unquote));
        else values.push(o.text);
      }
      for (const v of values) if (!literalFits(type, v)) out.push({ where, msg: `value ${JSON.stringify(v)} does not parse as ${type} for ${node.field.raw}` });
      return;
    }
  }
}

function lintItems(items: readonly RuleItem[], fields: ReadonlyMap<string, { type: string }>, extraLists: ReadonlyMap<string, string[]> = new Map()): Problem[] {
  const lists = new Map<string, string[]>(extraLists);
  for (const it of items) if (typeof it.list === 'string') lists.set(it.list, strings(it.items));
  const out: Problem[] = [];
  for (const it of items) {
    const where = String(it.rule ?? it.macro ?? 'item');
    if (typeof it.condition === 'string') checkNode(parseCondition(it.condition), where, fields, lists, out);
    if (typeof it.rule === 'string') checkExceptions(it, fields, out);
  }
  return out;
}

describe.skipIf(!HAVE_REF)(HAVE_REF ? 'falco-rules: operators fit field types (libsinsp flt_is_comparable)' : NO_REF_MESSAGE, () => {
  const generations = [
    { label: '0.40', fields: loadFieldListSafe('0.40.0') },
    { label: '0.44', fields: loadFieldListSafe('0.44.0') },
  ];
  for (const gen of generations) {
    it(`Falco ${gen.label}: every comparison and exception comp of ours is accepted for the field type`, () => {
      const problems = [...lintItems(loadYamlItems(MAIN_RULES), gen.fields), ...lintItems(loadYamlItems(OVERRIDE_042), gen.fields)];
      expect(problems.map((p) => `${p.where}: ${p.msg}`)).toEqual([]);
    });
  }

  it('the official rules pass the same check (the checker agrees with what real Falco loads)', () => {
    const problems = [
      ...lintItems(officialItems('falco_rules-3.2.0.yaml'), loadFieldListSafe('0.40.0')),
      ...lintItems(officialItems('falco_rules.yaml'), loadFieldListSafe('0.44.0')),
    ];
    expect(problems.map((p) => `${p.where}: ${p.msg}`)).toEqual([]);
  });

  it('the check can fail: string operators on numbers, quoted words for numbers, bad CIDRs, bad comps', () => {
    const f = loadFieldListSafe('0.44.0');
    const bad: RuleItem[] = [
      { list: 'nums', items: ['3', 'SOCK_RAW'] },
      { macro: 'm1', condition: 'proc.pid contains 12' },
      { macro: 'm2', condition: 'fd.sport in (nums)' },
      { macro: 'm3', condition: 'fd.snet in ("10.0.0.0/33x")' },
      { macro: 'm4', condition: 'proc.is_exe_from_memfd=yes' },
      { macro: 'm5', condition: 'fd.sip startswith 10.' },
      { rule: 'r', condition: 'evt.type=connect', exceptions: [{ name: 'e', fields: ['fd.sport'], comps: ['startswith'], values: [['http']] }] },
    ];
    const msgs = lintItems(bad, f).map((p) => `${p.where}: ${p.msg}`);
    expect(msgs).toEqual([
      "m1: 'contains' on proc.pid (INT64)",
      'm2: value "SOCK_RAW" does not parse as PORT for fd.sport',
      'm3: value "10.0.0.0/33x" does not parse as IPNET for fd.snet',
      'm4: value "yes" does not parse as BOOL for proc.is_exe_from_memfd',
      "m5: 'startswith' on fd.sip (IPADDR)",
      'm5: value "10." does not parse as IPADDR for fd.sip',
      "r / exception e: comp 'startswith' on fd.sport (PORT)",
      'r / exception e: exception value "http" does not parse as PORT for fd.sport',
    ]);
  });
});

function loadFieldListSafe(v: '0.40.0' | '0.44.0'): Map<string, { type: string }> {
  return HAVE_REF ? loadFieldList(v) : new Map();
}

function officialItems(file: string): RuleItem[] {
  const parsed: unknown = parseYaml(readFileSync(join(REF_DIR, file), 'utf8'));
  return Array.isArray(parsed) ? (parsed as RuleItem[]) : [];
}
