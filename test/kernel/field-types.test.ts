/**
 * Our table of Falco field types (test/support/falco-model/field-types.ts), with which the Falco
 * model types output_fields when Falco's supported-fields list (../shared) is not on the machine:
 * it covers exactly the fields our rules pack uses (no root, no ../shared), and, when ../shared is
 * present, every entry has the type Falco 0.40 and 0.44 list for it and the recorded real-Falco
 * alerts of our rules re-render byte for byte with the table alone. No need for root.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMPANION_FIELD_TYPES, referencedFields, typedByRenderer, untypedOutputFields } from '../support/falco-model/field-types.js';
import { reRenderRecorded } from '../support/falco-model/conformance.js';
import { loadFieldTypes } from '../support/falco-model/render.mjs';
import { loadRules } from '../support/falco-model/rules.js';
import { FIELDS_040, OUR_RULES, RECORDED_DIR, REF_DIR } from '../support/kernel/session.js';

const FIELDS_044 = join(REF_DIR, 'supported-fields-falco-0.44.0.txt');
const RULES_AT_RECORDING = join(import.meta.dirname, 'fixtures', 'falco-companion_rules-d3b06a5.yaml');

/** Entries a Falco field list may lack, with the reason (the pack confines them: rules-pack.test.ts). */
const NOT_IN_044: Readonly<Record<string, string>> = {
  'evt.dir': 'deprecated since Falco 0.42 (no enter events): absent from the 0.44 list; the 0.42 override drops it',
};

/** Problems of `table` against a Falco field list (an entry missing or with another type). */
function mismatches(table: ReadonlyMap<string, string>, list: ReadonlyMap<string, string>, mayLack: Readonly<Record<string, string>> = {}): string[] {
  const out: string[] = [];
  for (const [name, type] of table) {
    const theirs = list.get(name);
    if (theirs === undefined) {
      if (mayLack[name] === undefined) out.push(`${name}: not in the list`);
    } else if (theirs !== type) out.push(`${name}: ${type} here, ${theirs} in the list`);
  }
  return out;
}

describe('field types of our rules pack (no ../shared needed)', () => {
  const rules = loadRules([OUR_RULES]);
  const { output, condition } = referencedFields(rules);

  it('every field an output or a condition of our pack uses has a type in the table, and the table has no stale entry', () => {
    const used = new Set([...output, ...condition].filter((f) => !typedByRenderer(f)));
    expect([...used].filter((f) => !COMPANION_FIELD_TYPES.has(f)).sort()).toEqual([]);
    expect([...COMPANION_FIELD_TYPES.keys()].filter((f) => !used.has(f)).sort()).toEqual([]);
    // not vacuous: numbers, booleans and addresses the companion reads are among them
    for (const f of ['proc.pid', 'proc.apid', 'fd.sport', 'user.uid', 'container.privileged', 'fd.cip', 'evt.rawres']) expect(used.has(f), f).toBe(true);
  });

  it('the model refuses to render an output field the table does not type (it would print a number as a string)', () => {
    expect(untypedOutputFields(rules, COMPANION_FIELD_TYPES)).toEqual([]);
    const less = new Map(COMPANION_FIELD_TYPES);
    less.delete('proc.pid');
    expect(untypedOutputFields(rules, less)).toEqual(['proc.pid']);
  });

  it('the comparison with a Falco field list reports a wrong type and a missing field', () => {
    const list = new Map([
      ['proc.pid', 'INT64'],
      ['fd.sport', 'PORT'],
    ]);
    const table = new Map([
      ['proc.pid', 'CHARBUF'],
      ['fd.sport', 'PORT'],
      ['proc.bogus', 'CHARBUF'],
    ]);
    expect(mismatches(table, list)).toEqual(['proc.pid: CHARBUF here, INT64 in the list', 'proc.bogus: not in the list']);
  });
});

const haveLists = existsSync(FIELDS_040) && existsSync(FIELDS_044);
const noLists = `skipped: Falco field lists not found (${FIELDS_040}, ${FIELDS_044}; ../shared/falco-reference)`;

describe.skipIf(!haveLists)(`field types of our rules pack against Falco's lists${haveLists ? '' : ` (${noLists})`}`, () => {
  it('every entry has the type of the Falco 0.40 list', () => {
    expect(mismatches(COMPANION_FIELD_TYPES, loadFieldTypes(FIELDS_040))).toEqual([]);
  });

  it('every entry has the type of the Falco 0.44 list (evt.dir excepted, with its reason)', () => {
    const list = loadFieldTypes(FIELDS_044);
    expect(mismatches(COMPANION_FIELD_TYPES, list, NOT_IN_044)).toEqual([]);
    for (const name of Object.keys(NOT_IN_044)) expect(list.has(name), `${name} is in the 0.44 list: drop the exception`).toBe(false);
  });
});

const haveRecordings = existsSync(RECORDED_DIR);
describe.skipIf(!haveRecordings)(`field types against real Falco 0.40 alerts${haveRecordings ? '' : ` (skipped: recordings not found at ${RECORDED_DIR}; ../shared)`}`, () => {
  it('the recorded alerts of our rules re-render byte for byte with the table alone', () => {
    const byName = new Map(loadRules([RULES_AT_RECORDING]).rules.map((r) => [r.name, r] as const));
    const ours = reRenderRecorded(RECORDED_DIR, byName, COMPANION_FIELD_TYPES).filter((r) => r.rendered !== null);
    for (const r of ours) expect(r.rendered, `${r.file}: ${r.rule}`).toBe(r.recorded);
    const n = ours.length;
    expect(n).toBeGreaterThan(40);
  });
});
