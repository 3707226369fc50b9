/**
 * Falco `http_output` receiver logic: turn one request body into an Alert, or into a precise,
 * coded rejection (HTTP 400 body `{ "error", "reason", "hint" }`) that tells the operator what is
 * wrong with the sender, including the usual falco.yaml mistakes.
 *
 * The receiver component (`source/http`: limits, acks, refusals) is `HttpServer` in
 * src/server/http.ts, which uses this module; the listener (TLS, timeouts, lifecycle) is
 * src/server/listener.ts.
 */
import { InvalidAlertError, PRIORITIES, alertFromJson, parsePriority, parseTime, type Alert, type Origin } from '../alert.js';
import { JsonSyntaxError, MAX_DEPTH, isJsonObject, parse, type JsonValue } from '../json/lossless.js';
import { DEFAULT_INPUT_LIMITS, limitAlertJson, markTruncated, type Cut, type InputLimits } from '../limits.js';

/** Stable rejection codes (metric label `code`, response `error`). */
export type RejectCode =
  | 'empty_body'
  | 'invalid_encoding'
  | 'invalid_json'
  | 'text_output'
  | 'form_encoded'
  | 'not_object'
  | 'batch'
  | 'missing_field'
  | 'bad_priority'
  | 'bad_time'
  | 'wrong_type'
  | 'invalid_alert'
  | 'too_deep'
  | 'unsupported_encoding';

export interface Rejection {
  readonly error: RejectCode;
  readonly reason: string;
  readonly hint?: string;
}

export type DecodeResult =
  /**
   * `text`: the body as decoded text when the alert is exactly what it says (the spool keeps it as
   * the payload); absent when the input limits cut something (`cuts`: the alert is marked
   * companion.truncated, and the payload is the alert re-serialised).
   */
  | { readonly ok: true; readonly alert: Alert; readonly text?: string; readonly warning?: string; readonly cuts?: readonly Cut[] }
  | { readonly ok: false; readonly rejection: Rejection };

/** Warning attached to an accepted alert that has no output_fields (Falco 0.41+ can switch them off). */
export const NO_OUTPUT_FIELDS_HINT =
  'alert has no output_fields: enrichment and detections need them; in falco.yaml do not disable output_fields ' +
  '(keep json_include_output_fields / the default), and set json_include_output_property: true';

const TEXT_LINE = new RegExp(
  `^\\s*(?:\\d{2}:\\d{2}:\\d{2}\\.\\d+|\\d{4}-\\d{2}-\\d{2}T[0-9:.]+(?:Z|[+-]\\d{2}:?\\d{2})?):\\s+(?:${PRIORITIES.join('|')}|Info)\\b`,
  'i',
);
const FORM_BODY = /^[A-Za-z0-9_.~%+-]+=[^&]*(?:&[A-Za-z0-9_.~%+-]+=[^&]*)*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function excerpt(s: string, n = 60): string {
  const t = s.length > n ? s.slice(0, n) + '…' : s;
  return JSON.stringify(t);
}

/**
 * Decode one http_output body. Never throws: every problem is a {@link Rejection}.
 * `contentType` is only used for hints: Falco always sends JSON, and curl users often forget the
 * header, so every type is parsed as JSON.
 */
export function decodeFalcoBody(body: Buffer, contentType: string | undefined, origin: Origin, receivedAtMs = Date.now(), limits: InputLimits = DEFAULT_INPUT_LIMITS): DecodeResult {
  const ct = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return reject('invalid_encoding', 'body is not valid UTF-8 text', 'Falco sends one JSON alert per request (Content-Type: application/json)');
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  // (A body that starts like an object is not blank: no trimmed copy of it.)
  if (text.charCodeAt(0) !== 123 /* { */ && text.trim() === '') {
    return reject('empty_body', 'request body is empty', 'POST one Falco JSON alert per request (json_output: true in falco.yaml)');
  }

  let value: JsonValue;
  try {
    value = parse(text);
  } catch (err) {
    const pos = err instanceof JsonSyntaxError ? err.position : 0;
    if (err instanceof JsonSyntaxError && err.message.startsWith('nesting too deep')) {
      return reject('too_deep', `JSON nested deeper than the parser accepts (${MAX_DEPTH} levels) at position ${pos}`, 'Falco sends flat alerts: output_fields values are never objects');
    }
    if (TEXT_LINE.test(text)) {
      return reject(
        'text_output',
        `body is a Falco text alert, not JSON: ${excerpt(text.trim())}`,
        'Falco is writing text alerts: set json_output: true (and json_include_output_property: true) in falco.yaml',
      );
    }
    if (ct === 'application/x-www-form-urlencoded' || ct === 'multipart/form-data' || FORM_BODY.test(text.trim())) {
      return reject(
        'form_encoded',
        `body is form-encoded (${ct || 'key=value pairs'}), not a JSON alert`,
        "send the alert as the raw JSON body with Content-Type: application/json (curl: -H 'Content-Type: application/json' --data-binary @alert.json)",
      );
    }
    const msg = err instanceof Error ? err.message : String(err);
    return reject(
      'invalid_json',
      `body is not valid JSON at position ${pos}: ${msg.replace(/ at position \d+$/, '')}`,
      ct && ct !== 'application/json' && ct !== 'text/plain'
        ? `Content-Type is ${ct}; Falco sends application/json`
        : 'Falco sends one JSON alert per request with json_output: true',
    );
  }

  // Input limits right after parsing (src/limits.ts): values cut and marked, too deep rejected.
  const lim = limitAlertJson(value, limits);
  if (!lim.ok) return reject('too_deep', lim.reason, 'Falco sends flat alerts: output_fields values are never objects');
  try {
    const decoded = alertFromJson(lim.value, origin, receivedAtMs, true);
    if (lim.cuts.length === 0) {
      if (decoded.outputFields === null) return { ok: true, alert: decoded, text, warning: NO_OUTPUT_FIELDS_HINT };
      return { ok: true, alert: decoded, text };
    }
    const alert = markTruncated(decoded, lim.cuts);
    if (alert.outputFields === null) return { ok: true, alert, warning: NO_OUTPUT_FIELDS_HINT, cuts: lim.cuts };
    return { ok: true, alert, cuts: lim.cuts };
  } catch (err) {
    if (!(err instanceof InvalidAlertError)) {
      return reject('invalid_alert', err instanceof Error ? err.message : String(err));
    }
    const code = classify(value);
    let hint = err.hint ?? undefined;
    if (hint === undefined && isJsonObject(value) && value['output_fields'] === undefined && code === 'missing_field') {
      hint = NO_OUTPUT_FIELDS_HINT;
    }
    return reject(code, err.message, hint);
  }
}

function reject(error: RejectCode, reason: string, hint?: string): DecodeResult {
  return { ok: false, rejection: hint === undefined ? { error, reason } : { error, reason, hint } };
}

/** Which check alertFromJson failed, mirroring its order. */
function classify(v: JsonValue): RejectCode {
  if (Array.isArray(v)) return 'batch';
  if (!isJsonObject(v)) return 'not_object';
  for (const k of ['rule', 'priority', 'time']) {
    if (v[k] === undefined || v[k] === null) return 'missing_field';
  }
  const p = v['priority'];
  if (typeof v['rule'] !== 'string') return 'wrong_type';
  if (typeof p !== 'string') return 'wrong_type';
  if (typeof v['rule'] === 'string' && v['rule'].trim() === '') return 'missing_field';
  if (!parsePriority(p)) return 'bad_priority';
  const t = v['time'];
  if (typeof t !== 'string') return 'wrong_type';
  if (!parseTime(t)) return 'bad_time';
  return 'wrong_type';
}
