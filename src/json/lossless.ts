/**
 * Lossless JSON for Falco alerts.
 *
 * Falco writes nanosecond integers (`evt.time`, `evt.rawtime`, `container.start_ts`, ...) that are
 * above 2^53: plain `JSON.parse` silently rounds them. Every number literal whose text does not
 * survive a round trip through a JS number is kept as a {@link LosslessNumber} holding the exact
 * text, and written back byte for byte by {@link stringify}.
 *
 * Fast path: the text is scanned once for such literals; when there are none (or after they are
 * wrapped as marked strings) the native `JSON.parse` does the heavy lifting.
 */

/** A JSON number kept as its exact source text. */
export class LosslessNumber {
  readonly raw: string;
  constructor(raw: string) {
    this.raw = raw;
    Object.freeze(this);
  }
  /** The nearest JS number (may be rounded). */
  valueOf(): number {
    return Number(this.raw);
  }
  /** Exact integer value when the literal is an integer, else null. */
  toBigInt(): bigint | null {
    return /^-?\d+$/.test(this.raw) ? BigInt(this.raw) : null;
  }
  toString(): string {
    return this.raw;
  }
}

export type JsonValue =
  | string
  | number
  | boolean
  | null
  | LosslessNumber
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };

export type JsonObject = { readonly [key: string]: JsonValue };

export class JsonSyntaxError extends Error {
  readonly code = 'E_JSON_SYNTAX';
  readonly position: number;
  constructor(message: string, position: number) {
    super(`${message} at position ${position}`);
    this.name = 'JsonSyntaxError';
    this.position = position;
  }
}

/** True when a number literal's text survives Number() → String() unchanged. */
export function roundTrips(raw: string): boolean {
  const n = Number(raw);
  if (!Number.isFinite(n) || String(n) !== raw) return false;
  // An integer above 2^53 can print back as the same digits and still hold another value
  // (1785316811123456800 is stored as ...768): keep those exact too.
  return Number.isSafeInteger(n) || !/^-?\d+$/.test(raw);
}

/** Deepest nesting of arrays and objects parse() accepts. */
export const MAX_DEPTH = 256;

const MARK = '\u0000lossless\u0000';
/** MARK as it must appear inside JSON text: raw control characters are invalid in JSON strings. */
const MARK_JSON = '\\u0000lossless\\u0000';

/**
 * Parse JSON text. Numbers that would lose digits become LosslessNumber.
 * Throws JsonSyntaxError with a position on invalid input.
 */
export function parse(text: string): JsonValue {
  // Scan for number literals outside strings that do not round-trip.
  const len = text.length;
  let i = 0;
  let out: string[] | null = null;
  let last = 0;
  // Nesting is bounded here as in the slow parser: the native parser has no bound, and what is
  // built from untrusted text is walked recursively (revive, stringify, deepFreeze).
  let depth = 0;
  while (i < len) {
    const c = text.charCodeAt(i);
    if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > MAX_DEPTH) throw new JsonSyntaxError('nesting too deep', i);
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
    if (c === 34 /* " */) {
      // Skip the string with native indexOf (most of an alert is string text): the closing quote
      // is the first one preceded by an even number of backslashes.
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) {
          i = len;
          break;
        }
        let b = q - 1;
        while (text.charCodeAt(b) === 92 /* \ */) b--;
        if ((q - 1 - b) % 2 === 0) {
          i = q + 1;
          break;
        }
        j = q + 1;
      }
      continue;
    }
    if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      const start = i;
      const neg = c === 45;
      i++;
      let plain = true; // an integer: digits only after the sign
      while (i < len) {
        const d = text.charCodeAt(i);
        if (d >= 48 && d <= 57) i++;
        else if (d === 46 || d === 101 || d === 69 || d === 43 || d === 45) {
          plain = false;
          i++;
        } else break;
      }
      const nd = neg ? i - start - 1 : i - start;
      const lead = text.charCodeAt(neg ? start + 1 : start);
      // A well-formed integer (no leading zero) of up to 15 digits round-trips (`-0` aside): nothing to slice.
      const wellFormed = plain && nd > 0 && (lead !== 48 || (nd === 1 && !neg));
      if (wellFormed && nd <= 15) continue;
      const raw = text.slice(start, i);
      // A well-formed integer of 17+ digits is beyond 2^53: never exact as a double.
      const exact = wellFormed && nd >= 17 ? false : roundTrips(raw);
      // Short literals that look like plain numbers always round-trip except forms like 1.0 or 1e3.
      if (raw.length > 15 || !exact) {
        if (!wellFormed && !/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(raw)) {
          throw new JsonSyntaxError(`invalid number ${JSON.stringify(raw)}`, start);
        }
        if (!exact) {
          out ??= [];
          out.push(text.slice(last, start), '"', MARK_JSON, raw, '"');
          last = i;
        }
      }
      continue;
    }
    i++;
  }
  if (out === null) {
    return nativeParse(text);
  }
  out.push(text.slice(last));
  if (text.includes('\\u0000')) {
    // An input string could itself look like our mark once unescaped: take the slow, exact path.
    return new SlowParser(text).parseDocument();
  }
  return new Reviver(Math.floor(out.length / 5)).value(nativeParse(out.join(''), text));
}

function nativeParse(text: string, original: string = text): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    // Re-parse the original text slowly for a precise position and message.
    new SlowParser(original).parseDocument();
    throw new JsonSyntaxError((err as Error).message, 0);
  }
}

/** Turns the marked strings back into LosslessNumbers; stops walking once all `left` are found. */
class Reviver {
  constructor(private left: number) {}

  value(v: JsonValue): JsonValue {
    if (typeof v === 'string') {
      if (!v.startsWith(MARK)) return v;
      this.left--;
      return new LosslessNumber(v.slice(MARK.length));
    }
    if (v === null || typeof v !== 'object' || v instanceof LosslessNumber) return v;
    if (Array.isArray(v)) {
      const a = v as JsonValue[];
      for (let k = 0; k < a.length && this.left > 0; k++) {
        const x = a[k] as JsonValue;
        if (typeof x === 'object' || typeof x === 'string') a[k] = this.value(x);
      }
      return a;
    }
    const o = v as Record<string, JsonValue>;
    for (const k in o) {
      if (this.left <= 0) break;
      const x = o[k] as JsonValue;
      if (typeof x === 'object' || typeof x === 'string') {
        const y = this.value(x);
        if (y !== x) o[k] = y;
      }
    }
    return o;
  }
}

/** Exact recursive-descent parser: the reference used for errors and for inputs with \u0000. */
class SlowParser {
  private i = 0;
  constructor(private readonly s: string) {}

  parseDocument(): JsonValue {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.fail('unexpected data after the JSON value');
    return v;
  }

  private fail(msg: string): never {
    throw new JsonSyntaxError(msg, this.i);
  }

  private ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 32 || c === 9 || c === 10 || c === 13) this.i++;
      else break;
    }
  }

  private value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail('nesting too deep');
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object(depth);
      case '[':
        return this.array(depth);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail(c === undefined ? 'unexpected end of input' : `unexpected character ${JSON.stringify(c)}`);
    }
  }

  private literal<T extends JsonValue>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail('invalid literal');
  }

  private number(): JsonValue {
    const m = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (!r || r[0] === '-' || r[0] === '') this.fail('invalid number');
    const raw = r[0];
    this.i += raw.length;
    return roundTrips(raw) ? Number(raw) : new LosslessNumber(raw);
  }

  private string(): string {
    const s = this.s;
    const start = ++this.i;
    // Fast scan for strings without escapes.
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 34) {
        const v = s.slice(start, this.i);
        this.i++;
        return v;
      }
      if (c === 92) break;
      if (c < 0x20) this.fail('control character in string');
      this.i++;
    }
    this.i = start - 1;
    // Escaped strings: hand the literal to the native parser, which knows every escape.
    // eslint-disable-next-line no-control-regex -- JSON forbids raw control characters in strings
    const lit = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
    lit.lastIndex = this.i;
    const r = lit.exec(s);
    if (!r) {
      this.i = start;
      this.fail('invalid string');
    }
    this.i += r[0].length;
    return JSON.parse(r[0]) as string;
  }

  private array(depth: number): JsonValue[] {
    this.i++;
    const a: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return a;
    }
    for (;;) {
      this.ws();
      a.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return a;
      if (c !== ',') {
        this.i--;
        this.fail("expected ',' or ']'");
      }
    }
  }

  private object(depth: number): Record<string, JsonValue> {
    this.i++;
    const o: Record<string, JsonValue> = {};
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return o;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a string key');
      const k = this.string();
      this.ws();
      if (this.s[this.i] !== ':') this.fail("expected ':'");
      this.i++;
      this.ws();
      const v = this.value(depth + 1);
      if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
      else o[k] = v;
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return o;
      if (c !== ',') {
        this.i--;
        this.fail("expected ',' or '}'");
      }
    }
  }
}

/** Serialise a JsonValue; LosslessNumber is written as its exact text. Non-finite numbers become null. */
export function stringify(v: JsonValue | undefined): string {
  if (v === undefined) return 'null';
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      break;
  }
  if (v instanceof LosslessNumber) return v.raw;
  if (Array.isArray(v)) {
    let s = '[';
    for (let k = 0; k < v.length; k++) {
      if (k > 0) s += ',';
      s += stringify(v[k] as JsonValue);
    }
    return s + ']';
  }
  let s = '{';
  let first = true;
  const o = v as JsonObject;
  for (const k in o) {
    const x = o[k];
    if (x === undefined) continue;
    if (!first) s += ',';
    first = false;
    s += JSON.stringify(k) + ':' + stringify(x);
  }
  return s + '}';
}

/**
 * Deep-freeze a plain value: objects, arrays and what they hold (alerts are immutable after the
 * edge; validated config and rules are frozen too). The one deepFreeze of the project.
 */
export function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    if (Array.isArray(v)) for (const x of v as unknown[]) deepFreeze(x);
    else for (const k in v) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof LosslessNumber);
}
