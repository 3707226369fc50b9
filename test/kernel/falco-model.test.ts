/**
 * The Falco model's parts that need no kernel: the renderer reproduces real Falco 0.40 alerts byte
 * for byte, the rule loader applies lists, macros, appends, overrides and exceptions as Falco does,
 * the evaluator follows libsinsp's semantics (no value → false), and the engine's rule_matching
 * `first` keeps only the first matching rule in load order.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCondition, type FieldRef } from '../falco-rules/falco-condition.js';
import { reRenderRecorded } from '../support/falco-model/conformance.js';
import { RuleEngine, eventTypes } from '../support/falco-model/engine.js';
import { evaluate, explain, globMatch, inCidr, type FieldValue, type Scalar } from '../support/falco-model/evaluate.js';
import { loadFieldTypes, priorityName, renderAlert } from '../support/falco-model/render.mjs';
import { loadRules } from '../support/falco-model/rules.js';
import type { FalcoEvent } from '../support/falco-model/sinsp.js';
import { FIELDS_040, OFFICIAL_RULES_040, RECORDED_DIR } from '../support/kernel/session.js';

const RULES_AT_RECORDING = join(import.meta.dirname, 'fixtures', 'falco-companion_rules-d3b06a5.yaml');
const haveShared = existsSync(RECORDED_DIR) && existsSync(OFFICIAL_RULES_040) && existsSync(FIELDS_040);
const noShared = `skipped: ../shared/falco-reference (recordings, official rules, field list) not found`;

const dir = mkdtempSync(join(tmpdir(), 'falco-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function rulesFile(name: string, yaml: string): string {
  const p = join(dir, name);
  writeFileSync(p, yaml);
  return p;
}

function facts(f: Readonly<Record<string, FieldValue>>): (ref: FieldRef) => FieldValue {
  return (ref) => f[ref.raw];
}

describe.skipIf(!haveShared)(`renderer against real Falco 0.40 alerts${haveShared ? '' : ` (${noShared})`}`, () => {
  it('re-renders every recorded alert byte for byte from its rule and its own field values', () => {
    const rules = loadRules([OFFICIAL_RULES_040, RULES_AT_RECORDING]);
    const all = reRenderRecorded(RECORDED_DIR, new Map(rules.rules.map((r) => [r.name, r] as const)), loadFieldTypes(FIELDS_040));
    for (const r of all) {
      expect(r.rendered, `${r.file}: rule ${r.rule} not loaded`).not.toBeNull();
      expect(r.rendered, `${r.file}: ${r.rule}`).toBe(r.recorded);
    }
    expect(all.length).toBe(81);
  });
});

describe('renderer', () => {
  const types = new Map([
    ['proc.pid', 'INT64'],
    ['container.privileged', 'BOOL'],
    ['fd.name', 'CHARBUF'],
  ]);
  it('types output_fields, writes <NA> and null for missing values, keeps evt.time exact above 2^53', () => {
    const line = renderAlert(
      { name: 'r', output: 'x pid=%proc.pid priv=%container.privileged name=%fd.name dom=%evt.arg.domain.', priority: priorityName('INFO'), tags: ['b', 'a'] },
      (k: string) => ({ 'proc.pid': 7, 'container.privileged': false, 'evt.arg.domain': 3 })[k] ?? null,
      1796280154014857642n,
      'h',
      types,
    );
    expect(line).toBe(
      '{"hostname":"h","output":"06:42:34.014857642: Informational x pid=7 priv=false name=<NA> dom=3.","output_fields":{"container.privileged":false,"evt.arg.domain":"3","evt.time":1796280154014857642,"fd.name":null,"proc.pid":7},"priority":"Informational","rule":"r","source":"syscall","tags":["a","b"],"time":"2026-12-03T06:42:34.014857642Z"}',
    );
  });
});

describe('rule loader', () => {
  it('expands lists inside lists, applies list/macro appends, rule overrides and exceptions with values', () => {
    const base = rulesFile(
      'base.yaml',
      `- list: inner
  items: [a, b]
- list: outer
  items: [inner, c]
- macro: m
  condition: proc.name in (outer)
- rule: R
  desc: d
  condition: evt.type=open and m
  output: "r %proc.name"
  priority: WARNING
  tags: [z, y]
  exceptions:
    - name: by_exe
      fields: [proc.exepath, fd.name]
      comps: [=, startswith]
- rule: Off
  desc: d
  condition: evt.type=open
  output: off
  priority: INFO
  enabled: false
`,
    );
    const tune = rulesFile(
      'tune.yaml',
      `- list: outer
  items: [d]
  append: true
- macro: m
  condition: or proc.name=e
  append: true
- rule: R
  exceptions:
    - name: by_exe
      values:
        - [/usr/bin/ok, /tmp/]
  override:
    exceptions: append
`,
    );
    const set = loadRules([base, tune]);
    expect(set.rules.map((r) => r.name)).toEqual(['R']);
    const r = set.rules[0];
    expect(r?.tags).toEqual(['y', 'z']);
    expect(r?.priority).toBe('Warning');
    const ev = (name: string, exe = '/bin/x', fd = '/etc/x'): boolean => evaluate(r?.condition ?? parseCondition('evt.num=0'), facts({ 'evt.type': 'open', 'proc.name': name, 'proc.exepath': exe, 'fd.name': fd }));
    for (const n of ['a', 'b', 'c', 'd', 'e']) expect(ev(n), n).toBe(true);
    expect(ev('f')).toBe(false);
    expect(ev('a', '/usr/bin/ok', '/tmp/file')).toBe(false);
    expect(ev('a', '/usr/bin/ok', '/etc/file')).toBe(true);
  });

  it('fails on an undefined macro, like Falco', () => {
    expect(() => loadRules([rulesFile('bad.yaml', '- rule: B\n  desc: d\n  condition: evt.type=open and nope\n  output: o\n  priority: INFO\n')])).toThrow(/undefined macro nope/);
  });
});

describe('evaluator (libsinsp semantics)', () => {
  const cond = (c: string): ReturnType<typeof parseCondition> => parseCondition(c);
  it('a field without a value makes every comparison false, and its negation true', () => {
    for (const op of ['= x', '!= x', 'in (x)', 'startswith x', 'contains x', 'pmatch (/x)', 'glob x*', '> 1']) {
      expect(evaluate(cond(`fd.name ${op}`), facts({})), op).toBe(false);
      expect(evaluate(cond(`not fd.name ${op}`), facts({})), op).toBe(true);
    }
    expect(evaluate(cond('fd.name exists'), facts({}))).toBe(false);
    expect(evaluate(cond('fd.name exists'), facts({ 'fd.name': '' }))).toBe(true);
  });
  it('compares numbers numerically, booleans by name, nets by CIDR, paths by prefix, globs fnmatch-style', () => {
    expect(evaluate(cond('evt.rawres >= 0'), facts({ 'evt.rawres': 3 }))).toBe(true);
    expect(evaluate(cond('evt.rawres >= 0'), facts({ 'evt.rawres': -111 }))).toBe(false);
    expect(evaluate(cond('fd.sport in (80, 443)'), facts({ 'fd.sport': 443 }))).toBe(true);
    expect(evaluate(cond('container.privileged=true'), facts({ 'container.privileged': true }))).toBe(true);
    expect(evaluate(cond('fd.snet in ("10.0.0.0/8", "127.0.0.0/8")'), facts({ 'fd.snet': '127.0.0.53' }))).toBe(true);
    expect(evaluate(cond('fd.snet in ("10.0.0.0/8")'), facts({ 'fd.snet': '11.0.0.1' }))).toBe(false);
    expect(evaluate(cond('proc.exepath pmatch (/tmp, /dev/shm)'), facts({ 'proc.exepath': '/tmp/x' }))).toBe(true);
    expect(evaluate(cond('proc.exepath pmatch (/tmp)'), facts({ 'proc.exepath': '/tmpfoo/x' }))).toBe(false);
    expect(evaluate(cond('fd.name glob "/proc/*/ns/*"'), facts({ 'fd.name': '/proc/1/ns/mnt' }))).toBe(true);
    expect(globMatch('/run/[ab]?', '/run/bz')).toBe(true);
    expect(inCidr('192.0.2.9', '192.0.2.0/24')).toBe(true);
  });
  it('a multi-valued field (proc.aname without index) matches when any value does; != needs all', () => {
    const f = facts({ 'proc.aname': ['sh', 'containerd-shim'] as readonly Scalar[] });
    expect(evaluate(cond('proc.aname in (containerd-shim)'), f)).toBe(true);
    expect(evaluate(cond('proc.aname = bash'), f)).toBe(false);
    expect(evaluate(cond('proc.aname != bash'), f)).toBe(true);
    expect(evaluate(cond('proc.aname != sh'), f)).toBe(false);
  });
  it('explains a false condition by its false conjuncts', () => {
    expect(explain(cond('evt.type=open and fd.name=/x'), facts({ 'evt.type': 'open' }))).toEqual(['fd.name[=<none>] = /x']);
  });
});

describe('rule engine', () => {
  const file = rulesFile(
    'two.yaml',
    `- rule: First
  desc: d
  condition: evt.type=socket and evt.arg.domain contains AF_PACKET
  output: first %evt.arg.domain
  priority: NOTICE
  tags: []
- rule: Second
  desc: d
  condition: evt.type=socket and evt.dir=<
  output: second
  priority: NOTICE
  tags: []
`,
  );
  const ev = (type: string, dir: '>' | '<'): FalcoEvent => ({
    num: 1,
    type,
    dir,
    timeNs: 1796280154014857642n,
    tid: 1,
    pid: 1,
    kernel: null,
    field: (ref) => ({ 'evt.type': type, 'evt.dir': dir, 'evt.arg.domain': 'AF_PACKET' })[ref.raw],
  });
  it('rule_matching first: one alert per event, the first matching rule in load order; all: every match', () => {
    const rules = loadRules([file]);
    const first = new RuleEngine({ rules, hostname: 'h', fieldTypes: new Map() });
    expect(first.match(ev('socket', '<')).map((a) => a.rule.name)).toEqual(['First']);
    expect(first.match(ev('socket', '>')).map((a) => a.rule.name)).toEqual(['First']);
    const all = new RuleEngine({ rules, hostname: 'h', fieldTypes: new Map(), matching: 'all' });
    expect(all.match(ev('socket', '<')).map((a) => a.rule.name)).toEqual(['First', 'Second']);
    expect(first.match(ev('open', '<'))).toEqual([]);
  });
  it('indexes rules by the event types their condition pins', () => {
    expect([...(eventTypes(parseCondition('evt.type in (open, openat) and fd.name=x')) ?? [])]).toEqual(['open', 'openat']);
    expect(eventTypes(parseCondition('evt.type=open or fd.name=x'))).toBeNull();
  });
});
