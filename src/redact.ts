/**
 * Secret redaction (docs/security-parsers.md, "Secrets"): what a workload puts on its command line
 * or in its environment (tokens, keys, passwords) reaches the companion in Falco's output fields.
 *
 * - Logs: always. Every log line passes {@link Redactor.redactLogLine} (a pino `streamWrite`
 *   hook, src/logger.ts), so no log call can leak a secret whatever it includes.
 * - Forwarded alerts: with `redact.forwarded: true`, the sinks receive {@link Redactor.redactAlert}:
 *   `output`, every string in output_fields (proc.cmdline, proc.env, proc.args, fd.name, ...), in
 *   the other top-level keys and in companion keys. Never the rule name, time, priority, source,
 *   hostname, tags or any key. Detection sees the alert unredacted.
 *
 * Built-in patterns cover private-key blocks, `Bearer` / `Basic` credentials, AWS access key ids,
 * JWTs, GitHub / GitLab / Slack / Google tokens, URLs with a password, and `password=`, `passwd:`,
 * `secret=`, `token=`, `api_key=`, `--password VALUE` style arguments (any key containing such a
 * word, e.g. `MYSQL_ROOT_PASSWORD=`, `--registry-token x`). `redact.patterns` adds regular
 * expressions (`/source/flags` or a bare source; a named group `secret` masks only that part).
 *
 * Every built-in runs in time linear in the text (matches start only at the beginning of a run
 * of token characters, quantifiers are bounded or cannot backtrack): a hostile command line
 * cannot make redaction slow. User patterns are the operator's to keep linear.
 */
import { createAlert, type Alert, type EnrichValue, type FieldValue } from './alert.js';
import { CompanionError } from './errors.js';
import { LosslessNumber, parse as parseJson, stringify, type JsonValue } from './json/lossless.js';
import type { Sink } from './pipeline/types.js';

/** What a secret is replaced with. */
export const MASK = '[REDACTED]';

/** The config section `redact` (src/config/sections/limits.ts). */
export interface RedactConfig {
  readonly forwarded: boolean;
  readonly patterns: readonly string[];
}

/** Words that make a `key=value`, `key: value` or `--key value` a secret (anywhere in the key). */
const SECRET_WORD = /passw(?:or)?d|passphrase|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth[_-]?key/gi;
/** Characters of a key (environment variable, flag, JSON or YAML key). */
const KEY_CHAR = /[A-Za-z0-9_.-]/;
/** Longest key examined around a secret word. */
const MAX_KEY = 64;
/** Where an unquoted value ends. */
const VALUE_END = /[\s"'&;,]/;
const URL_USERINFO_END = /[\s"'@/]/;
const CLOSERS = new Map([[')', '('], [']', '['], ['}', '{']]);
/** A value without the mask it may start with (its brackets are not the value's). */
const unmasked = (v: string): string => (v.startsWith(MASK) ? v.slice(MASK.length) : v);

interface Pattern {
  readonly re: RegExp;
  /** Only the named group `secret` is masked (else the whole match). */
  readonly group: boolean;
}

/**
 * The built-in token patterns. Each starts only where a run of its token characters starts (a
 * lookbehind), so overlapping attempts inside one long run cannot make it quadratic.
 */
const BUILTIN: readonly Pattern[] = [
  // PEM / OpenSSH / PGP private keys (a key cut short by a limit is masked to the end).
  { re: /-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|$)/g, group: false },
  // Authorization: Bearer / Basic credentials.
  { re: /(?<![A-Za-z0-9_])[Bb][Ee][Aa][Rr][Ee][Rr][ \t]{1,16}(?<secret>[A-Za-z0-9._~+/=-]{8,})/g, group: true },
  // (Basic: base64 with a digit, `+`, `/` or `=` in it, so prose like "Basic configuration" stays.)
  { re: /(?<![A-Za-z0-9_])[Bb]asic[ \t]{1,16}(?<secret>(?=[A-Za-z]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2})/g, group: true },
  // AWS access key ids.
  { re: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])/g, group: false },
  // JWTs (header.payload[.signature]).
  { re: /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?/g, group: false },
  // GitHub, GitLab, Slack, Google API tokens.
  { re: /(?<![A-Za-z0-9_-])(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35,})/g, group: false },
  // scheme://user:password@host
  { re: /(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}:\/\/[^\s:/@"'<>]+:(?<secret>[^\s/@"'<>]+)@/g, group: true },
];

/** Cheap pre-check: a line without any of these cannot hold a built-in secret. */
const TRIGGER = /passw|passphrase|secret|token|api[_-]?key|access[_-]?key|private|credential|auth|bearer|basic|AKIA|ASIA|ABIA|ACCA|eyJ|gh[pousr]_|github_pat_|glpat-|xox|AIza|:\/\//i;

export class RedactPatternError extends CompanionError {
  constructor(message: string) {
    super('E_REDACT_PATTERN', message);
    this.name = 'RedactPatternError';
  }
}

/** Compile one `redact.patterns` entry: `/source/flags` or a bare source (flags `g`). */
export function compilePattern(text: string): RegExp {
  const m = /^\/(.*)\/([a-z]*)$/s.exec(text);
  const source = m ? (m[1] as string) : text;
  const flags = new Set((m?.[2] ?? '').split('').filter(Boolean));
  for (const f of flags) if (!'imsu'.includes(f)) throw new RedactPatternError(`flag ${JSON.stringify(f)} is not allowed (use i, m, s, u)`);
  flags.add('g');
  if (source === '') throw new RedactPatternError('empty pattern');
  let re: RegExp;
  try {
    re = new RegExp(source, [...flags].join(''));
  } catch (err) {
    throw new RedactPatternError(`not a regular expression: ${(err as Error).message}`);
  }
  if (re.test('')) throw new RedactPatternError('matches the empty string');
  return re;
}

/** A config check for one pattern entry (null: fine). */
export function checkPattern(text: string): string | null {
  try {
    compilePattern(text);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export class Redactor {
  private readonly patterns: readonly Pattern[];
  private readonly custom: boolean;

  constructor(extra: readonly string[] = []) {
    const user = extra.map((t) => {
      const re = compilePattern(t);
      return { re, group: /\(\?<secret>/.test(re.source) };
    });
    this.patterns = [...BUILTIN, ...user];
    this.custom = user.length > 0;
  }

  /** The text with every secret masked (the same string when none). Never throws. */
  redact(s: string): string {
    if (!this.custom && !TRIGGER.test(s)) return s;
    let out = redactKeyValues(s);
    for (const p of this.patterns) out = applyPattern(out, p);
    return out;
  }

  /**
   * One pino log line (JSON text ending in a newline): every string in it redacted, and every
   * string under a key that names a secret (`password`, `token`, `authorization`, ...) masked
   * whole. A line that is not JSON is redacted as text.
   */
  redactLogLine(line: string): string {
    if (!this.custom && !TRIGGER.test(line)) return line;
    const nl = line.endsWith('\n') ? '\n' : '';
    let v: JsonValue;
    try {
      v = parseJson(nl ? line.slice(0, -1) : line);
    } catch {
      return this.redact(line);
    }
    return stringify(this.redactJson(v, false)) + nl;
  }

  private redactJson(v: JsonValue, secretKey: boolean): JsonValue {
    if (typeof v === 'string') return secretKey && v !== '' ? MASK : this.redact(v);
    if (v === null || typeof v !== 'object' || v instanceof LosslessNumber) return v;
    if (Array.isArray(v)) return (v as readonly JsonValue[]).map((x) => this.redactJson(x, secretKey));
    const out: Record<string, JsonValue> = {};
    const o = v as Readonly<Record<string, JsonValue>>;
    for (const k in o) {
      const x = this.redactJson(o[k] as JsonValue, secretKey || isSecretKey(k));
      if (k === '__proto__') Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true });
      else out[k] = x;
    }
    return out;
  }

  /**
   * The alert as forwarded with `redact.forwarded`: secrets masked in `output` and in every
   * string value of output_fields, the other top-level keys and the companion keys. The rule,
   * time, priority, source, hostname, tags and keys are never changed. Same object when nothing was masked.
   */
  redactAlert(a: Alert): Alert {
    let changed = false;
    const output = this.redact(a.output);
    if (output !== a.output) changed = true;
    let fields: Record<string, FieldValue> | null = null;
    if (a.outputFields) {
      for (const k in a.outputFields) {
        const x = a.outputFields[k] as FieldValue;
        if (typeof x !== 'string') continue;
        const r = this.redact(x);
        if (r === x) continue;
        fields ??= { ...a.outputFields };
        fields[k] = r;
      }
    }
    let extra: Record<string, JsonValue> | null = null;
    for (const k in a.extra) {
      const x = a.extra[k] as JsonValue;
      const r = this.redactJson(x, false);
      if (stringify(r) === stringify(x)) continue;
      extra ??= { ...a.extra };
      extra[k] = r;
    }
    let companion: Record<string, EnrichValue> | null = null;
    for (const k in a.companion) {
      const x = a.companion[k];
      if (typeof x !== 'string') continue;
      const r = this.redact(x);
      if (r === x) continue;
      companion ??= { ...a.companion };
      companion[k] = r;
    }
    if (!changed && !fields && !extra && !companion) return a;
    return createAlert({
      time: a.time,
      rule: a.rule,
      priority: a.priority,
      source: a.source,
      hostname: a.hostname,
      output,
      tags: a.tags,
      outputFields: fields ?? (a.outputFields as Record<string, FieldValue> | null),
      extra: extra ?? (a.extra as Record<string, JsonValue>),
      companion: companion ?? (a.companion as Record<string, EnrichValue>),
      origin: a.origin,
      receivedAtMs: a.receivedAtMs,
    });
  }
}

/** A log key naming a secret: its string value is masked whole. */
function isSecretKey(k: string): boolean {
  return k.length <= MAX_KEY && SECRET_KEY.test(k);
}
const SECRET_KEY = new RegExp(`${SECRET_WORD.source}|^(?:authorization|cookie|set-cookie|x-api-key)$`, 'i');

function applyPattern(s: string, p: Pattern): string {
  const re = p.re;
  re.lastIndex = 0;
  if (!re.test(s)) return s;
  re.lastIndex = 0;
  return s.replace(re, (...args: unknown[]) => {
    const match = args[0] as string;
    if (!p.group) return MASK;
    const groups = args[args.length - 1] as Record<string, string | undefined> | undefined;
    const secret = typeof groups === 'object' && groups !== null ? groups['secret'] : undefined;
    if (secret === undefined || secret === '') return MASK;
    // The secret group is the match's tail in every built-in; for user patterns take its last occurrence.
    const at = match.lastIndexOf(secret);
    return match.slice(0, at) + MASK + match.slice(at + secret.length);
  });
}

/**
 * `KEY=value`, `KEY: value`, `"key": "value"`, `--key value` where KEY contains a secret word:
 * the value is masked. A scan from each secret word (not a regular expression over the whole
 * text), the key bounded by MAX_KEY, and a masked value is never scanned again: linear.
 */
function redactKeyValues(s: string): string {
  SECRET_WORD.lastIndex = 0;
  let out = '';
  let copied = 0;
  let m: RegExpExecArray | null;
  while ((m = SECRET_WORD.exec(s)) !== null) {
    const wordEnd = m.index + m[0].length;
    // The key: back and forward over key characters (bounded).
    let start = m.index;
    while (start > 0 && m.index - start < MAX_KEY && KEY_CHAR.test(s[start - 1] as string)) start--;
    let i = wordEnd;
    while (i < s.length && i - wordEnd < MAX_KEY && KEY_CHAR.test(s[i] as string)) i++;
    // A command-line option (`--password VALUE`): starts with one or two dashes and a letter, after a blank or a quote.
    const isFlag = /^--?[A-Za-z]/.test(s.slice(start, start + 3)) && (start === 0 || /[\s"']/.test(s[start - 1] as string));
    if (s[i] === '"' || s[i] === "'") i++; // "password": ...
    let j = i;
    while (j < s.length && j - i < 16 && (s[j] === ' ' || s[j] === '\t')) j++;
    let valueStart: number;
    if (s[j] === '=' || s[j] === ':') {
      valueStart = j + 1;
      while (valueStart < s.length && valueStart - j < 16 && (s[valueStart] === ' ' || s[valueStart] === '\t')) valueStart++;
    } else if (isFlag && j > i) {
      valueStart = j; // --password VALUE
      if (s[valueStart] === '-') {
        SECRET_WORD.lastIndex = Math.max(SECRET_WORD.lastIndex, i);
        continue;
      }
    } else {
      SECRET_WORD.lastIndex = Math.max(SECRET_WORD.lastIndex, i);
      continue;
    }
    const q = s[valueStart];
    let valueEnd: number;
    let inner: number;
    if (q === '"' || q === "'") {
      // A quoted value to its closing quote; without one (cut short), to the end.
      inner = valueStart + 1;
      const close = s.indexOf(q, inner);
      valueEnd = close < 0 ? s.length : close;
    } else {
      inner = valueStart;
      valueEnd = inner;
      // The user part of a URL (`https://x-access-token:VALUE@host`) ends at the `@`.
      const stop = s.slice(Math.max(0, start - 3), start) === '://' ? URL_USERINFO_END : VALUE_END;
      while (valueEnd < s.length && !stop.test(s[valueEnd] as string)) valueEnd++;
      // A closing bracket that ends the value without its opener belongs to the text around it
      // (Falco's `(cmdline=... --password=x)`).
      while (valueEnd - inner > 1 && CLOSERS.has(s[valueEnd - 1] as string) && !unmasked(s.slice(inner, valueEnd - 1)).includes(CLOSERS.get(s[valueEnd - 1] as string) as string)) valueEnd--;
    }
    if (valueEnd > inner && s.slice(inner, valueEnd) !== MASK) {
      out += s.slice(copied, inner) + MASK;
      copied = valueEnd;
    }
    SECRET_WORD.lastIndex = Math.max(valueEnd, wordEnd);
  }
  return copied === 0 ? s : out + s.slice(copied);
}

/**
 * A sink whose alerts are redacted before it takes them (`redact.forwarded`). A transparent proxy:
 * the sink's other methods, its id and `instanceof` are untouched.
 */
export function redactingSink<S extends Sink>(sink: S, r: Redactor): S {
  const write = (a: Alert): Promise<void> => sink.write(r.redactAlert(a));
  return new Proxy(sink, {
    get(target, prop) {
      if (prop === 'write') return write;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
