/**
 * Evaluates each companion rule's condition (macros expanded) against the values of its fixture
 * alert: the fixture alert must satisfy its rule and no other syscall rule in a way that would
 * change its meaning, the enter event (evt.dir '>') must never match, and the tuning knobs must
 * suppress. A small model of Falco's semantics: a check on a missing field is false.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isJsonObject, parse, type JsonValue } from '../../src/json/lossless.js';
import { expandMacros, parseCondition, type Node } from './falco-condition.js';
import { FIXTURE, MAIN_RULES, loadYamlItems } from './support.js';

type Value = string | number | boolean | null;
type Facts = Readonly<Record<string, Value>>;

const items = loadYamlItems(MAIN_RULES);
const macros = new Map<string, Node>();
const lists = new Map<string, string[]>();
for (const it of items) {
  if (typeof it.macro === 'string') macros.set(it.macro, parseCondition(String(it.condition)));
  if (typeof it.list === 'string') lists.set(it.list, (it.items as unknown[]).map(String));
}
const rules = new Map(items.filter((i) => typeof i.rule === 'string').map((i) => [String(i.rule), expandMacros(parseCondition(String(i.condition)), macros)] as const));

function ipv4InCidr(ip: string, cidr: string): boolean {
  const [net, bits] = cidr.split('/');
  const toInt = (s: string): number | null => {
    const p = s.split('.').map(Number);
    return p.length === 4 && p.every((x) => Number.isInteger(x) && x >= 0 && x < 256) ? ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0 : null;
  };
  const a = toInt(ip);
  const b = toInt(net ?? '');
  if (a === null || b === null) return false;
  const n = Number(bits ?? 32);
  const mask = n === 0 ? 0 : (~0 << (32 - n)) >>> 0;
  return (a & mask) === (b & mask);
}

function lookup(facts: Facts, name: string): Value | undefined {
  if (name in facts) return facts[name];
  if (name.startsWith('container.mount.dest[')) return '<NA>';
  return undefined;
}

function listValues(operands: readonly { kind: string; text?: string }[]): string[] {
  return operands.flatMap((o) => {
    const t = o.text ?? '';
    return lists.get(t) ?? [t];
  });
}

function evaluate(n: Node, f: Facts): boolean {
  switch (n.type) {
    case 'and':
      return n.children.every((c) => evaluate(c, f));
    case 'or':
      return n.children.some((c) => evaluate(c, f));
    case 'not':
      return !evaluate(n.child, f);
    case 'macro':
      return true; // expanded: the definition is and-ed next to the reference
    case 'check': {
      const v = lookup(f, n.field.raw);
      if (n.op === 'exists') return v !== undefined && v !== null;
      if (v === undefined || v === null) return false;
      const s = String(v);
      const operand = n.operands[0];
      const text = operand && operand.kind === 'value' ? operand.text : '';
      switch (n.op) {
        case '=':
        case '==':
          return s === text;
        case '!=':
          return s !== text;
        case '<':
        case '<=':
        case '>':
        case '>=': {
          const a = Number(v);
          const b = Number(text);
          return n.op === '<' ? a < b : n.op === '<=' ? a <= b : n.op === '>' ? a > b : a >= b;
        }
        case 'contains':
          return s.includes(text);
        case 'startswith':
          return s.startsWith(text);
        case 'endswith':
          return s.endsWith(text);
        case 'in': {
          const vals = listValues(n.operands as unknown as { kind: string; text?: string }[]);
          if (n.field.name === 'fd.snet') return vals.some((c) => ipv4InCidr(s, c));
          return vals.includes(s);
        }
        case 'pmatch':
          return listValues(n.operands as unknown as { kind: string; text?: string }[]).some((p) => s === p || s.startsWith(`${p}/`));
        default:
          throw new Error(`operator ${n.op} not modelled`);
      }
    }
  }
}

/** The fixture alert's fields plus what Falco knows about the event but the output does not print. */
function factsOf(rule: string, fields: Readonly<Record<string, JsonValue>>): Record<string, Value> {
  const f: Record<string, Value> = {};
  for (const [k, v] of Object.entries(fields)) f[k] = v === null || typeof v !== 'object' ? (v as Value) : String(v);
  const type = String(f['evt.type']);
  f['evt.dir'] = '<';
  f['evt.num'] = 42;
  f['evt.rawres'] = f['evt.res'] === 'EINPROGRESS' ? -115 : 0;
  f['fd.num'] = 3;
  f['thread.ismain'] = true;
  f['proc.vpid'] = rule.includes('container started') ? 1 : 77;
  if (!('fd.typechar' in f) || f['fd.typechar'] === null) {
    const t = f['fd.type'];
    f['fd.typechar'] = t === 'ipv4' ? '4' : t === 'ipv6' ? '6' : t === 'unix' ? 'u' : typeof f['fd.name'] === 'string' && String(f['fd.name']).startsWith('/') ? 'f' : null;
  }
  if (typeof f['fd.sip'] === 'string') f['fd.snet'] = f['fd.sip'];
  if (typeof f['fd.name'] === 'string' && f['fd.typechar'] === 'f') {
    const name = String(f['fd.name']);
    f['fd.directory'] = name.slice(0, name.lastIndexOf('/'));
    f['fd.filename'] = name.slice(name.lastIndexOf('/') + 1);
  }
  if (['open', 'openat', 'openat2'].includes(type)) {
    const create = rule.includes('pid or lock file');
    f['evt.is_open_write'] = !rule.includes('token read');
    f['evt.is_open_read'] = rule.includes('token read');
    f['evt.is_open_create'] = create;
  }
  return f;
}

const alerts = readFileSync(FIXTURE, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => parse(l))
  .filter(isJsonObject);
const facts = new Map(
  alerts.map((a) => {
    const rule = String(a.rule);
    return [rule, factsOf(rule, a.output_fields as Record<string, JsonValue>)] as const;
  }),
);

describe('companion rules evaluated against their fixture alerts', () => {
  it('each fixture alert satisfies its own rule', () => {
    expect(facts.size).toBe(rules.size);
    for (const [rule, cond] of rules) {
      const f = facts.get(rule);
      expect(f, rule).toBeDefined();
      expect(evaluate(cond, f as Facts), rule).toBe(true);
    }
  });

  it('no rule matches the enter event (evt.dir ">") of a syscall', () => {
    for (const [rule, cond] of rules) {
      const f: Facts = { ...(facts.get(rule) as Facts), 'evt.dir': '>' };
      const isLifecycle = f['evt.type'] === 'container';
      if (!isLifecycle) expect(evaluate(cond, f), rule).toBe(false);
    }
  });

  it('the container lifecycle event matches the container-start rule without evt.dir', () => {
    const rule = 'Companion signal: privileged or host-namespace container started';
    const f = { ...(facts.get(rule) as Facts), 'evt.type': 'container', 'evt.dir': '>' };
    expect(evaluate(rules.get(rule) as Node, f)).toBe(true);
    expect(evaluate(rules.get(rule) as Node, { ...f, 'container.privileged': false, 'container.host_pid': false, 'container.host_network': false })).toBe(false);
    expect(evaluate(rules.get(rule) as Node, { ...f, 'container.privileged': false, 'container.host_pid': false, 'container.host_network': false, 'container.mount.dest[/var/run/docker.sock]': '/var/run/docker.sock' })).toBe(true);
    expect(evaluate(rules.get(rule) as Node, { ...f, 'container.image.repository': 'incomplete' })).toBe(false);
  });

  const variants: [string, Facts, boolean][] = [
    ['Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET', 'evt.arg.type': '526339' }, true],
    ['Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET6', 'evt.arg.type': '2051' }, true],
    ['Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET', 'evt.arg.type': '524291' }, true],
    ['Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET', 'evt.arg.type': '1' }, false],
    ['Companion signal: packet or raw socket created', { 'proc.name': 'dhclient' }, false],
    ['Companion signal: socket filter attached', { 'evt.arg.optname': 'SO_ATTACH_BPF' }, true],
    ['Companion signal: socket filter attached', { 'evt.arg.optname': 'SO_REUSEADDR' }, false],
    ['Companion signal: BPF program loaded in container', { 'evt.arg.cmd': '5' }, true],
    ['Companion signal: BPF program loaded in container', { 'evt.arg.cmd': 'BPF_MAP_CREATE' }, false],
    ['Companion signal: BPF program loaded in container', { 'container.id': 'host' }, false],
    ['Companion signal: firewall tool run', { 'proc.name': 'nft' }, true],
    ['Companion signal: firewall tool run', { 'proc.pname': 'kube-proxy' }, false],
    ['Companion signal: firewall tool run', { 'proc.aname[2]': 'calico-node' }, false],
    ['Companion signal: outbound connection from container', { 'fd.sip': '10.0.0.5', 'fd.snet': '10.0.0.5' }, true],
    ['Companion signal: outbound connection from container', { 'fd.sip': '127.0.0.53', 'fd.snet': '127.0.0.53' }, false],
    ['Companion signal: outbound connection from container', { 'evt.rawres': -111, 'evt.res': 'ECONNREFUSED' }, false],
    ['Companion signal: listening socket in container', { 'container.id': 'host' }, false],
    ['Companion signal: shell with socket stdio', { 'proc.stdin.type': 'pipe', 'proc.stdout.type': 'pipe' }, false],
    ['Companion signal: process renamed with prctl', { 'thread.ismain': false }, false],
    ['Companion signal: execution from tmpfs', { 'proc.exepath': '/usr/bin/dbus-daemon' }, false],
    ['Companion signal: execution from tmpfs', { 'proc.exepath': '/memfd:x (deleted)', 'proc.is_exe_from_memfd': true }, true],
    ['Companion signal: execution from tmpfs', { 'proc.exepath': '/run/current-system/sw/bin/ls' }, false],
    ['Companion signal: pid or lock file under /var/run', { 'proc.name': 'sshd' }, false],
    ['Companion signal: pid or lock file under /var/run', { 'fd.directory': '/var/run/sub' }, false],
    ['Companion signal: namespace change in container', { 'proc.name': 'runc:[2:INIT]' }, false],
    ['Companion signal: /proc/sys write from container', { 'fd.name': '/proc/sys/kernel/core_pattern' }, false],
    ['Companion signal: core_pattern write', { 'container.id': 'host', 'proc.name': 'systemd-sysctl' }, false],
    ['Companion signal: container runtime socket connect', { 'fd.name': '/run/containerd/containerd.sock' }, true],
    ['Companion signal: container runtime socket connect', { 'proc.name': 'kubelet' }, false],
    ['Companion signal: service account token read', { 'fd.name': '/etc/passwd', 'fd.filename': 'passwd' }, false],
  ];
  it.each(variants)('%s with %j → %s', (rule, change, expected) => {
    const f = { ...(facts.get(rule) as Facts), ...change };
    expect(evaluate(rules.get(rule) as Node, f)).toBe(expected);
  });

  it('user_known_* macros suppress when overridden to true', () => {
    for (const [rule] of rules) {
      const cond = parseCondition(String(items.find((i) => i.rule === rule)?.condition));
      const overridden = new Map(macros);
      for (const name of macros.keys()) if (name.startsWith('user_known_')) overridden.set(name, parseCondition('evt.num>=0'));
      expect(evaluate(expandMacros(cond, overridden), facts.get(rule) as Facts), rule).toBe(false);
    }
  });
});
