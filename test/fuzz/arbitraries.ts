/**
 * Hostile input generators shared by the fuzz targets: strings that break naive parsers, JSON
 * numbers of every shape, Falco alerts with a model of what must come out, invalid UTF-8, deep
 * nesting, huge maps, and byte-level mutations of valid inputs.
 */
import fc from 'fast-check';
import { PRIORITIES } from '../../src/alert.js';

/** Strings that have broken parsers somewhere: empty, controls, lone surrogates, bidi, markers, prototypes. */
export const nastyConstants = [
  '',
  ' ',
  '<NA>',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '\u0000',
  '\u0000lossless\u0000123456789012345678901',
  '\ud800',
  '\udfff',
  '\ud83d\ude00',
  '\u202e',
  '\u2028',
  '\ufeff',
  '\r\n',
  '\\',
  '"',
  '{"rule":"x"}',
  '-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----',
  'password=hunter2',
  '1e400',
  '-0',
  'null',
  '%s%n%x',
  '${jndi:ldap://x}',
  '<script>alert(1)</script>',
  "'; DROP TABLE x; --",
];

export const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
  { weight: 2, arbitrary: fc.constantFrom(...nastyConstants) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', '*', '?', '.', '/', ':', '\\', '"', '%', '{', '[', '-', '=', ' '), maxLength: 60 }) },
);

/** Long runs of one character or a short motif (super-linear regular expressions show up here). */
export const longRun: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('a', ' ', 'eyJ-', 'password', 'a:', '/', '0', '-', 'aaaa.', '%', '\\', '"', 'Bearer ', 'token=', '::', '1.'), fc.integer({ min: 100, max: 5000 }))
  .map(([m, n]) => m.repeat(Math.ceil(n / m.length)));

const digits = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });

/** A valid JSON number literal (lossless JSON keeps every one of them byte for byte). */
export const numberText: fc.Arbitrary<string> = fc.oneof(
  fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map(String),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.constantFrom('0', '-0', '0.0', '1.0', '1e3', '1E+3', '1e-400', '1e400', '-1.5e-7', '9007199254740993', '18446744073709551615', '1785316811123456789', '0.1', '123456789012345678901234567890.123456789'),
  fc
    .tuple(fc.boolean(), fc.oneof(fc.constant('0'), fc.tuple(fc.constantFrom(...'123456789'), digits(0, 25)).map(([a, b]) => a + b)), fc.option(digits(1, 25), { nil: undefined }), fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(1, 4)), { nil: undefined }))
    .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int}${frac !== undefined ? '.' + frac : ''}${exp ? exp.join('') : ''}`),
);

/** Number-like text that is not a JSON number. */
export const badNumberText = fc.constantFrom('01', '1.', '.5', '+1', '1e', '1e+', '-', '--1', 'NaN', 'Infinity', '-Infinity', '0x10', '1_000', '1.2.3', '00', '-01', '1ee2');

/** A JSON string literal (escapes of every kind, lone surrogates written as \u escapes). */
export const stringLiteral: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: nastyString.map((s) => JSON.stringify(s)) },
  { weight: 1, arbitrary: fc.constantFrom('"\\ud800"', '"\\udc00\\ud800"', '"\\u0000"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\u00e9\\u00E9"', '"\\uD83D\\uDE00"') },
);

export const priorityText = fc.oneof(fc.constantFrom(...PRIORITIES), fc.constantFrom('info', 'INFO', 'WARNING', ' notice ', 'Debug'));

/** An RFC 3339 time Falco or a user could send (always valid). */
export const timeText: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(fc.integer({ min: 1, max: 9999 }), fc.constantFrom(1, 99, 100, 1969, 1970, 2038, 9999)),
    fc.integer({ min: 1, max: 12 }),
    fc.integer({ min: 1, max: 28 }),
    fc.integer({ min: 0, max: 23 }),
    fc.integer({ min: 0, max: 59 }),
    fc.integer({ min: 0, max: 59 }),
    fc.option(digits(1, 12), { nil: undefined }),
    fc.constantFrom('Z', 'z', '+00:00', '-07:00', '+0530', '+14:00'),
    fc.constantFrom('T', 't', ' '),
  )
  .map(([y, mo, d, h, mi, s, frac, zone, sep]) => {
    const p = (n: number, w = 2): string => String(n).padStart(w, '0');
    return `${p(y, 4)}-${p(mo)}-${p(d)}${sep}${p(h)}:${p(mi)}:${p(s)}${frac !== undefined ? '.' + frac : ''}${zone}`;
  });

/** A Falco field name (never integer-like: JS would reorder it). */
export const fieldKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom('evt.time', 'evt.type', 'proc.name', 'proc.cmdline', 'proc.env', 'proc.args', 'proc.pid', 'proc.aname[2]', 'fd.name', 'fd.sip', 'fd.sport', 'container.id', 'container.image.repository', 'k8s.pod.label[app.kubernetes.io/name]', 'user.uid', 'evt.rawtime') },
  { weight: 3, arbitrary: fc.stringMatching(/^[a-z]{1,6}(\.[a-z0-9_]{1,8}){0,3}(\[[a-z0-9./-]{0,12}\])?$/) },
  { weight: 1, arbitrary: nastyString.filter((k) => !/^(0|[1-9]\d*)$/.test(k)) },
);

/** A field value literal: strings, numbers of every shape, booleans, null. */
export const valueLiteral: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: stringLiteral },
  { weight: 4, arbitrary: numberText },
  { weight: 1, arbitrary: fc.constantFrom('true', 'false', 'null') },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', 'xyz', 'é', 'password=hunter2 '), fc.integer({ min: 1, max: 400 })).map(([s, n]) => JSON.stringify(s.repeat(n))) },
);

const ws = fc.constantFrom('', '', '', ' ', '\n', '\t', '\r\n ');

/** A valid Falco JSON alert, as text, with the literals it was built from (the model of the round trip). */
export interface AlertDoc {
  readonly text: string;
  readonly rule: string;
  readonly priority: string;
  readonly time: string;
  readonly output: string | null;
  readonly tags: readonly string[] | null;
  /** [key, literal] in order; null: no output_fields. */
  readonly fields: readonly (readonly [string, string])[] | null;
  /** Extra top-level keys with their literals. */
  readonly extra: readonly (readonly [string, string])[];
}

export function alertDoc(opts: { maxFields?: number; maxTags?: number } = {}): fc.Arbitrary<AlertDoc> {
  return fc
    .record({
      rule: nastyString.filter((s) => s.trim() !== ''),
      priority: priorityText,
      time: timeText,
      output: fc.option(fc.oneof(nastyString, fc.tuple(nastyString, fc.integer({ min: 1, max: 300 })).map(([s, n]) => (s || 'x').repeat(n))), { nil: null }),
      tags: fc.option(fc.array(nastyString, { maxLength: opts.maxTags ?? 12 }), { nil: null }),
      fields: fc.option(fc.uniqueArray(fc.tuple(fieldKey, valueLiteral), { maxLength: opts.maxFields ?? 30, selector: (x) => x[0] }), { nil: null }),
      extra: fc.uniqueArray(fc.tuple(fc.constantFrom('uuid', 'message', 'hostname_extra', 'x-custom', '__proto__'), valueLiteral), { maxLength: 3, selector: (x) => x[0] }),
      order: fc.array(fc.nat(), { minLength: 8, maxLength: 8 }),
      spaces: fc.array(ws, { minLength: 4, maxLength: 4 }),
      absentOutput: fc.boolean(),
      absentTags: fc.boolean(),
    })
    .map((r) => {
      const [a, b, c, d] = r.spaces as [string, string, string, string];
      const parts: [number, string][] = [
        [r.order[0] ?? 0, `"rule":${b}${JSON.stringify(r.rule)}`],
        [r.order[1] ?? 0, `"priority":${JSON.stringify(r.priority)}`],
        [r.order[2] ?? 0, `"time":${c}${JSON.stringify(r.time)}`],
      ];
      if (r.output !== null) parts.push([r.order[3] ?? 0, `"output":${JSON.stringify(r.output)}`]);
      else if (!r.absentOutput) parts.push([r.order[3] ?? 0, `"output":null`]);
      if (r.tags !== null) parts.push([r.order[4] ?? 0, `"tags":[${r.tags.map((t) => JSON.stringify(t)).join(`,${d}`)}]`]);
      else if (!r.absentTags) parts.push([r.order[4] ?? 0, `"tags":null`]);
      if (r.fields !== null) parts.push([r.order[5] ?? 0, `"output_fields":{${d}${r.fields.map(([k, v]) => `${JSON.stringify(k)}:${a}${v}`).join(`,${d}`)}}`]);
      for (const [k, v] of r.extra) parts.push([r.order[6] ?? 0, `${JSON.stringify(k)}:${v}`]);
      parts.sort((x, y) => x[0] - y[0]);
      const text = `${a}{${b}${parts.map((p) => p[1]).join(`,${c}`)}${d}}${a}`;
      return { text, rule: r.rule, priority: r.priority, time: r.time, output: r.output, tags: r.tags, fields: r.fields, extra: r.extra };
    });
}

/** Byte-level mutations of a valid input: flips, insertions, deletions, truncation, invalid UTF-8. */
export function mutatedBytes(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  const invalidUtf8 = fc.constantFrom([0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xfe, 0xfe], [0xef, 0xbb, 0xbf]);
  const edit = fc.oneof(
    fc.record({ k: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ k: fc.constant('insert' as const), at: fc.nat(), bytes: fc.oneof(invalidUtf8, fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }), fc.constantFrom(...['{', '}', '[', ']', '"', ',', ':', '\\', '\n', '1e999', '-', '\u0000'].map((s) => [...Buffer.from(s)]))) }),
    fc.record({ k: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ k: fc.constant('truncate' as const), at: fc.nat() }),
  );
  return fc.tuple(base, fc.array(edit, { minLength: 1, maxLength: 4 })).map(([b, edits]) => {
    let buf = Buffer.from(b);
    for (const e of edits) {
      const at = buf.length === 0 ? 0 : e.at % (buf.length + 1);
      if (e.k === 'flip' && buf.length > 0) buf[at % buf.length] = e.byte;
      else if (e.k === 'insert') buf = Buffer.concat([buf.subarray(0, at), Buffer.from(e.bytes), buf.subarray(at)]);
      else if (e.k === 'delete') buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + e.n)]);
      else if (e.k === 'truncate') buf = buf.subarray(0, at);
    }
    return buf;
  });
}

/** JSON nested `depth` deep, optionally with a number literal that only the lossless path keeps. */
export const deepJson: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 1, max: 20_000 }), fc.constantFrom('[', '{"a":'), fc.constantFrom('1', '123456789012345678901', '"x"', '1.0', '"\\u0000"'), fc.boolean(), fc.boolean())
  .map(([n, open, leaf, inAlert, closeAll]) => {
    const close = open === '[' ? ']' : '}';
    const nested = open.repeat(n) + leaf + close.repeat(closeAll ? n : Math.floor(n / 2));
    return inAlert ? `{"rule":"r","priority":"Warning","time":"2024-01-01T00:00:00.000000000Z","output_fields":{"x":${nested}},"extra":${nested}}` : nested;
  });

/** output_fields with thousands of keys (some long, some repeated). */
export const hugeFieldsAlert: fc.Arbitrary<string> = fc
  // (at most about 1 MiB: the receiver's and the file input's default caps)
  .tuple(fc.integer({ min: 500, max: 20_000 }), fc.integer({ min: 0, max: 40 }), fc.boolean())
  .map(([n, keyPad, dupes]) => {
    const pad = 'k'.repeat(keyPad);
    const fields: string[] = [];
    for (let i = 0; i < n; i++) fields.push(`"f${dupes ? i % 50 : i}.${pad}":${i % 3 === 0 ? i : `"v${i}"`}`);
    return `{"rule":"many","priority":"Notice","time":"2024-01-01T00:00:00.000000000Z","output":"many fields","output_fields":{${fields.join(',')}},"tags":[${Array.from({ length: Math.min(n, 2000) }, (_, i) => `"t${i}"`).join(',')}]}`;
  });
