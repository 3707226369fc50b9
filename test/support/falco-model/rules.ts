/**
 * Loads Falco rules files the way the rule loader does and compiles each rule's condition into one
 * expanded expression: lists (with list references inside lists, `append`), macros (`append`,
 * `override`), rules (`append`, `override` of condition / exceptions / output / priority / tags /
 * enabled, `enabled: false`), structured `exceptions` (`and not ((f1 c1 v1 and ...) or ...)`), and
 * `%container.info` in outputs (what Falco 0.40 replaces it with: `container_id=%container.id
 * container_name=%container.name`). Files are loaded in order; macros and lists resolve after all
 * files are loaded (names defined later or appended later apply), as in Falco 0.35+.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { parseCondition, type FieldRef, type Node, type Operand } from '../../falco-rules/falco-condition.js';
import { priorityName } from './render.mjs';

export type Priority = ReturnType<typeof priorityName>;
export interface CompiledRule {
  readonly name: string;
  /** Load order (index in the rule set). */
  readonly index: number;
  readonly condition: Node;
  readonly output: string;
  readonly priority: Priority;
  readonly tags: readonly string[];
  readonly source: string;
  /** Which file defined the rule. */
  readonly file: string;
}

export interface RuleSet {
  readonly rules: readonly CompiledRule[];
  readonly lists: ReadonlyMap<string, readonly string[]>;
  readonly macros: ReadonlyMap<string, Node>;
}

interface RawRule {
  name: string;
  condition: string;
  output: string;
  priority: string;
  tags: string[];
  enabled: boolean;
  source: string;
  exceptions: RawException[];
  file: string;
}

interface RawException {
  name: string;
  fields: string[] | string;
  comps?: string[] | string;
  values: unknown[];
}

type Item = Record<string, unknown>;

function strings(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map((x) => String(x));
  return [String(v)];
}

function overrideOf(item: Item): Record<string, string> {
  const o = item['override'];
  return o !== null && typeof o === 'object' ? (o as Record<string, string>) : {};
}

/** A value of an exception or list item as Falco quotes it in a generated condition. */
function quote(v: string): string {
  if (/^[A-Za-z0-9_./:*-]+$/.test(v) && v !== '') return v;
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function exceptionCondition(ex: RawException): string | null {
  if (!Array.isArray(ex.values) || ex.values.length === 0) return null;
  if (!Array.isArray(ex.fields)) {
    const comp = typeof ex.comps === 'string' ? ex.comps : 'in';
    const vals = ex.values.map((v) => quote(String(v)));
    return comp === 'in' || comp === 'pmatch' || comp === 'intersects' ? `${ex.fields} ${comp} (${vals.join(', ')})` : vals.map((v) => `${ex.fields} ${comp} ${v}`).join(' or ');
  }
  const fields = ex.fields;
  const comps = Array.isArray(ex.comps) ? ex.comps : fields.map(() => '=');
  const alternatives = ex.values.map((tuple) => {
    const t = Array.isArray(tuple) ? tuple : [tuple];
    return `(${fields
      .map((f, i) => {
        const comp = comps[i] ?? '=';
        const v = t[i];
        if (Array.isArray(v)) return `${f} ${comp} (${v.map((x) => quote(String(x))).join(', ')})`;
        return `${f} ${comp} ${quote(String(v))}`;
      })
      .join(' and ')})`;
  });
  return alternatives.join(' or ');
}

/** Replace list references in list-operator operands by the list items (recursively expanded). */
function expandLists(node: Node, lists: ReadonlyMap<string, readonly string[]>): Node {
  switch (node.type) {
    case 'and':
    case 'or':
      return { type: node.type, children: node.children.map((c) => expandLists(c, lists)) };
    case 'not':
      return { type: 'not', child: expandLists(node.child, lists) };
    case 'macro':
      return node;
    case 'check': {
      if (!['in', 'intersects', 'pmatch'].includes(node.op)) return node;
      const operands: Operand[] = [];
      for (const o of node.operands) {
        if (o.kind === 'value' && !o.quoted && lists.has(o.text)) {
          for (const item of lists.get(o.text) ?? []) operands.push({ kind: 'value', text: item, quoted: true });
        } else operands.push(o);
      }
      return { ...node, operands };
    }
  }
}

/** Replace every macro reference by its (recursively inlined) definition; unknown macros are errors. */
function inlineMacros(node: Node, macros: ReadonlyMap<string, Node>, depth = 0): Node {
  if (depth > 64) throw new Error('macro nesting too deep (a cycle?)');
  switch (node.type) {
    case 'and':
    case 'or':
      return { type: node.type, children: node.children.map((c) => inlineMacros(c, macros, depth + 1)) };
    case 'not':
      return { type: 'not', child: inlineMacros(node.child, macros, depth + 1) };
    case 'macro': {
      const def = macros.get(node.name);
      if (def === undefined) throw new Error(`undefined macro ${node.name}`);
      return inlineMacros(def, macros, depth + 1);
    }
    case 'check':
      return node;
  }
}

function resolveListItems(name: string, raw: ReadonlyMap<string, string[]>, seen: Set<string> = new Set()): string[] {
  if (seen.has(name)) throw new Error(`list ${name} references itself`);
  seen.add(name);
  const out: string[] = [];
  for (const item of raw.get(name) ?? []) {
    if (raw.has(item) && item !== name) out.push(...resolveListItems(item, raw, new Set(seen)));
    else out.push(item);
  }
  return out;
}

export interface LoadOptions {
  /** Text of `%container.info` (Falco 0.40 default when no -pc/-pk option is given). */
  readonly containerInfo?: string;
}

export function loadRules(files: readonly string[], opts: LoadOptions = {}): RuleSet {
  const containerInfo = opts.containerInfo ?? 'container_id=%container.id container_name=%container.name';
  const rawLists = new Map<string, string[]>();
  const rawMacros = new Map<string, string>();
  const rawRules: RawRule[] = [];
  const byName = new Map<string, RawRule>();
  for (const file of files) {
    const doc: unknown = parseYaml(readFileSync(file, 'utf8'));
    if (!Array.isArray(doc)) throw new Error(`${file}: top level is not a list`);
    for (const item of doc as Item[]) {
      if (item === null || typeof item !== 'object') continue;
      const ov = overrideOf(item);
      if (typeof item['list'] === 'string') {
        const name = item['list'];
        const items = strings(item['items']);
        if (item['append'] === true || ov['items'] === 'append') rawLists.set(name, [...(rawLists.get(name) ?? []), ...items]);
        else rawLists.set(name, items);
      } else if (typeof item['macro'] === 'string') {
        const name = item['macro'];
        const cond = String(item['condition'] ?? '');
        if (item['append'] === true || ov['condition'] === 'append') rawMacros.set(name, `${rawMacros.get(name) ?? ''} ${cond}`);
        else rawMacros.set(name, cond);
      } else if (typeof item['rule'] === 'string') {
        const name = item['rule'];
        const existing = byName.get(name);
        const isAppend = item['append'] === true;
        if (existing && (isAppend || Object.keys(ov).length > 0)) {
          const mode = (key: string): string | undefined => (isAppend && item[key] !== undefined ? 'append' : ov[key]);
          if (item['condition'] !== undefined) {
            const m = mode('condition');
            existing.condition = m === 'replace' ? String(item['condition']) : `${existing.condition} ${String(item['condition'])}`;
          }
          if (item['output'] !== undefined) existing.output = mode('output') === 'append' ? `${existing.output} ${String(item['output'])}` : String(item['output']);
          if (item['priority'] !== undefined) existing.priority = String(item['priority']);
          if (item['tags'] !== undefined) existing.tags = mode('tags') === 'append' ? [...existing.tags, ...strings(item['tags'])] : strings(item['tags']);
          if (item['enabled'] !== undefined) existing.enabled = item['enabled'] !== false;
          if (Array.isArray(item['exceptions'])) {
            for (const ex of item['exceptions'] as RawException[]) {
              const prev = existing.exceptions.find((e) => e.name === ex.name);
              if (prev && mode('exceptions') !== 'replace') prev.values = [...prev.values, ...(ex.values ?? [])];
              else if (prev) Object.assign(prev, ex);
              else existing.exceptions.push({ ...ex, values: ex.values ?? [] });
            }
          }
          continue;
        }
        if (existing && item['condition'] === undefined && item['enabled'] !== undefined) {
          existing.enabled = item['enabled'] !== false;
          continue;
        }
        const rule: RawRule = {
          name,
          condition: String(item['condition'] ?? ''),
          output: String(item['output'] ?? ''),
          priority: String(item['priority'] ?? 'DEBUG'),
          tags: strings(item['tags']),
          enabled: item['enabled'] !== false,
          source: typeof item['source'] === 'string' ? item['source'] : 'syscall',
          exceptions: Array.isArray(item['exceptions']) ? (item['exceptions'] as RawException[]).map((e) => ({ ...e, values: e.values ?? [] })) : [],
          file,
        };
        if (existing) rawRules.splice(rawRules.indexOf(existing), 1, rule);
        else rawRules.push(rule);
        byName.set(name, rule);
      }
    }
  }
  const lists = new Map<string, readonly string[]>();
  for (const name of rawLists.keys()) lists.set(name, resolveListItems(name, rawLists));
  const macros = new Map<string, Node>();
  for (const [name, cond] of rawMacros) macros.set(name, expandLists(parseCondition(cond), lists));
  const rules: CompiledRule[] = [];
  for (const r of rawRules) {
    if (!r.enabled || r.source !== 'syscall') continue;
    const exc = r.exceptions.map(exceptionCondition).filter((c): c is string => c !== null);
    const text = exc.length === 0 ? r.condition : `(${r.condition}) and not (${exc.join(' or ')})`;
    const condition = expandLists(inlineMacros(parseCondition(text), macros), lists);
    rules.push({
      name: r.name,
      index: rules.length,
      condition,
      output: r.output.replaceAll('%container.info', containerInfo).trim(),
      priority: priorityName(r.priority),
      tags: [...r.tags].sort(),
      source: r.source,
      file: r.file,
    });
  }
  return { rules, lists, macros };
}

/** The `%field` references of an output format, in order (`%proc.aname[2]`, `%evt.arg.domain`). */
export function outputRefs(output: string): FieldRef[] {
  const out: FieldRef[] = [];
  const re = /%([A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_])(\[[^\]]*\])?/g;
  for (const m of output.matchAll(re)) {
    const name = m[1] as string;
    const arg = m[2] === undefined ? null : m[2].slice(1, -1);
    out.push({ raw: arg === null ? name : `${name}[${arg}]`, name, arg, transformers: [] });
  }
  return out;
}
