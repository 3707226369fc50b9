/**
 * YAML files an operator writes (or an attacker who can write them would): the config file
 * (src/config/validate.ts), the companion rules file (src/detect/rules/load.ts, then compiled into
 * the mapping and the suppression), detection test cases (src/cases/load.ts). Invalid input must
 * be a ConfigError listing problems with file:line:col, never another exception, never a hang
 * (alias bombs, deep nesting); valid settings must load to exactly what was written.
 */
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { stringify as yamlStringify } from 'yaml';
import { loadYamlCase } from '../../../src/cases/load.js';
import type { ObjectSpec, Spec } from '../../../src/config/dsl.js';
import { configSchema } from '../../../src/config/schema.js';
import { loadConfig } from '../../../src/config/validate.js';
import { compileMapping } from '../../../src/detect/mapping.js';
import { defaultRulesPath, loadRulesFile } from '../../../src/detect/rules/load.js';
import { Suppression, podLabelKeys } from '../../../src/detect/suppress.js';
import { ConfigError } from '../../../src/errors.js';
import { longRun, mutatedBytes, nastyString } from '../arbitraries.js';
import { thrown, type FuzzTarget } from '../harness.js';

const root = new URL('../../../', import.meta.url);
const CONFIG_EXAMPLE = readFileSync(new URL('docker/config.example.yaml', root), 'utf8');
const RULES_DEFAULT = readFileSync(defaultRulesPath(), 'utf8');
const CASE_EXAMPLE = readFileSync(new URL('examples/detection-tests/knock-chain/case.yaml', root), 'utf8');

/** Line-level edits of a YAML document: drop, duplicate, re-indent, replace a value, inject YAML features. */
function mutatedYaml(base: string): fc.Arbitrary<string> {
  const lines = base.split('\n');
  const inject = fc.constantFrom(
    'x: &a [1, 2, 3]',
    'y: *a',
    'z: *undefined_alias',
    '<<: {a: 1}',
    '!!binary aGVsbG8=',
    'k: !custom tag',
    '? complex key',
    ': value',
    '---',
    '...',
    '%YAML 1.1',
    'key: "unterminated',
    "key: 'a''b'",
    'key: |\n  block\n   text',
    'key: >-\n  folded',
    '\t: tab',
    'key: 0x1F',
    'key: 1_000',
    'key: .inf',
    'key: ~',
    'key: 2024-01-01',
    'key: [',
    'key: {a: [b, {c: d}]}',
    '- list item',
    '  - nested: item',
  );
  const edit = fc.oneof(
    fc.record({ k: fc.constant('drop' as const), at: fc.nat() }),
    fc.record({ k: fc.constant('dup' as const), at: fc.nat() }),
    fc.record({ k: fc.constant('indent' as const), at: fc.nat(), by: fc.constantFrom('  ', ' ', '\t', '    ') }),
    fc.record({ k: fc.constant('value' as const), at: fc.nat(), v: fc.oneof(nastyString.map((s) => JSON.stringify(s)), fc.constantFrom('-1', '0', '1e309', '99999999999999999999', 'true', 'null', '[]', '{}', '""', '5x', '10 parsecs', 'off', 'yes', '1h30m', '-5s', '1.5KiB', '/etc/passwd', 'http://[::1', '0.0.0.0/0', '*')) }),
    fc.record({ k: fc.constant('inject' as const), at: fc.nat(), s: inject }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 6 }).map((edits) => {
    const ls = [...lines];
    for (const e of edits) {
      const at = e.at % (ls.length + 1);
      if (e.k === 'drop') ls.splice(at, 1);
      else if (e.k === 'dup') ls.splice(at, 0, ls[at] ?? '');
      else if (e.k === 'indent') ls[at] = e.by + (ls[at] ?? '');
      else if (e.k === 'value') {
        const l = ls[at] ?? '';
        const c = l.indexOf(': ');
        ls[at] = c >= 0 ? `${l.slice(0, c + 2)}${e.v}` : `${l}${e.v}`;
      } else ls.splice(at, 0, e.s);
    }
    return ls.join('\n');
  });
}

/** Alias bombs (billion laughs), deep flow nesting, huge scalars. */
const hostileYaml: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 2, max: 12 }).map((levels) => {
    const out = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i <= levels; i++) out.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(',')}]`);
    return out.join('\n');
  }),
  fc.tuple(fc.integer({ min: 10, max: 10_000 }), fc.constantFrom('[', '{a: ', '- ')).map(([n, open]) => (open === '- ' ? Array.from({ length: Math.min(n, 400) }, (_, i) => ' '.repeat(i * 2) + '- x').join('\n') : open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n))),
  fc.integer({ min: 1000, max: 200_000 }).map((n) => `state_dir: ${'a'.repeat(n)}`),
  longRun,
  fc.anything({ maxDepth: 4 }).map((v) => {
    try {
      return yamlStringify(v);
    } catch {
      return '';
    }
  }),
  fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u).toString('utf8')),
);

function yamlInput(base: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: mutatedYaml(base) },
    { weight: 2, arbitrary: hostileYaml },
    { weight: 1, arbitrary: mutatedBytes(fc.constant(Buffer.from(base))).map((b) => b.toString('utf8')) },
  );
}

/** The error of an invalid file: a ConfigError whose problems name the file and, from YAML, a line and column. */
function checkConfigError(err: unknown, file: string): void {
  if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError: ${String(err)}${err instanceof Error ? `\n${err.stack?.split('\n').slice(0, 4).join('\n')}` : ''}`);
  expect(err.code).toBe('E_CONFIG');
  expect(err.problems.length).toBeGreaterThan(0);
  for (const p of err.problems) {
    expect(typeof p).toBe('string');
    expect(p.startsWith(file) || p.startsWith('environment') || p.startsWith('command line') || p.startsWith(defaultRulesPath())).toBe(true);
  }
}

// ---------------------------------------------------------------------------------------------
// Config

/** A valid value for a config leaf, and what it loads to. */
function validSetting(spec: Spec): fc.Arbitrary<{ yaml: unknown; value: unknown }> | null {
  const same = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<{ yaml: unknown; value: unknown }> => a.map((v) => ({ yaml: v, value: v }));
  switch (spec.kind) {
    case 'bool':
      return same(fc.boolean());
    case 'int':
      return same(fc.integer({ min: Math.max(spec.min ?? -1e9, -1e9), max: Math.min(spec.max ?? 1e9, 1e9) }).filter((n) => !spec.check || spec.check(n) === null));
    case 'number':
      return same(fc.double({ min: Math.max(spec.min ?? -1e9, -1e9), max: Math.min(spec.max ?? 1e9, 1e9), noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)));
    case 'enum':
      return same(fc.constantFrom(...spec.values));
    case 'duration': {
      const lo = spec.min ?? 0;
      const hi = Math.min(spec.max ?? 10 * 86_400_000, 10 * 86_400_000);
      return fc.oneof(
        same(fc.integer({ min: lo, max: hi })),
        fc.integer({ min: Math.ceil(lo / 1000), max: Math.floor(hi / 1000) }).map((s) => ({ yaml: `${s}s`, value: s * 1000 })),
      );
    }
    case 'size': {
      const lo = spec.min ?? 0;
      const hi = 2 ** 40;
      return fc.oneof(same(fc.integer({ min: lo, max: Math.min(hi, 2 ** 31) })), fc.integer({ min: Math.ceil(lo / 1024), max: Math.floor(hi / 1024) }).map((k) => ({ yaml: `${k}KiB`, value: k * 1024 })));
    }
    default:
      return null;
  }
}

/** Leaves that take any valid value alone (not under an object with a cross-field check). */
function* freeLeaves(spec: ObjectSpec, path: string[] = []): Generator<{ path: string[]; spec: Spec }> {
  if (spec.check) return;
  for (const [k, f] of Object.entries(spec.fields)) {
    if (f.kind === 'object') yield* freeLeaves(f, [...path, k]);
    else yield { path: [...path, k], spec: f };
  }
}
const settable = [...freeLeaves(configSchema)].filter((l) => validSetting(l.spec) !== null);
expect(settable.length).toBeGreaterThan(50);

type ConfigInput = { readonly kind: 'valid'; readonly sets: readonly { readonly path: readonly string[]; readonly yaml: unknown; readonly value: unknown }[] } | { readonly kind: 'any'; readonly text: string };

const validConfig = fc
  .uniqueArray(fc.constantFrom(...settable), { maxLength: 8, selector: (l) => l.path.join('.') })
  .chain((ls) => fc.tuple(...ls.map((l) => (validSetting(l.spec) as fc.Arbitrary<{ yaml: unknown; value: unknown }>).map((v) => ({ path: l.path, ...v })))));

function nest(sets: readonly { path: readonly string[]; yaml: unknown }[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    let cur = out;
    for (const p of s.path.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
    cur[s.path[s.path.length - 1] as string] = s.yaml;
  }
  return out;
}

export const configYaml: FuzzTarget<ConfigInput> = {
  name: 'config YAML',
  module: 'src/config/validate.ts, src/config/dsl.ts',
  arb: fc.oneof(fc.record({ kind: fc.constant('valid' as const), sets: validConfig }), fc.record({ kind: fc.constant('any' as const), text: yamlInput(CONFIG_EXAMPLE) })),
  check: (x) => {
    const text = x.kind === 'valid' ? yamlStringify(nest(x.sets)) : x.text;
    let cfg: Record<string, unknown> | undefined;
    const err = thrown(() => (cfg = loadConfig<Record<string, unknown>>(configSchema, { file: 'fuzz.yaml', text, env: {} })));
    if (x.kind === 'any') {
      if (err !== undefined) checkConfigError(err, 'fuzz.yaml');
      else expect(Object.isFrozen(cfg)).toBe(true);
      return;
    }
    if (err !== undefined) throw new Error(`valid settings rejected: ${String(err)}\n${text}`);
    // Exact round trip: each setting loads to what was written.
    for (const s of x.sets) {
      let v: unknown = cfg;
      for (const p of s.path) v = (v as Record<string, unknown>)[p];
      expect(v, s.path.join('.')).toEqual(s.value);
    }
  },
  shortRuns: 150,
};

// ---------------------------------------------------------------------------------------------
// Rules file

export const rulesYaml: FuzzTarget<string> = {
  name: 'companion rules YAML',
  module: 'src/detect/rules/load.ts, src/detect/mapping.ts, src/detect/suppress.ts',
  arb: yamlInput(RULES_DEFAULT),
  check: (text) => {
    let rules: ReturnType<typeof loadRulesFile> | undefined;
    const err = thrown(() => (rules = loadRulesFile('fuzz-rules.yaml', { text })));
    if (err !== undefined) {
      checkConfigError(err, 'fuzz-rules.yaml');
      return;
    }
    if (!rules) throw new Error('no rules');
    expect(Object.isFrozen(rules)).toBe(true);
    // What loads must compile: the signal mapping and the suppression.
    compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) });
    void new Suppression(rules.suppress, () => undefined);
  },
  shortRuns: 60,
};

// ---------------------------------------------------------------------------------------------
// Detection test cases

export const caseYaml: FuzzTarget<string> = {
  name: 'detection test case YAML',
  module: 'src/cases/load.ts',
  arb: yamlInput(CASE_EXAMPLE),
  check: (text) => {
    let c: ReturnType<typeof loadYamlCase> | undefined;
    const err = thrown(() => (c = loadYamlCase('/fuzz/x.case.yaml', text)));
    if (err !== undefined) {
      checkConfigError(err, '/fuzz/x.case.yaml');
      return;
    }
    expect(c?.alertsFile.startsWith('/')).toBe(true);
  },
  shortRuns: 150,
};
