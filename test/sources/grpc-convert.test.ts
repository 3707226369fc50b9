import fc from 'fast-check';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InvalidAlertError, PRIORITIES, alertFromJson, formatTimeNs, type Alert, type Origin } from '../../src/alert.js';
import { alertJsonToResponse } from '../../src/emulator/falco-grpc.js';
import { LosslessNumber, isJsonObject, parse, stringify, type JsonObject, type JsonValue } from '../../src/json/lossless.js';
import { loadFalcoProtos } from '../../src/proto-path.js';
import { jsonAlertInOutput, numberFromText, responseToAlert, timestampNs, typeFieldValue } from '../../src/sources/grpc-convert.js';

const origin: Origin = { kind: 'grpc', component: 'source/grpc' };
const protos = loadFalcoProtos();
const m = protos.sub;
/** Through the real protobuf encoder and decoder, as on the wire. */
const wire = (resp: Record<string, unknown>): unknown => m.responseDeserialize(m.responseSerialize(resp));

/** The parts of an Alert that must match across paths (not who received it or when). */
function comparable(a: Alert): Record<string, unknown> {
  return {
    time: a.time,
    timeNs: a.timeNs,
    rule: a.rule,
    priority: a.priority,
    source: a.source,
    hostname: a.hostname,
    output: a.output,
    tags: a.tags,
    outputFields: a.outputFields === null ? null : JSON.parse(stringify(a.outputFields as JsonObject)) as unknown,
    outputFieldsExact: a.outputFields === null ? null : stringify(sortKeys(a.outputFields as JsonObject)),
    extra: stringify(a.extra),
  };
}
function sortKeys(o: JsonObject): JsonObject {
  const out: Record<string, JsonValue> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k] as JsonValue;
  return out;
}

const CURRENT =
  '{"hostname":"node-a","output":"13:44:05.478445995: Critical A shell was spawned (user=root)","output_fields":{"container.id":"ee97d9c4186f","container.privileged":false,"evt.time":1685022245478445995,"fd.num":-1,"proc.pid":23341,"k8s.ns.name":null,"proc.aname[2]":"runc","proc.apid[2]":17,"proc.cmdline":"sh -c \\"echo ü\\"","user.loginuid":-1},"priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","shell"],"time":"2023-05-25T13:44:05.478445995Z","message":"A shell was spawned (user=root)"}';

describe('field typing', () => {
  it('types known numeric and boolean fields, keeps the rest as text', () => {
    expect(typeFieldValue('proc.pid', '23341', null)).toBe(23341);
    expect(typeFieldValue('user.loginuid', '-1', null)).toBe(-1);
    expect(typeFieldValue('proc.apid[3]', '17', null)).toBe(17);
    expect(typeFieldValue('evt.rawtime', '1685022245478445995', null)).toEqual(new LosslessNumber('1685022245478445995'));
    expect(typeFieldValue('proc.fdusage', '0.25', null)).toBe(0.25);
    expect(typeFieldValue('container.privileged', 'true', null)).toBe(true);
    expect(typeFieldValue('container.privileged', 'false', null)).toBe(false);
    expect(typeFieldValue('container.privileged', 'yes', null)).toBe('yes');
    expect(typeFieldValue('proc.pid', 'abc', null)).toBe('abc');
    expect(typeFieldValue('proc.pid', '007', null)).toBe('007');
    expect(typeFieldValue('proc.name', '23341', null)).toBe('23341');
    expect(typeFieldValue('k8s.ns.name', '<NA>', null)).toBeNull();
    expect(typeFieldValue('proc.pid', '<NA>', null)).toBeNull();
  });

  it('turns evt.time time-of-day text into the exact ns of the Timestamp', () => {
    const ns = 1685022245478445995n;
    expect(typeFieldValue('evt.time', '13:44:05.478445995', ns)).toEqual(new LosslessNumber(ns.toString()));
    // Another time zone on the Falco host: seconds and ns still agree.
    expect(typeFieldValue('evt.time', '15:44:05.478445995', ns)).toEqual(new LosslessNumber(ns.toString()));
    // Disagreeing text is kept as it is.
    expect(typeFieldValue('evt.time', '13:44:06.478445995', ns)).toBe('13:44:06.478445995');
    expect(typeFieldValue('evt.time', '13:44:05.478445995', null)).toBe('13:44:05.478445995');
    expect(typeFieldValue('evt.time.iso8601', '2023-05-25T13:44:05.478445995Z', null)).toEqual(new LosslessNumber(ns.toString()));
  });

  it('numberFromText keeps digits exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }), (b) => {
        const v = numberFromText(b.toString());
        const text = v instanceof LosslessNumber ? v.raw : String(v);
        expect(text).toBe(b.toString());
      }),
    );
  });

  it('timestampNs validates seconds and nanos', () => {
    expect(timestampNs({ seconds: '1685022245', nanos: 478445995 })).toBe(1685022245478445995n);
    expect(timestampNs({ seconds: 5, nanos: 0 })).toBe(5_000_000_000n);
    expect(timestampNs({ seconds: '1', nanos: 1_000_000_000 })).toBeNull();
    expect(timestampNs({ seconds: 'x', nanos: 0 })).toBeNull();
    expect(timestampNs({ seconds: '99999999999999', nanos: 0 })).toBeNull();
    expect(timestampNs(null)).toBeNull();
  });
});

describe('responseToAlert', () => {
  const json = parse(CURRENT) as JsonObject;
  const viaJson = alertFromJson(json, origin, 1);

  it('json_output: true → the same Alert as the JSON path (typed fields, tags, message kept)', () => {
    const a = responseToAlert(wire(alertJsonToResponse(json, { jsonOutput: true, jsonText: CURRENT })), { receivedAtMs: 1 });
    expect(comparable(a)).toEqual(comparable(viaJson));
    expect(a.origin).toEqual(origin);
    expect(a.outputFields?.['evt.time']).toEqual(new LosslessNumber('1685022245478445995'));
    expect(a.extra['message']).toBe('A shell was spawned (user=root)');
  });

  it('json_output: false → the same Alert from string fields (numbers typed, evt.time exact, <NA> null)', () => {
    const resp = wire(alertJsonToResponse(json, { jsonOutput: false })) as Record<string, unknown>;
    expect((resp['output_fields'] as Record<string, string>)['evt.time']).toBe('13:44:05.478445995');
    expect((resp['output_fields'] as Record<string, string>)['k8s.ns.name']).toBe('<NA>');
    const a = responseToAlert(resp);
    const expected = { ...comparable(viaJson), extra: '{}' }; // `message` exists only in JSON
    expect(comparable(a)).toEqual(expected);
  });

  it('proto time, priority and rule stay authoritative over the embedded JSON', () => {
    const resp = alertJsonToResponse(json, { jsonOutput: true, jsonText: CURRENT });
    const a = responseToAlert(wire({ ...resp, priority: 0, rule: 'Other rule', time: { seconds: '1700000000', nanos: 1 } }));
    expect(a.priority).toBe('Emergency');
    expect(a.rule).toBe('Other rule');
    expect(a.time).toBe('2023-11-14T22:13:20.000000001Z');
    expect(a.output).toBe('13:44:05.478445995: Critical A shell was spawned (user=root)');
  });

  it('source from field 9, else from the deprecated enum (old Falco)', () => {
    const base = { time: { seconds: '1', nanos: 0 }, priority: 4, rule: 'r', output: 'x' };
    expect(responseToAlert(wire({ ...base, source: 'k8saudit-eks', source_deprecated: 3 })).source).toBe('k8saudit-eks');
    expect(responseToAlert(wire({ ...base, source_deprecated: 1 })).source).toBe('k8s_audit');
    expect(responseToAlert(wire({ ...base, source_deprecated: 2 })).source).toBe('internal');
    expect(responseToAlert(wire({ ...base, source_deprecated: 0 })).source).toBe('syscall');
    expect(responseToAlert(wire({ ...base, source_deprecated: 3 })).source).toBeNull();
    const internal = responseToAlert(wire({ ...base, source: 'internal' }));
    expect(internal.tags).toBeNull();
    expect(responseToAlert(wire({ ...base })).tags).toEqual([]);
    expect(responseToAlert(wire({ ...base })).hostname).toBeNull();
  });

  it('every priority number maps to its name; others are rejected', () => {
    PRIORITIES.forEach((p, i) => {
      expect(responseToAlert(wire({ time: { seconds: '1', nanos: 0 }, priority: i, rule: 'r' })).priority).toBe(p);
    });
    expect(() => responseToAlert({ time: { seconds: '1', nanos: 0 }, priority: 9, rule: 'r' })).toThrow(InvalidAlertError);
    expect(() => responseToAlert({ time: null, priority: 1, rule: 'r', output: 'text' })).toThrow(/time/);
    expect(() => responseToAlert({ time: { seconds: '1', nanos: 0 }, priority: 1, rule: '' })).toThrow(/rule/);
    expect(() => responseToAlert('nope')).toThrow(InvalidAlertError);
  });

  it('detects embedded JSON robustly', () => {
    expect(jsonAlertInOutput(CURRENT)).not.toBeNull();
    expect(jsonAlertInOutput(' ' + CURRENT + '\n')).not.toBeNull();
    expect(jsonAlertInOutput('13:44:05.478445995: Critical {"rule":"x"}')).toBeNull();
    expect(jsonAlertInOutput('{"a":1}')).toBeNull();
    expect(jsonAlertInOutput('{"rule":"x","priority":"Debug"')).toBeNull();
    expect(jsonAlertInOutput('{not json}')).toBeNull();
  });

  it('invalid UTF-8 on the wire decodes without crashing', () => {
    // Hand-encoded response: field 4 (rule) "r", field 5 (output) with invalid bytes, field 6 map entry with invalid value.
    const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x41]);
    const entry = Buffer.concat([Buffer.from([0x0a, 0x01, 0x6b]), Buffer.from([0x12, bad.length]), bad]);
    const buf = Buffer.concat([
      Buffer.from([0x0a, 0x04, 0x08, 0x01, 0x10, 0x00]), // time {seconds: 1, nanos: 0}
      Buffer.from([0x10, 0x03]), // priority ERROR
      Buffer.from([0x22, 0x01, 0x72]), // rule "r"
      Buffer.from([0x2a, bad.length]),
      bad,
      Buffer.from([0x32, entry.length]),
      entry,
    ]);
    const decoded = m.responseDeserialize(buf);
    const a = responseToAlert(decoded);
    expect(a.priority).toBe('Error');
    expect(typeof a.output).toBe('string');
    expect(typeof a.outputFields?.['k']).toBe('string');
  });
});

describe('properties', () => {
  const anyString = fc.oneof(fc.string({ unit: 'binary' }), fc.string(), fc.constantFrom('<NA>', '{', '{"rule":"x","priority":"Debug","output":1}', 'true', '-1', '123456789012345678901'));

  it('any decoded message: an Alert or an InvalidAlertError, never anything else', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            time: fc.oneof(fc.constant(null), fc.record({ seconds: fc.oneof(fc.bigInt({ min: -(2n ** 40n), max: 2n ** 40n }).map(String), anyString), nanos: fc.integer({ min: -5, max: 1_000_000_005 }) })),
            priority: fc.oneof(fc.integer({ min: -2, max: 10 }), anyString),
            source_deprecated: fc.integer({ min: -1, max: 5 }),
            rule: anyString,
            output: anyString,
            output_fields: fc.dictionary(fc.oneof(anyString, fc.constantFrom('evt.time', 'proc.pid', 'container.privileged', '__proto__')), anyString),
            hostname: anyString,
            tags: fc.array(anyString, { maxLength: 4 }),
            source: anyString,
          },
          { requiredKeys: [] },
        ),
        (msg) => {
          try {
            const a = responseToAlert(msg);
            expect(Object.isFrozen(a)).toBe(true);
            expect(a.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidAlertError);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  // A Falco-like JSON alert with typed fields (big ints, negatives, nulls, booleans, bracketed keys).
  const falcoAlert = fc
    .record({
      ns: fc.bigInt({ min: 0n, max: 4_102_444_800_000_000_000n }),
      priority: fc.constantFrom(...PRIORITIES),
      rule: fc.string({ minLength: 1 }).filter((s) => s.trim() !== ''),
      hostname: fc.option(fc.string(), { nil: undefined }),
      source: fc.constantFrom('syscall', 'k8s_audit', 'aws_cloudtrail'),
      tags: fc.array(fc.string(), { maxLength: 3 }),
      pid: fc.integer({ min: -1, max: 4_194_304 }),
      rawtime: fc.bigInt({ min: 0n, max: 2n ** 63n }),
      privileged: fc.option(fc.boolean(), { nil: null }),
      fdusage: fc.integer({ min: 0, max: 10_000 }).map((n) => n / 100),
      name: fc.option(fc.string(), { nil: null }),
      aname: fc.option(fc.string(), { nil: null }),
      output: fc.string(),
    })
    .map((r) => {
      const fields = [
        `"evt.time":${r.ns}`,
        `"evt.rawtime":${r.rawtime}`,
        `"proc.pid":${r.pid}`,
        `"proc.apid[2]":${r.pid}`,
        `"container.privileged":${r.privileged === null ? 'null' : String(r.privileged)}`,
        `"proc.fdusage":${r.fdusage}`,
        `"proc.name":${JSON.stringify(r.name)}`,
        `"proc.aname[3]":${JSON.stringify(r.aname)}`,
      ];
      const host = r.hostname === undefined ? '' : `"hostname":${JSON.stringify(r.hostname)},`;
      return `{${host}"output":${JSON.stringify(r.output)},"output_fields":{${fields.join(',')}},"priority":${JSON.stringify(r.priority)},"rule":${JSON.stringify(r.rule)},"source":${JSON.stringify(r.source)},"tags":${JSON.stringify(r.tags)},"time":"${formatTimeNs(r.ns)}"}`;
    });

  it('JSON alert → Falco gRPC response (both json_output settings) → the JSON path Alert', () => {
    fc.assert(
      fc.property(falcoAlert, fc.boolean(), (text, jsonOutput) => {
        const parsed = parse(text);
        if (!isJsonObject(parsed)) throw new Error('generator bug');
        const expected = comparable(alertFromJson(parsed, origin, 1));
        const got = comparable(responseToAlert(wire(alertJsonToResponse(parsed, { jsonOutput, jsonText: text }))));
        // An empty hostname cannot be told from "none" over gRPC.
        if (!jsonOutput && expected['hostname'] === '') expected['hostname'] = null;
        expect(got).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

const REF = '../shared/falco-reference/falco-alerts.jsonl';
describe.skipIf(!existsSync(REF))('real Falco alerts (../shared/falco-reference)', () => {
  const lines = existsSync(REF) ? readFileSync(REF, 'utf8').split('\n').filter((l) => l.trim() !== '') : [];

  it('every reference alert survives the gRPC path with json_output: true unchanged', () => {
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) {
      const parsed = parse(line) as JsonObject;
      const expected = comparable(alertFromJson(parsed, origin, 1));
      const got = comparable(responseToAlert(wire(alertJsonToResponse(parsed, { jsonOutput: true, jsonText: line }))));
      // gRPC always has a source (the enum): old alerts without one get it from field 3.
      if (expected['source'] === null) expected['source'] = got['source'];
      expect(got).toEqual(expected);
    }
  });

  it('with json_output: false the typed output_fields come back the same', () => {
    let compared = 0;
    for (const line of lines) {
      const parsed = parse(line) as JsonObject;
      const viaJson = alertFromJson(parsed, origin, 1);
      const got = responseToAlert(wire(alertJsonToResponse(parsed, { jsonOutput: false })));
      expect(got.output).toBe(viaJson.output);
      expect(got.timeNs).toBe(viaJson.timeNs);
      if (viaJson.source === 'internal') continue; // internal messages carry arbitrary fields
      expect(comparable(got)['outputFieldsExact']).toBe(comparable(viaJson)['outputFieldsExact']);
      compared++;
    }
    expect(compared).toBeGreaterThan(10);
  });
});
