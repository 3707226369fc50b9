/**
 * The default mapping against the shipped signal rules: every COMPANION_RULES rule is mapped, one
 * to one, and each line of test/fixtures/signal-alerts.jsonl (one real-shaped alert per shipped
 * rule) maps to exactly the signal the table names.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertFromJson } from '../../src/alert.js';
import { parse } from '../../src/json/lossless.js';
import { compileMapping } from '../../src/detect/mapping.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { COMPANION_RULES } from '../../src/detect/types.js';
import { DETECTOR_SPECS } from './helpers.js';

const FIXTURE = 'test/fixtures/signal-alerts.jsonl';
const rules = loadRulesFile(null, { detectors: DETECTOR_SPECS });
const mapping = compileMapping(rules.signals);

describe('default mapping covers the shipped signal rules', () => {
  it('names every COMPANION_RULES rule, and only with the table kind', () => {
    for (const [name, want] of Object.entries(COMPANION_RULES)) {
      const entries = rules.signals.filter((s) => s.rules?.includes(name));
      expect(entries.length, name).toBeGreaterThan(0);
      expect(entries[0]?.kind, name).toBe(want.kind);
      if (want.subtype !== undefined) expect(entries[0]?.subtype, name).toBe(want.subtype);
    }
  });

  it.skipIf(!existsSync(FIXTURE))(`maps each line of ${FIXTURE} to exactly its table signal`, () => {
    const lines = readFileSync(FIXTURE, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const covered = new Set<string>();
    for (const [i, line] of lines.entries()) {
      const alert = alertFromJson(parse(line), { kind: 'test', component: 'test' });
      const want = COMPANION_RULES[alert.rule];
      expect(want, `line ${i + 1}: ${alert.rule} is not in COMPANION_RULES`).toBeDefined();
      if (!want) continue;
      covered.add(alert.rule);
      const got = mapping.mapAlert(alert);
      expect(got.length, `line ${i + 1} ${alert.rule}: ${got.map((s) => s.kind).join(',')}`).toBe(1);
      expect(got[0]?.kind).toBe(want.kind);
      if (want.subtype !== undefined) expect(got[0]?.subtype).toBe(want.subtype);
      expect(got[0]?.rule).toBe(alert.rule);
      // Process facts reach the signal (the lineage detectors need them).
      expect(got[0]?.proc.pid, `line ${i + 1}: proc.pid`).not.toBeNull();
    }
    expect([...covered].sort()).toEqual(Object.keys(COMPANION_RULES).sort());
  });
});

const REF = '../shared/falco-reference';
describe('default mapping names real official rules', () => {
  it.skipIf(!existsSync(REF))('every non-companion rule name in the default mapping exists in the official rules files (skipped: ../shared/falco-reference absent)', () => {
    const names = new Set<string>();
    for (const f of ['falco_rules.yaml', 'falco-incubating_rules.yaml', 'falco-sandbox_rules.yaml', 'falco_rules-3.2.0.yaml']) {
      for (const m of readFileSync(`${REF}/${f}`, 'utf8').matchAll(/^- rule: (.+)$/gm)) names.add((m[1] as string).trim().replace(/^"|"$/g, ''));
    }
    const ours = rules.signals.flatMap((s) => s.rules ?? []).filter((r) => !r.startsWith('Companion signal:'));
    expect(ours.length).toBeGreaterThan(15);
    expect(ours.filter((r) => !names.has(r))).toEqual([]);
  });
});
