/**
 * Renders the schema as the config reference (docs/config.md) and as the fully commented example
 * config (docker/config.example.yaml). Tests fail when either file is out of date:
 * regenerate with `npm run docs:config`.
 */
import { stringify as yamlStringify } from 'yaml';
import { envName, type ObjectSpec, type Spec } from './dsl.js';

function typeName(s: Spec): string {
  switch (s.kind) {
    case 'enum':
      return s.values.map((v) => `\`${v}\``).join(' \\| ');
    case 'list':
      return `list of ${s.items.kind === 'object' ? 'objects' : typeName(s.items)}`;
    case 'duration':
      return 'duration';
    case 'size':
      return 'size';
    default:
      return s.kind;
  }
}

function fmtDuration(ms: number): string {
  if (ms === 0) return '0';
  for (const [u, m] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % m === 0) return `${ms / m}${u}`;
  }
  return `${ms}ms`;
}

function fmtSize(b: number): string {
  for (const [u, m] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (b % m === 0 && b >= m) return `${b / m}${u}`;
  }
  return String(b);
}

function defaultValue(s: Exclude<Spec, ObjectSpec>): unknown {
  if (s.kind === 'duration') return fmtDuration(s.default);
  if (s.kind === 'size') return fmtSize(s.default);
  return s.default;
}

function inline(v: unknown): string {
  const text = yamlStringify(v, { collectionStyle: "flow" }).trim();
  return text === '' ? '""' : text;
}

export function renderMarkdown(schema: ObjectSpec): string {
  const out: string[] = [
    '# Configuration reference',
    '',
    'Generated from the schema (`src/config/sections/`): `npm run docs:config` rewrites this file and',
    '`docker/config.example.yaml`. Every key can also be set with an environment variable',
    '(`FALCO_COMPANION_<SECTION>_<KEY>`, lists comma-separated) and some with command-line flags;',
    'flags override the environment, which overrides the file. Durations: `250ms`, `10s`, `5m`, `1h`,',
    '`7d` or a number of milliseconds. Sizes: `512KiB`, `1MiB` or a number of bytes.',
    '',
  ];
  const walk = (spec: ObjectSpec, path: string[]): void => {
    const leaves: string[] = [];
    const subs: [string, ObjectSpec][] = [];
    for (const [k, s] of Object.entries(spec.fields)) {
      if (s.kind === 'object') subs.push([k, s]);
      else {
        const p = [...path, k];
        const env = s.env === false ? '' : `\`${envName(p)}\``;
        leaves.push(`| \`${p.join('.')}\` | ${typeName(s)} | \`${inline(defaultValue(s)).replace(/\|/g, '\\|')}\` | ${s.doc.replace(/\|/g, '\\|')} | ${env} |`);
      }
    }
    if (leaves.length > 0) {
      out.push(`## \`${path.join('.') || '(top level)'}\``, '', path.length > 0 ? spec.doc : '', '', '| key | type | default | meaning | environment |', '|---|---|---|---|---|', ...leaves, '');
    }
    for (const [k, s] of subs) walk(s, [...path, k]);
  };
  walk(schema, []);
  return out.join('\n').replace(/\n{3,}/g, '\n\n');
}

function wrapComment(text: string, indent: string): string[] {
  const words = text.split(/\s+/);
  const lines: string[] = [];
  let cur = '';
  for (const w of words) {
    if ((cur + ' ' + w).trim().length > 96 - indent.length) {
      lines.push(`${indent}# ${cur.trim()}`);
      cur = w;
    } else cur += ' ' + w;
  }
  if (cur.trim()) lines.push(`${indent}# ${cur.trim()}`);
  return lines;
}

export function renderExampleYaml(schema: ObjectSpec): string {
  const out: string[] = [
    '# falco-companion example configuration: every key with its default and what it does.',
    '# Generated from the schema by `npm run docs:config`; validate with',
    '#   falco-companion validate --config docker/config.example.yaml',
    '# Environment variables FALCO_COMPANION_<SECTION>_<KEY> and command-line flags override it.',
    '',
  ];
  const walk = (spec: ObjectSpec, indent: string): void => {
    for (const [k, s] of Object.entries(spec.fields)) {
      out.push(...wrapComment(s.doc, indent));
      if (s.kind === 'object') {
        out.push(`${indent}${k}:`);
        walk(s, indent + '  ');
      } else {
        const v = defaultValue(s);
        const text = yamlStringify({ [k]: v }, { collectionStyle: "block" }).trimEnd();
        out.push(...text.split('\n').map((l) => indent + l));
      }
      if (indent === '') out.push('');
    }
  };
  walk(schema, '');
  return out.join('\n').trimEnd() + '\n';
}
