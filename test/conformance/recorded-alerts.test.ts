/**
 * Conformance on what a real Falco 0.40.0 printed with this project's rules pack loaded
 * (../shared/falco-reference/recorded/, see its README): every alert parses losslessly through the
 * companion's alert parser and re-serialises byte for byte (a current Falco writes keys in
 * alphabetical order, the shape serializeAlert writes), nanosecond integers above 2^53 exact.
 * The rules-level replay of the same recordings is test/falco-rules/recorded-replay.test.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertFromJson, serializeAlert } from '../../src/alert.js';
import { LosslessNumber, isJsonObject, parse, type JsonValue } from '../../src/json/lossless.js';

const ROOT = resolve(import.meta.dirname, '../..');
const DIR = resolve(ROOT, '../shared/falco-reference/recorded');
const PRESENT = existsSync(join(DIR, 'README.md'));
const SKIP = `skipped: recorded Falco alerts not found at ${DIR} (../shared/falco-reference/recorded)`;

function files(): string[] {
  return PRESENT ? readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).sort() : [];
}

function lines(file: string): string[] {
  return readFileSync(join(DIR, file), 'utf8')
    .split('\n')
    .filter((l) => l !== '');
}

/** The alert counts the README's scenario table states, by file. */
function readmeCounts(): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of readFileSync(join(DIR, 'README.md'), 'utf8').matchAll(/^\| `([^`]+\.jsonl)` \|.*\| (\d+) \|$/gm)) out.set(m[1] as string, Number(m[2]));
  return out;
}

describe.skipIf(!PRESENT)(PRESENT ? 'recorded real Falco 0.40 alerts: lossless parse and byte-faithful re-serialisation' : SKIP, () => {
  it('every recording the README lists is here, with the number of alerts it states', () => {
    const counts = readmeCounts();
    expect([...counts.keys()].sort()).toEqual(files());
    for (const [file, n] of counts) expect(lines(file), file).toHaveLength(n);
  });

  for (const file of files()) {
    it(`${file}: alertFromJson keeps every value; serializeAlert gives back the same bytes`, () => {
      for (const [i, line] of lines(file).entries()) {
        const where = `${file}:${i + 1}`;
        const json = parse(line);
        const alert = alertFromJson(json, { kind: 'replay', component: 'test' });
        expect(serializeAlert(alert, { includeCompanion: false }), where).toBe(line);

        // Event time: the `time` key and output_fields' evt.time agree to the nanosecond, and the
        // integer (above 2^53) is kept as written, never rounded through a double.
        if (!isJsonObject(json) || !isJsonObject(json.output_fields)) throw new Error(`${where}: no output_fields`);
        const evtTime = json.output_fields['evt.time'] as JsonValue;
        expect(evtTime, where).toBeInstanceOf(LosslessNumber);
        const ns = (evtTime as LosslessNumber).toBigInt();
        if (ns === null) throw new Error(`${where}: evt.time is not an integer`);
        expect(ns > 2n ** 53n, where).toBe(true);
        expect(alert.timeNs, where).toBe(ns);
        expect(line).toContain(`"evt.time":${ns.toString()}`);

        // Typed values survive as Falco typed them: null for <NA>, booleans, negative and big integers.
        for (const [k, v] of Object.entries(json.output_fields)) {
          const got = alert.outputFields?.[k];
          if (v === null) expect(got, `${where} ${k}`).toBeNull();
          else if (v instanceof LosslessNumber) expect(got instanceof LosslessNumber ? got.raw : got, `${where} ${k}`).toBe(v.raw);
          else expect(got, `${where} ${k}`).toBe(v);
        }
        expect(alert.hostname).toBe('vm');
        expect(alert.source).toBe('syscall');
        expect(alert.tags).toEqual([...(alert.tags ?? [])].sort());
      }
    });
  }

  it('the parser really is exercised on the traps the recordings hold', () => {
    const all = files().flatMap((f) => lines(f));
    expect(all.length).toBeGreaterThanOrEqual(81);
    // negative integers, unsigned 32-bit values, booleans and nulls in output_fields
    expect(all.some((l) => l.includes('"proc.pid":-1'))).toBe(true);
    expect(all.some((l) => l.includes('"user.uid":4294967295'))).toBe(true);
    expect(all.some((l) => l.includes('"container.privileged":false'))).toBe(true);
    expect(all.some((l) => l.includes('"container.image.repository":null'))).toBe(true);
    // bracketed keys
    expect(all.some((l) => l.includes('"proc.aname[2]"'))).toBe(true);
    // a changed byte is noticed (the comparison can fail)
    const first = all[0] as string;
    const mangled = first.replace('"hostname":"vm"', '"hostname":"vm2"');
    expect(serializeAlert(alertFromJson(parse(mangled), { kind: 'replay', component: 'test' }), { includeCompanion: false })).not.toBe(first);
  });
});
