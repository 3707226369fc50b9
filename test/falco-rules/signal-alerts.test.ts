/**
 * test/fixtures/signal-alerts.jsonl: one alert per companion rule, exactly as Falco emits it with
 * json_output, consistent with the rules file (regenerate with
 * `node test/falco-rules/gen-signal-alerts.mjs` after changing a rule's output).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { alertFromJson } from '../../src/alert.js';
import { COMPANION_RULES, ESCAPE_SUBTYPES } from '../../src/detect/types.js';
import { LosslessNumber, parse, isJsonObject, type JsonObject, type JsonValue } from '../../src/json/lossless.js';
import { outputFields } from './falco-condition.js';
import { FIXTURE, HAVE_REF, MAIN_RULES, NO_REF_MESSAGE, loadFieldList, loadYamlItems, strings } from './support.js';

const NUMERIC = new Set(['INT16', 'INT32', 'INT64', 'UINT32', 'UINT64', 'PORT', 'ABSTIME', 'RELTIME', 'DOUBLE']);
const PRIORITY: Readonly<Record<string, string>> = { INFO: 'Informational', NOTICE: 'Notice', WARNING: 'Warning' };

const rules = new Map(
  loadYamlItems(MAIN_RULES)
    .filter((i) => typeof i.rule === 'string')
    .map((i) => [String(i.rule), i] as const),
);
const lines = readFileSync(FIXTURE, 'utf8').split('\n').filter((l) => l.trim() !== '');
const alerts = lines.map((l) => parse(l)).filter(isJsonObject);

function obj(v: JsonValue | undefined): JsonObject {
  if (!isJsonObject(v)) throw new Error('not an object');
  return v;
}

function textOf(v: JsonValue | undefined): string {
  if (v === null || v === undefined) return '<NA>';
  return String(v);
}

describe('signal alert fixture', () => {
  it('has exactly one alert per companion rule', () => {
    expect(alerts).toHaveLength(lines.length);
    const names = alerts.map((a) => String(a.rule));
    expect(new Set(names).size).toBe(names.length);
    expect([...names].sort()).toEqual(Object.keys(COMPANION_RULES).sort());
  });

  it('every alert is a valid Falco alert for the companion (alertFromJson)', () => {
    for (const a of alerts) {
      const alert = alertFromJson(a, { kind: 'test', component: 'test' });
      expect(alert.source).toBe('syscall');
      expect(alert.hostname).toBe('node-1');
      const evtTime = obj(a.output_fields)['evt.time'];
      // A ns integer above 2^53 that a double cannot hold: only the lossless parser keeps it exact.
      expect(evtTime).toBeInstanceOf(LosslessNumber);
      const ns = evtTime instanceof LosslessNumber ? evtTime.toBigInt() : null;
      expect(ns !== null && ns > 2n ** 53n).toBe(true);
      expect(alert.timeNs).toBe(ns);
    }
  });

  it('keys are alphabetical (top level and output_fields), tags sorted and equal to the rule tags', () => {
    for (const a of alerts) {
      const keys = Object.keys(a);
      expect(keys).toEqual(['hostname', 'output', 'output_fields', 'priority', 'rule', 'source', 'tags', 'time']);
      const of = Object.keys(obj(a.output_fields));
      expect(of).toEqual([...of].sort());
      const tags = strings(a.tags);
      expect(tags).toEqual([...tags].sort());
      expect(tags).toEqual(strings(rules.get(String(a.rule))?.tags).sort());
    }
  });

  it('output = "<clock>: <Priority> <message>" with the rule output filled from output_fields', () => {
    for (const a of alerts) {
      const rule = rules.get(String(a.rule));
      expect(rule, String(a.rule)).toBeDefined();
      const priority = PRIORITY[String(rule?.priority)];
      expect(a.priority).toBe(priority);
      const fields = obj(a.output_fields);
      const time = String(a.time);
      expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      const clock = time.slice(11, 29);
      const message = String(rule?.output).replace(/%([A-Za-z_][A-Za-z0-9_.]*)(\[[^\]]*\])?/g, (_m, name: string, arg: string | undefined) =>
        textOf(fields[`${name}${arg ?? ''}`]),
      );
      expect(a.output).toBe(`${clock}: ${priority} ${message}`);
      // output_fields = the fields the output names, plus evt.time
      const expected = new Set([...outputFields(String(rule?.output)).map((f) => f.raw), 'evt.time']);
      expect(new Set(Object.keys(fields))).toEqual(expected);
    }
  });

  it.skipIf(!HAVE_REF)(HAVE_REF ? 'output_fields are typed as Falco types them' : NO_REF_MESSAGE, () => {
    const types = loadFieldList('0.44.0');
    for (const a of alerts) {
      for (const [k, v] of Object.entries(obj(a.output_fields))) {
        if (v === null) continue;
        if (k === 'evt.time') continue; // checked above: a ns integer
        if (k.startsWith('evt.arg.')) {
          expect(typeof v, `${String(a.rule)} ${k}`).toBe('string');
          continue;
        }
        const t = types.get(k.replace(/\[.*\]$/, ''))?.type;
        expect(t, k).toBeDefined();
        if (t === 'BOOL') expect(typeof v, k).toBe('boolean');
        else if (NUMERIC.has(String(t))) expect(typeof v === 'number' || v instanceof LosslessNumber, k).toBe(true);
        else expect(typeof v, k).toBe('string');
      }
    }
  });

  it('carries what the detectors need: lineage, container context, and per-signal fields', () => {
    const byRule = new Map(alerts.map((a) => [String(a.rule), obj(a.output_fields)] as const));
    for (const [name, f] of byRule) {
      for (const k of ['proc.pid', 'proc.ppid', 'proc.sid', 'proc.exepath', 'proc.name', 'proc.cmdline', 'container.id', 'evt.type']) {
        expect(k in f, `${name}: ${k}`).toBe(true);
      }
      const entry = COMPANION_RULES[name];
      if (entry?.kind === 'escape') expect(ESCAPE_SUBTYPES as readonly string[]).toContain(entry.subtype);
    }
    const get = (rule: string, key: string): JsonValue | undefined => byRule.get(rule)?.[key];
    expect(get('Companion signal: packet or raw socket created', 'evt.arg.domain')).toBe('AF_PACKET');
    expect(get('Companion signal: socket filter attached', 'evt.arg.optname')).toBe('SO_ATTACH_FILTER');
    expect(String(get('Companion signal: firewall tool run', 'proc.cmdline'))).toContain('REDIRECT');
    expect(get('Companion signal: outbound connection from container', 'fd.sip')).toBe('198.51.100.23');
    expect(get('Companion signal: inbound connection accepted in container', 'fd.cip')).toBe('203.0.113.7');
    expect(get('Companion signal: listening socket in container', 'fd.sip')).toBe('0.0.0.0');
    expect(get('Companion signal: shell with socket stdio', 'proc.stdin.type')).toBe('ipv4');
    expect(get('Companion signal: process renamed with prctl', 'evt.arg.arg2_str')).toBe('dbus-daemon');
    expect(get('Companion signal: container runtime socket connect', 'fd.name')).toBe('/var/run/docker.sock');
    expect(get('Companion signal: privileged or host-namespace container started', 'container.privileged')).toBe(true);
    expect(get('Companion signal: kernel module loaded', 'container.id')).toBe('host');
  });
});
