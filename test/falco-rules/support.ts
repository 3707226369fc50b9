/** Shared loaders for the falco-rules tests: our rules files, the reference data, the field lists. */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RULES_DIR = join(ROOT, 'falco-rules');
export const MAIN_RULES = join(RULES_DIR, 'falco-companion_rules.yaml');
export const OVERRIDE_042 = join(RULES_DIR, 'falco-companion_rules_0.42-override.yaml');
export const FIXTURE = join(ROOT, 'test', 'fixtures', 'signal-alerts.jsonl');
export const REF_DIR = join(ROOT, '..', 'shared', 'falco-reference');
export const HAVE_REF = existsSync(join(REF_DIR, 'falco-rules.schema.json'));
export const NO_REF_MESSAGE = `skipped: Falco reference data not found at ${REF_DIR} (../shared/falco-reference)`;

export type RuleItem = Record<string, unknown>;

export function loadYamlItems(path: string): RuleItem[] {
  const doc: unknown = parseYaml(readFileSync(path, 'utf8'));
  if (!Array.isArray(doc)) throw new Error(`${path}: top level is not a list`);
  return doc as RuleItem[];
}

/** Every YAML file under falco-rules/. */
export function ourRulesFiles(): string[] {
  return readdirSync(RULES_DIR)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .map((f) => join(RULES_DIR, f))
    .sort();
}

export interface FieldInfo {
  readonly type: string;
}

/** name → type from a supported-fields list (`name<TAB>type<TAB>class<TAB>description`). */
export function loadFieldList(version: '0.40.0' | '0.44.0'): Map<string, FieldInfo> {
  const text = readFileSync(join(REF_DIR, `supported-fields-falco-${version}.txt`), 'utf8');
  const map = new Map<string, FieldInfo>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const [name, type] = line.split('\t');
    if (name && type) map.set(name, { type });
  }
  return map;
}

export function strings(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map(String);
  return [String(v)];
}
