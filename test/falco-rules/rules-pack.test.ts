/**
 * The shipped Falco rules (falco-rules/): schema, fields present in Falco 0.40 and 0.44, macros and
 * lists defined, conditions well formed, exit-event guard, no shadowing of official names, and the
 * one-to-one contract with COMPANION_RULES.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import AjvModule from 'ajv';
import { COMPANION_RULES } from '../../src/detect/types.js';
import { collectRefs, expandMacros, fieldBase, outputFields, parseCondition, type FieldRef, type Node } from './falco-condition.js';
import {
  HAVE_REF,
  MAIN_RULES,
  NO_REF_MESSAGE,
  OVERRIDE_042,
  REF_DIR,
  loadFieldList,
  loadYamlItems,
  ourRulesFiles,
  strings,
  type RuleItem,
} from './support.js';

/**
 * Fields allowed although they are missing from one of the two field lists, with the reason. Each
 * must also be confined to the macros named here.
 */
const GUARDED_FIELDS: Readonly<Record<string, { reason: string; onlyInMacros: readonly string[] }>> = {
  'evt.dir': {
    reason:
      'deprecated since Falco 0.42 (enter events dropped; absent from the 0.44 field list, still accepted with a ' +
      'LOAD_DEPRECATED_ITEM warning, always true for "<"). Needed on 0.40/0.41 so signals fire once. Confined to ' +
      'companion_syscall_exit, which falco-companion_rules_0.42-override.yaml replaces on 0.42+.',
    onlyInMacros: ['companion_syscall_exit'],
  },
};

/** Event types that are not syscalls (no enter/exit pair). */
const NON_SYSCALL_EVENTS = new Set(['container']);

const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as unknown as typeof AjvModule.default;

interface Parsed {
  readonly macros: Map<string, Node>;
  readonly lists: Map<string, string[]>;
  readonly rules: Map<string, RuleItem>;
}

function index(items: readonly RuleItem[]): Parsed {
  const macros = new Map<string, Node>();
  const lists = new Map<string, string[]>();
  const rules = new Map<string, RuleItem>();
  for (const it of items) {
    if (typeof it.macro === 'string' && typeof it.condition === 'string') macros.set(it.macro, parseCondition(it.condition));
    if (typeof it.list === 'string') lists.set(it.list, strings(it.items));
    if (typeof it.rule === 'string') rules.set(it.rule, it);
  }
  return { macros, lists, rules };
}

const mainItems = loadYamlItems(MAIN_RULES);
const main = index(mainItems);

function exceptionFields(rule: RuleItem): string[] {
  const ex = rule.exceptions;
  if (!Array.isArray(ex)) return [];
  return ex.flatMap((e: unknown) => strings((e as Record<string, unknown>).fields));
}

/** Every field a rule or macro of ours references, with where it came from. */
function ourFieldRefs(): { where: string; field: FieldRef }[] {
  const out: { where: string; field: FieldRef }[] = [];
  for (const it of mainItems) {
    const where = String(it.rule ?? it.macro ?? it.list ?? 'item');
    if (typeof it.condition === 'string') {
      for (const f of collectRefs(parseCondition(it.condition)).fields) out.push({ where, field: f });
    }
    if (typeof it.output === 'string') for (const f of outputFields(it.output)) out.push({ where, field: f });
    for (const name of exceptionFields(it)) out.push({ where, field: { raw: name, name, arg: null, transformers: [] } });
  }
  return out;
}

describe('falco-rules: files', () => {
  it('every YAML file under falco-rules/ parses to a list of rule items', () => {
    const files = ourRulesFiles();
    expect(files).toContain(MAIN_RULES);
    expect(files).toContain(OVERRIDE_042);
    for (const f of files) expect(loadYamlItems(f).length).toBeGreaterThan(0);
  });

  it.skipIf(!HAVE_REF)('every rules file validates against Falco rules JSON schema (draft-06)', () => {
    const require = createRequire(import.meta.url);
    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json') as object);
    const schema = JSON.parse(readFileSync(join(REF_DIR, 'falco-rules.schema.json'), 'utf8')) as object;
    const validate = ajv.compile(schema);
    for (const f of ourRulesFiles()) {
      const ok = validate(loadYamlItems(f));
      expect(ok, `${f}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
    // The validator can fail: an unknown key is rejected.
    expect(validate([{ rule: 'x', condition: 'evt.type=open', bogus: 1 }])).toBe(false);
  });

  it('the main file declares required_engine_version 0.31.0 and no plugin requirement', () => {
    const versions = mainItems.filter((i) => 'required_engine_version' in i).map((i) => i.required_engine_version);
    expect(versions).toEqual(['0.31.0']);
    expect(mainItems.some((i) => 'required_plugin_versions' in i)).toBe(false);
  });

  it('every rule has desc, condition, output, priority and falco_companion + MITRE tags', () => {
    const allowed = new Set(['INFO', 'NOTICE', 'WARNING']);
    for (const [name, r] of main.rules) {
      expect(typeof r.desc, name).toBe('string');
      expect(typeof r.condition, name).toBe('string');
      expect(typeof r.output, name).toBe('string');
      expect(allowed.has(String(r.priority)), `${name}: priority ${String(r.priority)}`).toBe(true);
      const tags = strings(r.tags);
      expect(tags, name).toContain('falco_companion');
      expect(tags.some((t) => /^T\d{4}(\.\d{3})?$/.test(t)), `${name}: MITRE technique tag`).toBe(true);
      expect(tags.some((t) => t.startsWith('mitre_')), `${name}: MITRE tactic tag`).toBe(true);
      expect(Array.isArray(r.exceptions) && r.exceptions.length > 0, `${name}: exceptions slots`).toBe(true);
      expect(collectRefs(parseCondition(String(r.condition))).macros.some((m) => m.startsWith('user_known_')), `${name}: user_known_ macro`).toBe(true);
    }
  });
});

describe('falco-rules: names match COMPANION_RULES one to one', () => {
  it('same set of rule names, each exactly once', () => {
    const names = mainItems.filter((i) => typeof i.rule === 'string').map((i) => String(i.rule));
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(Object.keys(COMPANION_RULES).sort());
  });
});

describe('falco-rules: conditions are well formed', () => {
  it('every condition of ours parses (balanced parentheses, known operators, operands)', () => {
    for (const it of [...mainItems, ...loadYamlItems(OVERRIDE_042)]) {
      if (typeof it.condition === 'string') expect(() => parseCondition(String(it.condition)), String(it.rule ?? it.macro)).not.toThrow();
    }
  });

  it('every rule constrains evt.type (no LOAD_NO_EVTTYPE warning)', () => {
    const constrains = (n: Node): boolean => {
      switch (n.type) {
        case 'and':
          return n.children.some(constrains);
        case 'or':
          return n.children.every(constrains);
        case 'not':
          return false;
        case 'macro':
          return false;
        case 'check':
          return n.field.name === 'evt.type' && (n.op === '=' || n.op === 'in');
      }
    };
    for (const [name, r] of main.rules) {
      expect(constrains(expandMacros(parseCondition(String(r.condition)), main.macros)), name).toBe(true);
    }
  });

  it('every syscall path of every rule is restricted to exit events through companion_syscall_exit', () => {
    expect(main.macros.get('companion_syscall_exit')).toEqual({
      type: 'check',
      field: { raw: 'evt.dir', name: 'evt.dir', arg: null, transformers: [] },
      op: '=',
      operands: [{ kind: 'value', text: '<', quoted: false }],
    });
    // true when every way the node can match is an exit event or a non-syscall event
    const exitOnly = (n: Node): boolean => {
      switch (n.type) {
        case 'and':
          return n.children.some(exitOnly);
        case 'or':
          return n.children.every(exitOnly);
        case 'not':
          return false;
        case 'macro':
          return n.name === 'companion_syscall_exit';
        case 'check':
          return (
            n.field.name === 'evt.type' &&
            (n.op === '=' || n.op === 'in') &&
            n.operands.every((o) => o.kind === 'value' && NON_SYSCALL_EVENTS.has(o.text))
          );
      }
    };
    for (const [name, r] of main.rules) {
      expect(exitOnly(expandMacros(parseCondition(String(r.condition)), main.macros)), name).toBe(true);
    }
    // The check can fail: a rule without the macro is caught.
    expect(exitOnly(parseCondition('evt.type=socket and evt.arg.domain contains AF_PACKET'))).toBe(false);
    expect(exitOnly(expandMacros(parseCondition('(evt.type=container or evt.type=execve) and companion_container'), main.macros))).toBe(false);
  });

  it('the 0.42+ override replaces exactly companion_syscall_exit with a condition free of evt.dir', () => {
    const items = loadYamlItems(OVERRIDE_042);
    const macros = items.filter((i) => 'macro' in i);
    expect(macros).toHaveLength(1);
    const m = macros[0] as RuleItem;
    expect(m.macro).toBe('companion_syscall_exit');
    expect(m.override).toEqual({ condition: 'replace' });
    expect(collectRefs(parseCondition(String(m.condition))).fields.map((f) => f.name)).not.toContain('evt.dir');
    expect(items.some((i) => 'rule' in i || 'list' in i)).toBe(false);
  });

  it('no presence test through a negated placeholder comparison (`not x in ("<NA>","N/A")` is true when x has no value)', () => {
    // Seen on a real Falco 0.40: container.mount.dest[/proc*] has NO value when nothing is mounted,
    // so `not container.mount.dest[/proc*] in ("<NA>","N/A")` made every plain container "sensitive".
    const placeholders = new Set(['<NA>', 'N/A', 'none']);
    const negatedPlaceholder = (n: Node, negated: boolean): string[] => {
      switch (n.type) {
        case 'and':
        case 'or':
          return n.children.flatMap((c) => negatedPlaceholder(c, negated));
        case 'not':
          return negatedPlaceholder(n.child, !negated);
        case 'macro':
          return [];
        case 'check': {
          const vs = n.operands.flatMap((o) => (o.kind === 'value' ? [o.text] : []));
          const positiveForm = n.op === '=' || n.op === '==' || n.op === 'in';
          // `not x in (placeholders)` and `x != placeholder` under a `not` both hold for a missing value.
          const bad = vs.some((v) => placeholders.has(v)) && ((positiveForm && negated) || (n.op === '!=' && negated));
          return bad ? [n.field.raw] : [];
        }
      }
    };
    const problems: string[] = [];
    for (const it of mainItems) {
      if (typeof it.condition !== 'string') continue;
      for (const f of negatedPlaceholder(parseCondition(it.condition), false)) problems.push(`${String(it.rule ?? it.macro)}: ${f}`);
    }
    expect(problems).toEqual([]);
    // The check can fail: the d3b06a5 form is caught, the fixed form is not.
    expect(negatedPlaceholder(parseCondition('(not container.mount.dest[/proc*] in ("<NA>","N/A"))'), false)).toEqual(['container.mount.dest[/proc*]']);
    expect(negatedPlaceholder(parseCondition('(container.mount.dest[/proc*] != "N/A" and container.mount.dest[/proc*] != "<NA>")'), false)).toEqual([]);
  });

  it('the container runtime is recognised by lineage and executable, never by a process name alone', () => {
    // A binary named `runc` is one `cp` away: the runtime exclusions must also require the parent
    // (the runtime CLI) and an executable that is not in a container's writable layer.
    const setup = main.macros.get('companion_runtime_setup');
    expect(setup).toBeDefined();
    const refs = collectRefs(setup as Node).fields.map((f) => f.raw);
    for (const f of ['proc.name', 'proc.pname', 'proc.is_exe_upper_layer', 'proc.exepath', 'proc.is_exe_from_memfd', 'proc.aname[2]']) expect(refs, f).toContain(f);
    const prctl = collectRefs(parseCondition(String(main.rules.get('Companion signal: process renamed with prctl')?.condition)));
    expect(prctl.macros).toEqual(expect.arrayContaining(['companion_runtime_stage_rename', 'companion_busybox_applet_rename']));
    // The tmpfs-exec and /proc/sys signals no longer skip a process because of its name.
    for (const rule of ['Companion signal: execution from tmpfs', 'Companion signal: /proc/sys write from container']) {
      const r = collectRefs(parseCondition(String(main.rules.get(rule)?.condition)));
      expect(r.listItems, rule).not.toContain('companion_container_runtime_binaries');
      expect(main.lists.get('companion_proc_sys_known_binaries')).not.toContain('runc');
    }
  });

  it('the override sorts after the main file (Falco loads a rules.d directory in name order)', () => {
    const names = [OVERRIDE_042, MAIN_RULES].map((p) => p.split('/').pop() as string).sort();
    expect(names).toEqual(['falco-companion_rules.yaml', 'falco-companion_rules_0.42-override.yaml']);
  });
});

describe.skipIf(!HAVE_REF)('falco-rules: fields exist in Falco 0.40 and 0.44', () => {
  it(HAVE_REF ? 'every field in conditions, outputs and exceptions is in both field lists or guarded' : NO_REF_MESSAGE, () => {
    const f040 = loadFieldList('0.40.0');
    const f044 = loadFieldList('0.44.0');
    const problems: string[] = [];
    for (const { where, field } of ourFieldRefs()) {
      const guard = GUARDED_FIELDS[field.name];
      if (guard !== undefined) {
        if (!guard.onlyInMacros.includes(where)) problems.push(`${where}: guarded field ${field.name} used outside ${guard.onlyInMacros.join(', ')}`);
        continue;
      }
      for (const [label, list] of [
        ['0.40', f040],
        ['0.44', f044],
      ] as const) {
        const base = fieldBase(field.name, new Set(list.keys()));
        if (!list.has(base)) problems.push(`${where}: ${field.raw} not in Falco ${label} field list`);
      }
    }
    expect(problems).toEqual([]);
    // The collection is not vacuous.
    const raws = new Set(ourFieldRefs().map((r) => r.field.raw));
    for (const f of ['proc.stdin.type', 'container.mount.dest[/proc*]', 'proc.apid[2]', 'evt.arg.optname', 'fd.sport', 'container.image.digest', 'k8s.pod.name', 'proc.exepath']) {
      expect(raws.has(f), f).toBe(true);
    }
    // Guarded fields really are missing from one list (else the guard is stale).
    for (const name of Object.keys(GUARDED_FIELDS)) expect(f040.has(name) && f044.has(name), name).toBe(false);
  });

  it('the field check can fail: an unknown field and a 0.44-only field are reported', () => {
    const f040 = loadFieldList('0.40.0');
    const f044 = loadFieldList('0.44.0');
    expect(f040.has(fieldBase('proc.bogus', new Set(f040.keys())))).toBe(false);
    expect(f044.has('container.label') && !f040.has('container.label')).toBe(true);
    expect(fieldBase('evt.arg.domain', new Set(f040.keys()))).toBe('evt.arg');
  });
});

describe.skipIf(!HAVE_REF)('falco-rules: macros and lists are defined', () => {
  const generations = [
    { label: 'Falco 0.40 (falco_rules 3.2.0)', official: ['falco_rules-3.2.0.yaml'] },
    { label: 'Falco 0.44 (falco_rules 5.1.0)', official: ['falco_rules.yaml'] },
  ];
  for (const gen of generations) {
    it(`${gen.label}: every macro and list we reference is defined (ours or official)`, () => {
      const official = gen.official.map((f) => index(loadYamlItems(join(REF_DIR, f))));
      const macroNames = new Set([...main.macros.keys(), ...official.flatMap((o) => [...o.macros.keys()])]);
      const listNames = new Set([...main.lists.keys(), ...official.flatMap((o) => [...o.lists.keys()])]);
      const problems: string[] = [];
      for (const it of mainItems) {
        if (typeof it.condition !== 'string') continue;
        const refs = collectRefs(parseCondition(it.condition));
        for (const m of refs.macros) if (!macroNames.has(m)) problems.push(`${String(it.rule ?? it.macro)}: undefined macro ${m}`);
        for (const item of refs.listItems) {
          const looksLikeOurs = /^(companion_|user_known_)/.test(item);
          if (looksLikeOurs && !listNames.has(item)) problems.push(`${String(it.rule ?? it.macro)}: undefined list ${item}`);
        }
      }
      expect(problems).toEqual([]);
    });
  }

  it('no macro or list of ours shadows an official one (any file of either generation)', () => {
    const files = ['falco_rules.yaml', 'falco-incubating_rules.yaml', 'falco-sandbox_rules.yaml', 'falco_rules-3.2.0.yaml'];
    const officialNames = new Set<string>();
    for (const f of files) {
      for (const it of loadYamlItems(join(REF_DIR, f))) {
        if (typeof it.macro === 'string') officialNames.add(it.macro);
        if (typeof it.list === 'string') officialNames.add(it.list);
        if (typeof it.rule === 'string') officialNames.add(it.rule);
      }
    }
    const ours = [...main.macros.keys(), ...main.lists.keys(), ...main.rules.keys()];
    expect(ours.filter((n) => officialNames.has(n))).toEqual([]);
    expect(officialNames.has('container')).toBe(true);
  });

  it('the file is self-contained and has no unused macro or list (no LOAD_UNUSED_* warnings)', () => {
    const used = new Set<string>();
    for (const it of mainItems) {
      if (typeof it.condition !== 'string') continue;
      const refs = collectRefs(parseCondition(it.condition));
      for (const m of refs.macros) used.add(m);
      for (const l of refs.listItems) used.add(l);
    }
    for (const m of used) {
      if (/^(companion_|user_known_)/.test(m)) expect(main.macros.has(m) || main.lists.has(m), m).toBe(true);
    }
    const unused = [...main.macros.keys(), ...main.lists.keys()].filter((n) => !used.has(n));
    expect(unused).toEqual([]);
    // every macro reference resolves inside this file
    for (const it of mainItems) {
      if (typeof it.condition !== 'string') continue;
      for (const m of collectRefs(parseCondition(it.condition)).macros) expect(main.macros.has(m), m).toBe(true);
    }
  });
});
