/**
 * Pure conversion of a decoded `falco.outputs.response` (proto-loader with keepCase, longs as
 * String, enums as Number, defaults) into the same Alert the JSON path gives for the same event.
 *
 * - priority enum → name; Timestamp → 9-digit RFC 3339 time (exact ns).
 * - source: field 9, falling back to the deprecated enum (field 3) for Falco < 0.31.
 * - `output` holding the whole JSON alert (Falco with `json_output: true`): output text, typed
 *   output_fields (lossless big ints), tags and extra keys come from it; time, priority and rule
 *   from the proto stay authoritative.
 * - otherwise output_fields are strings: `"<NA>"` → null, known numeric/bool fields typed,
 *   `evt.time` time-of-day text → the exact ns integer of the Timestamp.
 */
import {
  InvalidAlertError,
  PRIORITIES,
  alertFromJson,
  createAlert,
  formatTimeNs,
  parsePriority,
  parseTime,
  type Alert,
  type FieldValue,
  type Origin,
  type Priority,
} from '../alert.js';
import { LosslessNumber, isJsonObject, parse, type JsonObject, type JsonValue } from '../json/lossless.js';
import { DEFAULT_INPUT_LIMITS, InputLimitError, limitAlertJson, markTruncated, type Cut, type InputLimits } from '../limits.js';

export const GRPC_ORIGIN: Origin = Object.freeze({ kind: 'grpc', component: 'source/grpc' });

/** `falco.schema.source` numbers → names (3 PLUGIN: the real name is in field 9). */
const SOURCE_ENUM: readonly (string | null)[] = ['syscall', 'k8s_audit', 'internal', null];

// ---------------------------------------------------------------------------------------------
// Field typing table (syscall source; Falco 0.40 and 0.44 supported fields)

/** Integer / float fields (INT*, UINT*, PORT, ABSTIME, RELTIME, DOUBLE), grouped by class. */
const NUMERIC_FIELDS = new Set<string>(
  [
    'evt.num evt.rawres evt.cpu evt.buflen evt.count evt.count.error evt.count.error.file evt.count.error.memory',
    'evt.count.error.net evt.count.error.other evt.count.exit evt.type.is evt.around evt.latency evt.latency.s',
    'evt.latency.ns evt.deltatime evt.deltatime.s evt.deltatime.ns evt.reltime evt.reltime.s evt.reltime.ns',
    'evt.rawtime evt.rawtime.s evt.rawtime.ns evt.wait_latency',
    'proc.pid proc.ppid proc.vpid proc.pvpid proc.apid proc.sid proc.pgid proc.vpgid proc.loginshellid proc.tty',
    'proc.cmdnargs proc.cmdlenargs proc.nchilds proc.nthreads proc.fdopencount proc.fdlimit proc.fdusage',
    'proc.vmsize proc.vmrss proc.vmswap proc.duration proc.pid.ts proc.ppid.ts proc.ppid.duration',
    'proc.exe_ino proc.exe_ino.ctime proc.exe_ino.mtime proc.exe_ino.ctime_duration_proc_start',
    'proc.exe_ino.ctime_duration_pidns_start proc.pidns_init_start_ts',
    'thread.tid thread.vtid thread.exectime thread.totexectime thread.pfmajor thread.pfminor thread.vmsize',
    'thread.vmrss thread.cpu thread.cpu.user thread.cpu.system',
    'fd.num fd.ino fd.dev fd.dev.major fd.dev.minor fd.port fd.sport fd.cport fd.lport fd.rport fd.proto',
    'user.uid user.loginuid group.gid syslog.facility syslog.severity',
    'container.start_ts container.duration',
  ]
    .join(' ')
    .split(' '),
);

/** Boolean fields (`true` / `false` text over gRPC). */
const BOOL_FIELDS = new Set<string>(
  [
    'evt.failed evt.is_async evt.is_io evt.is_io_read evt.is_io_write evt.is_open_create evt.is_open_exec',
    'evt.is_open_read evt.is_open_write evt.is_syslog evt.is_wait',
    'fd.connected fd.is_server fd.name_changed fd.is_lower_layer fd.is_upper_layer',
    'proc.is_container_healthcheck proc.is_container_liveness_probe proc.is_container_readiness_probe',
    'proc.is_exe_from_memfd proc.is_exe_lower_layer proc.is_exe_upper_layer proc.is_exe_writable',
    'proc.is_pgid_leader proc.is_sid_leader proc.is_vpgid_leader thread.ismain',
    'container.privileged container.host_pid container.host_network container.host_ipc',
  ]
    .join(' ')
    .split(' '),
);

/** Field name without its argument: `proc.apid[2]` → `proc.apid`. */
function baseName(key: string): string {
  const i = key.indexOf('[');
  return i < 0 ? key : key.slice(0, i);
}

const INT_TEXT = /^-?(?:0|[1-9]\d*)$/;
const NUM_TEXT = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** Number text → number when exact, else LosslessNumber (same rule as the lossless JSON parser). */
export function numberFromText(s: string): number | LosslessNumber | null {
  if (!NUM_TEXT.test(s)) return null;
  const n = Number(s);
  if (!Number.isFinite(n)) return null;
  if (INT_TEXT.test(s)) return Number.isSafeInteger(n) ? n : new LosslessNumber(s);
  return String(n) === s ? n : new LosslessNumber(s);
}

const TIME_OF_DAY = /^\d{2}:\d{2}:(\d{2})\.(\d{9})$/;

/**
 * Type one gRPC output_fields value. `timeNs` is the event time from the Timestamp: `evt.time`
 * given as time-of-day text becomes that exact ns integer when seconds and nanoseconds agree
 * (hours and minutes may differ by the Falco host's time zone).
 */
export function typeFieldValue(key: string, value: string, timeNs: bigint | null): FieldValue {
  if (value === '<NA>') return null;
  if (key === 'evt.time') {
    const m = TIME_OF_DAY.exec(value);
    if (m && timeNs !== null) {
      const sec = ((timeNs / 1_000_000_000n) % 60n + 60n) % 60n;
      const nanos = ((timeNs % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
      if (BigInt(m[1] as string) === sec && BigInt(m[2] as string) === nanos) return new LosslessNumber(timeNs.toString());
    }
    return numberFromText(value) ?? value;
  }
  if (key === 'evt.time.iso8601') {
    const t = parseTime(value);
    if (t) return new LosslessNumber(t.ns.toString());
    return numberFromText(value) ?? value;
  }
  const base = baseName(key);
  if (NUMERIC_FIELDS.has(base)) return numberFromText(value) ?? value;
  if (BOOL_FIELDS.has(base)) {
    if (value === 'true') return true;
    if (value === 'false') return false;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Reading the decoded message defensively (it comes off the wire)

function str(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  return typeof v === 'string' ? v : '';
}

function priorityOf(v: unknown): Priority {
  if (typeof v === 'number' && Number.isInteger(v)) {
    const p = PRIORITIES[v];
    if (p) return p;
  } else if (typeof v === 'string') {
    const p = parsePriority(v);
    if (p) return p;
  }
  throw new InvalidAlertError(`priority ${JSON.stringify(v)?.slice(0, 40) ?? 'undefined'} is not a falco.schema.priority value (0..7)`);
}

function sourceOf(o: Record<string, unknown>): string | null {
  const s = str(o, 'source');
  if (s !== '') return s;
  const e = o['source_deprecated'];
  if (typeof e === 'number') return SOURCE_ENUM[e] ?? null;
  if (typeof e === 'string') {
    const lower = e.toLowerCase();
    return lower === 'plugin' ? null : lower;
  }
  return null;
}

/** Timestamp {seconds: "123" | number, nanos} → ns, or null when absent/invalid. */
export function timestampNs(v: unknown): bigint | null {
  if (typeof v !== 'object' || v === null) return null;
  const t = v as Record<string, unknown>;
  const s = t['seconds'];
  const n = t['nanos'] ?? 0;
  let sec: bigint;
  if (typeof s === 'string' && /^-?\d{1,19}$/.test(s)) sec = BigInt(s);
  else if (typeof s === 'number' && Number.isSafeInteger(s)) sec = BigInt(s);
  else if (s === undefined || s === null) sec = 0n;
  else if (typeof s === 'object' && s !== null && /^-?\d{1,19}$/.test(String(s))) sec = BigInt(String(s)); // Long
  else return null;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 999_999_999) return null;
  // RFC 3339 years 0001..9999 only.
  if (sec < -62_135_596_800n || sec > 253_402_300_799n) return null;
  return sec * 1_000_000_000n + BigInt(n);
}

/** The `output` field holds a whole Falco JSON alert (json_output: true)? Returns it parsed, or null. */
export function jsonAlertInOutput(output: string): Record<string, JsonValue> | null {
  const s = output.trim();
  if (s.length < 2 || s.charCodeAt(0) !== 123 /* { */ || s.charCodeAt(s.length - 1) !== 125 /* } */) return null;
  let v: JsonValue;
  try {
    v = parse(s);
  } catch {
    return null;
  }
  if (!isJsonObject(v)) return null;
  // A Falco alert has at least rule and priority as strings, and output or output_fields.
  if (typeof v['rule'] !== 'string' || typeof v['priority'] !== 'string') return null;
  if (v['output'] === undefined && v['output_fields'] === undefined) return null;
  return { ...v };
}

export interface ConvertOptions {
  readonly origin?: Origin;
  readonly receivedAtMs?: number;
  /** Input limits (src/limits.ts; default DEFAULT_INPUT_LIMITS): over-long values are cut and the alert marked. */
  readonly limits?: InputLimits;
  /** Told what the limits cut (counting and logging at the source). */
  readonly onCuts?: (cuts: readonly Cut[], rule: string) => void;
}

/** Apply the limits to a parsed alert document; throws InputLimitError (an InvalidAlertError) when it is refused. */
function limited(doc: JsonObject, opts: ConvertOptions): { doc: JsonObject; cuts: readonly Cut[] } {
  const r = limitAlertJson(doc, opts.limits ?? DEFAULT_INPUT_LIMITS);
  if (!r.ok) throw new InputLimitError(r.limit, r.reason);
  return { doc: r.value as JsonObject, cuts: r.cuts };
}

function reported(a: Alert, cuts: readonly Cut[], opts: ConvertOptions): Alert {
  if (cuts.length === 0) return a;
  opts.onCuts?.(cuts, a.rule);
  return markTruncated(a, cuts);
}

/**
 * Convert one decoded response. Throws InvalidAlertError (with a precise reason) when the
 * message cannot be an alert; never throws anything else for any input.
 */
export function responseToAlert(msg: unknown, opts: ConvertOptions = {}): Alert {
  const origin = opts.origin ?? GRPC_ORIGIN;
  const receivedAtMs = opts.receivedAtMs ?? Date.now();
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new InvalidAlertError('response is not a message object');
  const o = msg as Record<string, unknown>;
  const priority = priorityOf(o['priority']);
  const timeNs = timestampNs(o['time']);
  const rule = str(o, 'rule');
  const output = str(o, 'output');
  const hostname = str(o, 'hostname');
  const source = sourceOf(o);
  const rawTags = o['tags'];
  const protoTags = Array.isArray(rawTags) ? rawTags.filter((t): t is string => typeof t === 'string') : [];

  const embedded = jsonAlertInOutput(output);
  if (embedded) {
    const merged: Record<string, JsonValue> = { ...embedded };
    if (timeNs !== null) merged['time'] = formatTimeNs(timeNs);
    merged['priority'] = priority;
    if (rule.trim() !== '') merged['rule'] = rule;
    if (source !== null && typeof merged['source'] !== 'string') merged['source'] = source;
    if (hostname !== '' && typeof merged['hostname'] !== 'string') merged['hostname'] = hostname;
    if (merged['tags'] === undefined && protoTags.length > 0) merged['tags'] = protoTags;
    if (merged['output_fields'] !== undefined && !isJsonObject(merged['output_fields'])) {
      // Unexpected shape: fall back to the proto's string map rather than rejecting the alert.
      merged['output_fields'] = typedFields(o['output_fields'], timeNs) as unknown as JsonValue;
    }
    if (merged['output'] !== undefined && typeof merged['output'] !== 'string') merged['output'] = output;
    const lim = limited(merged, opts);
    return reported(alertFromJson(lim.doc, origin, receivedAtMs), lim.cuts, opts);
  }

  if (timeNs === null) throw new InvalidAlertError('response.time is missing or not a valid Timestamp');
  if (rule.trim() === '') throw new InvalidAlertError('response.rule is empty');
  // The same limits as a JSON alert: the proto's output, tags and output_fields map as one document.
  const lim = limited({ rule, source, hostname, output, tags: protoTags, output_fields: typedFields(o['output_fields'], timeNs) }, opts);
  const alert = createAlert({
    time: formatTimeNs(timeNs),
    rule: lim.doc['rule'] as string,
    priority,
    source: lim.doc['source'] as string | null,
    hostname: hostname === '' ? null : (lim.doc['hostname'] as string),
    output: lim.doc['output'] as string,
    // gRPC cannot say "no tags": internal messages carry none in JSON, so keep that shape.
    tags: protoTags.length === 0 && source === 'internal' ? null : (lim.doc['tags'] as string[]),
    outputFields: lim.doc['output_fields'] as Record<string, FieldValue>,
    origin,
    receivedAtMs,
  });
  return reported(alert, lim.cuts, opts);
}

function typedFields(v: unknown, timeNs: bigint | null): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out;
  const m = v as Record<string, unknown>;
  for (const k of Object.keys(m)) {
    const x = m[k];
    const val = typeof x === 'string' ? typeFieldValue(k, x, timeNs) : x === null || x === undefined ? null : String(x);
    if (k === '__proto__') Object.defineProperty(out, k, { value: val, enumerable: true, writable: true, configurable: true });
    else out[k] = val;
  }
  return out;
}
