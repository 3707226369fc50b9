/**
 * Evaluates each companion rule's condition (macros and lists expanded, exceptions applied, by the
 * Falco model's rule loader) against the values of its fixture alert, with the model's libsinsp
 * semantics (test/support/falco-model/evaluate.ts): a check on a field without a value is false,
 * so `not` of it is true, as on a real Falco. The fixture alert must satisfy its rule, the enter
 * event (evt.dir '>') must never match, and the tuning knobs must suppress.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isJsonObject, parse, type JsonValue } from '../../src/json/lossless.js';
import { evaluate, type FieldValue, type Node } from '../support/falco-model/evaluate.js';
import { loadRules } from '../support/falco-model/rules.js';
import { FIXTURE, MAIN_RULES, loadYamlItems } from './support.js';

type Value = string | number | boolean | null;
type Facts = Readonly<Record<string, Value>>;

const items = loadYamlItems(MAIN_RULES);
const rules = new Map(loadRules([MAIN_RULES]).rules.map((r) => [r.name, r.condition] as const));

/** The rules again, with every `user_known_*` macro overridden to true (as a user tuning file would). */
const tuneDir = mkdtempSync(join(tmpdir(), 'rule-eval-'));
const tuning = join(tuneDir, 'tuning.yaml');
writeFileSync(
  tuning,
  items
    .filter((i) => typeof i.macro === 'string' && String(i.macro).startsWith('user_known_'))
    .map((i) => `- macro: ${String(i.macro)}\n  condition: (evt.num>=0)\n`)
    .join(''),
);
const tuned = new Map(loadRules([MAIN_RULES, tuning]).rules.map((r) => [r.name, r.condition] as const));
afterAll(() => rmSync(tuneDir, { recursive: true, force: true }));

/** Falco semantics: a field the facts do not hold, or hold as null, has no value. */
function evaluateOn(cond: Node, f: Facts): boolean {
  return evaluate(cond, (ref): FieldValue => {
    const v = f[ref.raw];
    return v === null || v === undefined ? undefined : v;
  });
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
      expect(evaluateOn(cond, f as Facts), rule).toBe(true);
    }
  });

  it('no rule matches the enter event (evt.dir ">") of a syscall', () => {
    for (const [rule, cond] of rules) {
      const f: Facts = { ...(facts.get(rule) as Facts), 'evt.dir': '>' };
      const isLifecycle = f['evt.type'] === 'container';
      if (!isLifecycle) expect(evaluateOn(cond, f), rule).toBe(false);
    }
  });

  const startRule = 'Companion signal: privileged or host-namespace container started';
  const lifecycle = (): Facts => ({ ...(facts.get(startRule) as Facts), 'evt.type': 'container', 'evt.dir': '>' });
  const plain: Facts = { 'container.privileged': false, 'container.host_pid': false, 'container.host_network': false, 'container.host_ipc': false };

  it('the container lifecycle event matches the container-start rule without evt.dir', () => {
    const f = lifecycle();
    expect(evaluateOn(rules.get(startRule) as Node, f)).toBe(true);
    expect(evaluateOn(rules.get(startRule) as Node, { ...f, ...plain, 'container.mount.dest[/var/run/docker.sock]': '/var/run/docker.sock' })).toBe(true);
    expect(evaluateOn(rules.get(startRule) as Node, { ...f, 'container.image.repository': 'incomplete' })).toBe(false);
  });

  // At d3b06a5 companion_sensitive_mount negates `container.mount.dest[...] in ("<NA>","N/A")`;
  // with no matching mount the field has no value, the check is false and its negation true, so
  // every container start matched on the real Falco 0.40 (recorded/plain-start.jsonl). Fixed on
  // branch e-rules (positive `!=` checks): flip this to `it` when that lands.
  it('a plain container (not privileged, no host namespace, no sensitive mount) does not match the container-start rule', () => {
    expect(evaluateOn(rules.get(startRule) as Node, { ...lifecycle(), ...plain })).toBe(false);
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
    expect(evaluateOn(rules.get(rule) as Node, f)).toBe(expected);
  });

  it('user_known_* macros suppress when overridden to true', () => {
    for (const [rule] of rules) {
      expect(evaluateOn(rules.get(rule) as Node, facts.get(rule) as Facts), rule).toBe(true);
      expect(evaluateOn(tuned.get(rule) as Node, facts.get(rule) as Facts), rule).toBe(false);
    }
  });
});
