/**
 * Falco JSON over HTTP: the body → Alert step of the receiver (src/sources/http.ts decodeFalcoBody
 * with the input limits of src/limits.ts), and the lossless JSON parser under it.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { InvalidAlertError, alertFromJson, parsePriority, parseTime, formatTimeNs, serializeAlert, type Alert } from '../../../src/alert.js';
import { JsonSyntaxError, LosslessNumber, parse, stringify, type JsonValue } from '../../../src/json/lossless.js';
import { DEFAULT_INPUT_LIMITS, TRUNCATED_KEY, cutString, limitAlertJson, type InputLimits } from '../../../src/limits.js';
import { decodeFalcoBody, type RejectCode } from '../../../src/sources/http.js';
import { alertDoc, badNumberText, deepJson, hugeFieldsAlert, mutatedBytes, nastyString, numberText, stringLiteral, type AlertDoc } from '../arbitraries.js';
import { thrown, type FuzzTarget } from '../harness.js';

const ORIGIN = { kind: 'http', component: 'source/http' } as const;

/** Small limits, so that the fuzzer hits every one of them often. */
export const SMALL_LIMITS: InputLimits = { maxFields: 12, maxKeyLength: 24, maxValueLength: 64, maxOutputLength: 128, maxTags: 5, maxJsonDepth: 6 };

const CODES: ReadonlySet<RejectCode> = new Set<RejectCode>(['empty_body', 'invalid_encoding', 'invalid_json', 'text_output', 'form_encoded', 'not_object', 'batch', 'missing_field', 'bad_priority', 'bad_time', 'wrong_type', 'invalid_alert', 'too_deep', 'unsupported_encoding']);

/** The text a literal serialises back to (lossless JSON keeps every number literal as written). */
function canonical(lit: string, max: number): string {
  if (!lit.startsWith('"')) return lit.length > max ? JSON.stringify(cutString(lit, max)) : lit;
  return JSON.stringify(cutString(JSON.parse(lit) as string, max));
}

/** The literal's value is longer than the limit (a string's text, a number's digits). */
function overLong(lit: string, max: number): boolean {
  return lit.startsWith('"') ? (JSON.parse(lit) as string).length > max : lit.length > max;
}

/** What every accepted alert keeps to, whatever the input. */
export function checkWithinLimits(a: Alert, l: InputLimits): void {
  expect(Object.isFrozen(a)).toBe(true);
  const f = a.outputFields ?? {};
  expect(Object.keys(f).length).toBeLessThanOrEqual(l.maxFields);
  for (const [k, v] of Object.entries(f)) {
    expect(k.length).toBeLessThanOrEqual(l.maxKeyLength);
    if (typeof v === 'string') expect(v.length).toBeLessThanOrEqual(l.maxValueLength);
  }
  expect(a.output.length).toBeLessThanOrEqual(l.maxOutputLength);
  expect((a.tags ?? []).length).toBeLessThanOrEqual(l.maxTags);
  for (const t of a.tags ?? []) expect(t.length).toBeLessThanOrEqual(l.maxKeyLength);
  expect(a.rule.length).toBeLessThanOrEqual(l.maxValueLength);
  const mark = a.companion[TRUNCATED_KEY];
  if (mark !== undefined) expect(typeof mark === 'string' && mark.length > 0 && mark.length <= 500).toBe(true);
}

/** Serialise and decode again: the same alert, byte for byte (idempotent once limited). */
function checkStable(a: Alert, l: InputLimits): void {
  const text = serializeAlert(a, { includeCompanion: false });
  const again = decodeFalcoBody(Buffer.from(text), 'application/json', ORIGIN, 0, l);
  if (!again.ok) throw new Error(`re-decoding an accepted alert failed: ${again.rejection.reason}\n${text.slice(0, 300)}`);
  expect(again.cuts).toBeUndefined();
  expect(serializeAlert(again.alert, { includeCompanion: false })).toBe(text);
}

function checkValid(d: AlertDoc, l: InputLimits): void {
  const r = decodeFalcoBody(Buffer.from(d.text), 'application/json', ORIGIN, 0, l);
  if (!r.ok) throw new Error(`valid alert rejected: ${r.rejection.error} ${r.rejection.reason}\n${d.text.slice(0, 300)}`);
  const a = r.alert;
  checkWithinLimits(a, l);
  let cut = false;
  expect(a.rule).toBe(cutString(d.rule, l.maxValueLength));
  if (d.rule.length > l.maxValueLength) cut = true;
  expect(a.priority).toBe(parsePriority(d.priority));
  // Time: exact nanoseconds, canonical 9-digit UTC text.
  const t = parseTime(d.time);
  expect(t).not.toBeNull();
  expect(a.timeNs).toBe(t?.ns);
  expect(a.time).toBe(formatTimeNs(a.timeNs));
  expect(parseTime(a.time)?.ns).toBe(a.timeNs);
  expect(a.output).toBe(cutString(d.output ?? '', l.maxOutputLength));
  if ((d.output ?? '').length > l.maxOutputLength) cut = true;
  if (d.tags === null) expect(a.tags).toBeNull();
  else {
    expect(a.tags).toEqual(d.tags.slice(0, l.maxTags).map((t2) => cutString(t2, l.maxKeyLength)));
    if (d.tags.length > l.maxTags || d.tags.slice(0, l.maxTags).some((t2) => t2.length > l.maxKeyLength)) cut = true;
  }
  if (d.fields === null) expect(a.outputFields).toBeNull();
  else {
    // Exact round trip: every kept literal comes back byte for byte, in order (long values cut).
    const kept = d.fields.filter(([k]) => k.length <= l.maxKeyLength);
    if (kept.length !== d.fields.length || kept.length > l.maxFields) cut = true;
    const expected = kept.slice(0, l.maxFields).map(([k, v]) => [k, canonical(v, l.maxValueLength)]);
    if (kept.slice(0, l.maxFields).some(([, v]) => overLong(v, l.maxValueLength))) cut = true;
    const got = Object.keys(a.outputFields ?? {}).map((k) => [k, stringify((a.outputFields ?? {})[k] as JsonValue)]);
    expect(got).toEqual(expected);
  }
  for (const [k, v] of d.extra) {
    expect(stringify(a.extra[k])).toBe(canonical(v, l.maxValueLength));
    if (overLong(v, l.maxValueLength)) cut = true;
  }
  expect(a.companion[TRUNCATED_KEY] !== undefined).toBe(cut);
  checkStable(a, l);
}

function checkAny(body: Buffer, ct: string | undefined, l: InputLimits): void {
  let r: ReturnType<typeof decodeFalcoBody> | undefined;
  const err = thrown(() => (r = decodeFalcoBody(body, ct, ORIGIN, 0, l)));
  if (err !== undefined) throw new Error(`decodeFalcoBody threw: ${String(err)}`);
  if (!r) throw new Error('no result');
  if (!r.ok) {
    expect(CODES.has(r.rejection.error)).toBe(true);
    expect(typeof r.rejection.reason).toBe('string');
    expect(r.rejection.reason.length).toBeGreaterThan(0);
    expect(r.rejection.reason.length).toBeLessThan(2000);
    return;
  }
  checkWithinLimits(r.alert, l);
  // Bounded memory: what is kept is no bigger than what came in (plus the marks).
  expect(serializeAlert(r.alert).length).toBeLessThanOrEqual(2 * body.length + 1024);
  checkStable(r.alert, l);
}

type HttpInput = { readonly kind: 'valid'; readonly doc: AlertDoc; readonly small: boolean } | { readonly kind: 'any'; readonly body: Buffer; readonly ct: string | undefined; readonly small: boolean };

const validBuf = alertDoc().map((d) => Buffer.from(d.text));
const anyBody: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: mutatedBytes(validBuf) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2000 }).map((u) => Buffer.from(u)) },
  { weight: 2, arbitrary: fc.json().map((s) => Buffer.from(s)) },
  { weight: 2, arbitrary: fc.oneof(numberText, badNumberText, stringLiteral).map((n) => Buffer.from(`{"rule":"r","priority":"Warning","time":"2024-01-01T00:00:00Z","output_fields":{"n":${n},"m":[${n}]}}`)) },
  { weight: 1, arbitrary: deepJson.map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: hugeFieldsAlert.map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.constantFrom('12:00:00.000000000: Warning x', 'a=1&b=2', '', '   ', '\ufeff{}', '[{"rule":"r"}]', 'null', '"x"', '1').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: nastyString.map((s) => Buffer.from(s)) },
);

export const httpBody: FuzzTarget<HttpInput> = {
  name: 'HTTP body → Alert (Falco JSON, limits)',
  module: 'src/sources/http.ts, src/limits.ts, src/alert.ts',
  arb: fc.oneof(
    fc.record({ kind: fc.constant('valid' as const), doc: alertDoc(), small: fc.boolean() }),
    fc.record({ kind: fc.constant('any' as const), body: anyBody, ct: fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-8'), small: fc.boolean() }),
  ),
  check: (x) => {
    const l = x.small ? SMALL_LIMITS : DEFAULT_INPUT_LIMITS;
    if (x.kind === 'valid') checkValid(x.doc, l);
    else checkAny(x.body, x.ct, l);
  },
  shortRuns: 300,
};

// ---------------------------------------------------------------------------------------------

/** Reference value of a literal for comparison (numbers as exact text). */
function shape(v: JsonValue): unknown {
  if (v instanceof LosslessNumber) return { n: v.raw };
  if (typeof v === 'number') return { n: String(v) };
  if (Array.isArray(v)) return (v as JsonValue[]).map(shape);
  if (v !== null && typeof v === 'object') return Object.entries(v).map(([k, x]) => [k, shape(x as JsonValue)]);
  return v;
}

export const losslessJson: FuzzTarget<string> = {
  name: 'lossless JSON parse / stringify',
  module: 'src/json/lossless.ts',
  arb: fc.oneof(
    { weight: 4, arbitrary: fc.json({ maxDepth: 6 }) },
    { weight: 2, arbitrary: fc.tuple(numberText, stringLiteral).map(([n, s]) => `{"a":${n},"b":[${n},${s},{"c":${n}}],${s}:${s}}`) },
    { weight: 3, arbitrary: mutatedBytes(fc.json({ maxDepth: 4 }).map((s) => Buffer.from(s))).map((b) => b.toString('utf8')) },
    { weight: 1, arbitrary: deepJson },
    { weight: 1, arbitrary: fc.oneof(badNumberText, nastyString) },
  ),
  check: (text) => {
    let v: JsonValue | undefined;
    const err = thrown(() => (v = parse(text)));
    let native: unknown;
    const nativeErr = thrown(() => (native = JSON.parse(text)));
    if (err !== undefined) {
      if (!(err instanceof JsonSyntaxError)) throw new Error(`parse threw ${String(err)}`);
      expect(err.code).toBe('E_JSON_SYNTAX');
      expect(err.position).toBeGreaterThanOrEqual(0);
      // Invalid for the native parser too, or nested past the parser's bound.
      if (nativeErr === undefined) expect(err.message).toMatch(/nesting too deep/);
      return;
    }
    expect(nativeErr).toBeUndefined();
    const out = stringify(v);
    // Same value as the native parser where numbers survive it; the text round trip is exact.
    const again = parse(out);
    expect(stringify(again)).toBe(out);
    expect(shape(again)).toEqual(shape(v as JsonValue));
    if (!/\d{16}|\d[eE]|\.\d*0\b|-0\b/.test(text)) expect(JSON.parse(out)).toEqual(native);
  },
  shortRuns: 300,
};

// ---------------------------------------------------------------------------------------------

export const limitsTarget: FuzzTarget<{ text: string; small: boolean }> = {
  name: 'input limits on parsed alerts',
  module: 'src/limits.ts',
  arb: fc.record({
    text: fc.oneof(
      { weight: 6, arbitrary: alertDoc({ maxFields: 40, maxTags: 12 }).map((d) => d.text) },
      { weight: 1, arbitrary: hugeFieldsAlert },
      { weight: 1, arbitrary: deepJson },
      { weight: 2, arbitrary: fc.json({ maxDepth: 8 }) },
    ),
    small: fc.boolean(),
  }),
  check: ({ text, small }) => {
    let v: JsonValue;
    try {
      v = parse(text);
    } catch {
      return;
    }
    const l = small ? SMALL_LIMITS : DEFAULT_INPUT_LIMITS;
    const before = stringify(v);
    const r = limitAlertJson(v, l);
    expect(stringify(v)).toBe(before); // never mutates its input
    if (!r.ok) {
      expect(r.limit).toBe('json_depth');
      return;
    }
    // Idempotent: limiting twice cuts nothing more.
    const again = limitAlertJson(r.value, l);
    expect(again.ok && again.cuts.length).toBe(0);
    if (r.cuts.length === 0) expect(r.value).toBe(v);
    try {
      checkWithinLimits(alertFromJson(r.value, ORIGIN, 0), l);
    } catch (err) {
      if (!(err instanceof InvalidAlertError)) throw err;
    }
  },
  shortRuns: 200,
};

// ---------------------------------------------------------------------------------------------

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), exact for any year. */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

export const rfc3339Times: FuzzTarget<{ y: number; mo: number; d: number; h: number; mi: number; s: number; frac: string; zone: string; sep: string }> = {
  name: 'RFC 3339 alert times',
  module: 'src/alert.ts parseTime / formatTimeNs',
  arb: fc.record({
    y: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 1, 50, 99, 100, 1899, 1900, 1969, 1970, 2000, 2038, 9999)),
    mo: fc.integer({ min: 0, max: 13 }),
    d: fc.integer({ min: 0, max: 32 }),
    h: fc.integer({ min: 0, max: 24 }),
    mi: fc.integer({ min: 0, max: 60 }),
    s: fc.integer({ min: 0, max: 61 }),
    frac: fc.oneof(fc.constant(''), fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: 1, maxLength: 14 }).map((f) => '.' + f)),
    zone: fc.constantFrom('Z', 'z', '+00:00', '-00:00', '+05:30', '-07:00', '+1400', '-23:59', '+23:59'),
    sep: fc.constantFrom('T', 't', ' '),
  }),
  check: ({ y, mo, d, h, mi, s, frac, zone, sep }) => {
    const text = `${pad(y, 4)}-${pad(mo)}-${pad(d)}${sep}${pad(h)}:${pad(mi)}:${pad(s)}${frac}${zone}`;
    const t = parseTime(text);
    const dim = [31, y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1] ?? 0;
    const off = zone === 'Z' || zone === 'z' ? 0 : (zone.startsWith('-') ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(-2)));
    const digits = frac.slice(1, 10).padEnd(9, '0');
    // The reference: exact integer arithmetic; a leap second 60 counts as the next second (as Date.UTC does).
    const secs = BigInt(daysFromCivil(y, mo, d)) * 86_400n + BigInt(h * 3600 + mi * 60 + s) - BigInt(off * 60);
    const valid = mo >= 1 && mo <= 12 && d >= 1 && d <= dim && h <= 23 && mi <= 59 && s <= 60 && secs < 253_402_300_800n && secs >= -62_167_219_200n;
    if (!valid) {
      expect(t).toBeNull();
      return;
    }
    if (t === null) throw new Error(`valid time rejected: ${text}`);
    expect(t.ns).toBe(secs * 1_000_000_000n + BigInt(digits));
    expect(t.text).toBe(formatTimeNs(t.ns));
    expect(t.text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    expect(parseTime(t.text)?.ns).toBe(t.ns);
  },
  shortRuns: 500,
};
