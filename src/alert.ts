/**
 * The one normalized, immutable Alert shared by every source, stage and sink.
 *
 * Normalisation happens once, at the edge (sources call {@link alertFromJson} or build an
 * {@link AlertInit} and call {@link createAlert}); afterwards nothing mutates an Alert. Enrichers
 * return a new Alert with more `companion.*` keys ({@link withEnrichment}).
 */
import { CompanionError } from './errors.js';
import { LosslessNumber, deepFreeze, isJsonObject, stringify, type JsonObject, type JsonValue } from './json/lossless.js';

/** Falco priorities, most severe first: the index is the proto enum number (0 EMERGENCY ... 7 DEBUG). */
export const PRIORITIES = [
  'Emergency',
  'Alert',
  'Critical',
  'Error',
  'Warning',
  'Notice',
  'Informational',
  'Debug',
] as const;
export type Priority = (typeof PRIORITIES)[number];

const PRIORITY_BY_LOWER = new Map<string, Priority>(PRIORITIES.map((p) => [p.toLowerCase(), p]));
PRIORITY_BY_LOWER.set('info', 'Informational');

/** Case-insensitive priority name (Falco JSON `Informational`, rules files `INFO`), or null. */
export function parsePriority(name: string): Priority | null {
  return PRIORITY_BY_LOWER.get(name.trim().toLowerCase()) ?? null;
}

/** Severity rank: 0 = Emergency (most severe) ... 7 = Debug. Compare by name, never sidekick numbers. */
export function priorityRank(p: Priority): number {
  return PRIORITIES.indexOf(p);
}

/** True when `p` is at least as severe as `min`. */
export function atLeast(p: Priority, min: Priority): boolean {
  return priorityRank(p) <= priorityRank(min);
}

/** A value in output_fields: typed as Falco's JSON gives it, big integers exact. */
export type FieldValue = string | number | boolean | null | LosslessNumber;
export type OutputFields = Readonly<Record<string, FieldValue>>;

/** Values the companion adds (`companion.*` keys when serialised). Keep them compact (< 512 chars). */
export type EnrichValue = string | number | boolean | null;

export type OriginKind = 'http' | 'grpc' | 'file' | 'stdin' | 'replay' | 'test' | 'detector' | 'metrics';

export interface Origin {
  readonly kind: OriginKind;
  /** Component id that produced it, e.g. `source/http`. */
  readonly component: string;
}

export interface Alert {
  /** RFC 3339 UTC with exactly 9 fractional digits. */
  readonly time: string;
  /** Event time in nanoseconds since the epoch, exact. Detection windows run on this. */
  readonly timeNs: bigint;
  readonly rule: string;
  readonly priority: Priority;
  /** `syscall`, `k8s_audit`, `internal`, plugin names; null when the sender had none (Falco < 0.30). */
  readonly source: string | null;
  /** null when the sender had none (Falco < 0.32). */
  readonly hostname: string | null;
  readonly output: string;
  /** null when the sender had none (internal messages, old Falco). */
  readonly tags: readonly string[] | null;
  /** null when the sender had none (Falco 0.41+ can switch them off). Key order kept. */
  readonly outputFields: OutputFields | null;
  /**
   * The output fields the stages read per alert (mapping, enrichers, detectors), as the slots of
   * one fixed-shape record built with the alert ({@link knownFields}).
   */
  readonly known: KnownFields;
  /** Other top-level keys the sender included (`message`, `uuid`, ...), passed through untouched. */
  readonly extra: JsonObject;
  /** What the companion added, keys without the `companion.` prefix. */
  readonly companion: Readonly<Record<string, EnrichValue>>;
  readonly origin: Origin;
  /** Wall-clock ms when the companion received it (for latency metrics only). */
  readonly receivedAtMs: number;
}

// ---------------------------------------------------------------------------------------------
// Known fields

/** An ancestor field by level n = 1..9 (`proc.apid[n]` at index n; index 0 unused), null when the alert has none. */
export type AncestorSlots = readonly (FieldValue | undefined)[] | null;

/**
 * The output fields the companion's stages read per alert (signal mapping and its predicates,
 * socket facts, enrichers, detectors), as the slots of one fixed-shape object: every alert's
 * record has the same hidden class, so a read is one monomorphic property load instead of a
 * lookup in the alert's own (per-rule, often dictionary-mode) key set, absent keys included. Built
 * once with the alert in one pass over its keys; each slot holds the value exactly as in
 * `outputFields` (undefined when absent). Fields not here are read from `outputFields`.
 */
export interface KnownFields {
  readonly containerId: FieldValue | undefined;
  readonly containerName: FieldValue | undefined;
  readonly containerImage: FieldValue | undefined;
  readonly imageRepository: FieldValue | undefined;
  readonly imageTag: FieldValue | undefined;
  readonly imageDigest: FieldValue | undefined;
  readonly containerMounts: FieldValue | undefined;
  readonly containerPrivileged: FieldValue | undefined;
  readonly containerIp: FieldValue | undefined;
  readonly k8sNs: FieldValue | undefined;
  readonly k8sPod: FieldValue | undefined;
  readonly k8sPodLabels: FieldValue | undefined;
  readonly k8sPodIp: FieldValue | undefined;
  readonly evtType: FieldValue | undefined;
  readonly evtRes: FieldValue | undefined;
  readonly procPid: FieldValue | undefined;
  readonly procVpid: FieldValue | undefined;
  readonly procPpid: FieldValue | undefined;
  readonly procSid: FieldValue | undefined;
  readonly procName: FieldValue | undefined;
  readonly procExepath: FieldValue | undefined;
  readonly procExe: FieldValue | undefined;
  readonly procCmdline: FieldValue | undefined;
  readonly procPname: FieldValue | undefined;
  readonly procPexepath: FieldValue | undefined;
  readonly procPexe: FieldValue | undefined;
  /** `proc.apid[n]`, `proc.aname[n]`, `proc.aexepath[n]` at index n. */
  readonly procApid: AncestorSlots;
  readonly procAname: AncestorSlots;
  readonly procAexepath: AncestorSlots;
  readonly fdName: FieldValue | undefined;
  readonly fdType: FieldValue | undefined;
  readonly fdL4proto: FieldValue | undefined;
  readonly fdCip: FieldValue | undefined;
  readonly fdCport: FieldValue | undefined;
  readonly fdSip: FieldValue | undefined;
  readonly fdSport: FieldValue | undefined;
  readonly fdLip: FieldValue | undefined;
  readonly fdLport: FieldValue | undefined;
  readonly fdRip: FieldValue | undefined;
  readonly fdRport: FieldValue | undefined;
  readonly fdCipName: FieldValue | undefined;
  readonly fdSipName: FieldValue | undefined;
  readonly fdRipName: FieldValue | undefined;
}

/** Output field name → slot of {@link KnownFields} (the ancestor fields are handled apart). */
const KNOWN_SLOTS: Readonly<Record<Exclude<keyof KnownFields, 'procApid' | 'procAname' | 'procAexepath'>, string>> = {
  containerId: 'container.id',
  containerName: 'container.name',
  containerImage: 'container.image',
  imageRepository: 'container.image.repository',
  imageTag: 'container.image.tag',
  imageDigest: 'container.image.digest',
  containerMounts: 'container.mounts',
  containerPrivileged: 'container.privileged',
  containerIp: 'container.ip',
  k8sNs: 'k8s.ns.name',
  k8sPod: 'k8s.pod.name',
  k8sPodLabels: 'k8s.pod.labels',
  k8sPodIp: 'k8s.pod.ip',
  evtType: 'evt.type',
  evtRes: 'evt.res',
  procPid: 'proc.pid',
  procVpid: 'proc.vpid',
  procPpid: 'proc.ppid',
  procSid: 'proc.sid',
  procName: 'proc.name',
  procExepath: 'proc.exepath',
  procExe: 'proc.exe',
  procCmdline: 'proc.cmdline',
  procPname: 'proc.pname',
  procPexepath: 'proc.pexepath',
  procPexe: 'proc.pexe',
  fdName: 'fd.name',
  fdType: 'fd.type',
  fdL4proto: 'fd.l4proto',
  fdCip: 'fd.cip',
  fdCport: 'fd.cport',
  fdSip: 'fd.sip',
  fdSport: 'fd.sport',
  fdLip: 'fd.lip',
  fdLport: 'fd.lport',
  fdRip: 'fd.rip',
  fdRport: 'fd.rport',
  fdCipName: 'fd.cip.name',
  fdSipName: 'fd.sip.name',
  fdRipName: 'fd.rip.name',
};
type PlainSlot = keyof typeof KNOWN_SLOTS;
const SLOT_NAMES = Object.keys(KNOWN_SLOTS) as PlainSlot[];
/** Field name → index into the scratch values (plain slots first, then apid/aname/aexepath 1..9). */
const SCRATCH = SLOT_NAMES.length + 27;
const SLOT_INDEX = new Map<string, number>(SLOT_NAMES.map((k, i) => [KNOWN_SLOTS[k], i]));
const ANC = SLOT_NAMES.length;
const ANC_FIELDS = ['proc.apid', 'proc.aname', 'proc.aexepath'] as const;
ANC_FIELDS.forEach((f, j) => {
  for (let n = 1; n <= 9; n++) SLOT_INDEX.set(`${f}[${n}]`, ANC + j * 9 + n - 1);
});
/** The slot of a field name (what {@link knownField} reads), or undefined for fields outside the record. */
export function knownSlot(field: string): number | undefined {
  return SLOT_INDEX.get(field);
}

/** One ancestor field's levels from the scratch values, null when the alert has none. */
function ancestors(v: (FieldValue | undefined)[], j: number): AncestorSlots {
  const base = ANC + j * 9;
  let out: (FieldValue | undefined)[] | null = null;
  for (let n = 1; n <= 9; n++) {
    const x = v[base + n - 1];
    if (x !== undefined) (out ??= new Array<FieldValue | undefined>(10).fill(undefined))[n] = x;
  }
  return out;
}

/** The record of an alert without output fields (shared). */
export const NO_KNOWN_FIELDS: KnownFields = Object.freeze(record(new Array<FieldValue | undefined>(SCRATCH).fill(undefined)));

/** The slots from the scratch values, in one literal: one hidden class for every record. Positions follow KNOWN_SLOTS' order (test/alert.test.ts holds them to it). */
function record(v: (FieldValue | undefined)[]): KnownFields {
  return {
    containerId: v[0],
    containerName: v[1],
    containerImage: v[2],
    imageRepository: v[3],
    imageTag: v[4],
    imageDigest: v[5],
    containerMounts: v[6],
    containerPrivileged: v[7],
    containerIp: v[8],
    k8sNs: v[9],
    k8sPod: v[10],
    k8sPodLabels: v[11],
    k8sPodIp: v[12],
    evtType: v[13],
    evtRes: v[14],
    procPid: v[15],
    procVpid: v[16],
    procPpid: v[17],
    procSid: v[18],
    procName: v[19],
    procExepath: v[20],
    procExe: v[21],
    procCmdline: v[22],
    procPname: v[23],
    procPexepath: v[24],
    procPexe: v[25],
    procApid: ancestors(v, 0),
    procAname: ancestors(v, 1),
    procAexepath: ancestors(v, 2),
    fdName: v[26],
    fdType: v[27],
    fdL4proto: v[28],
    fdCip: v[29],
    fdCport: v[30],
    fdSip: v[31],
    fdSport: v[32],
    fdLip: v[33],
    fdLport: v[34],
    fdRip: v[35],
    fdRport: v[36],
    fdCipName: v[37],
    fdSipName: v[38],
    fdRipName: v[39],
  };
}

/** The known-fields record of a set of output fields (one pass over its keys). */
export function knownFields(fields: OutputFields | null): KnownFields {
  if (fields === null) return NO_KNOWN_FIELDS;
  const v = new Array<FieldValue | undefined>(SCRATCH);
  let any = false;
  for (const k in fields) {
    const i = SLOT_INDEX.get(k);
    if (i !== undefined) {
      v[i] = fields[k];
      any = true;
    }
  }
  return any ? Object.freeze(record(v)) : NO_KNOWN_FIELDS;
}

/** A field by name through the record when it has a slot (`slot` from {@link knownSlot}), else from outputFields. */
export function knownField(a: Alert, slot: number): FieldValue | undefined {
  const k = a.known;
  if (slot < ANC) return k[SLOT_NAMES[slot] as PlainSlot];
  const j = Math.floor((slot - ANC) / 9);
  const anc = j === 0 ? k.procApid : j === 1 ? k.procAname : k.procAexepath;
  return anc === null ? undefined : anc[((slot - ANC) % 9) + 1];
}

export interface AlertInit {
  time: string;
  rule: string;
  priority: Priority;
  source?: string | null;
  hostname?: string | null;
  output?: string;
  tags?: readonly string[] | null;
  outputFields?: Record<string, FieldValue> | null;
  extra?: Record<string, JsonValue>;
  companion?: Record<string, EnrichValue>;
  origin: Origin;
  receivedAtMs?: number;
}

/** Why an input is not an alert. `reason` is precise and safe to return in a 400 body. */
export class InvalidAlertError extends CompanionError {
  readonly hint: string | null;
  constructor(reason: string, hint: string | null = null) {
    super('E_INVALID_ALERT', reason);
    this.name = 'InvalidAlertError';
    this.hint = hint;
  }
}

// ---------------------------------------------------------------------------------------------
// Time

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d{2}:?\d{2})$/;

/** 400 Gregorian years (146097 days) in ms. */
const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;
/** 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z in seconds since the epoch. */
const MIN_RFC3339_SECONDS = -62_167_219_200n;
const MAX_RFC3339_SECONDS = 253_402_300_800n;

export interface ParsedTime {
  /** Canonical `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`. */
  readonly text: string;
  readonly ns: bigint;
}

/** Parse an RFC 3339 timestamp into exact ns and the canonical 9-digit UTC text; null if invalid. */
export function parseTime(s: string): ParsedTime | null {
  return canonicalTime(s) ?? parseTimeText(s);
}

/** Days per month (index 1..12; February apart). */
const MONTH_DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** `d` digits at `at` as a number, or -1 when one is not a digit. */
function digits(s: string, at: number, d: number): number {
  let n = 0;
  for (let i = at; i < at + d; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/**
 * What Falco sends, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` from 1970 on, read without a regular
 * expression; null for anything else (then {@link parseTimeText} decides).
 */
function canonicalTime(s: string): ParsedTime | null {
  if (s.length !== 30 || s.charCodeAt(29) !== 90 /* Z */ || s.charCodeAt(10) !== 84 /* T */ || s.charCodeAt(19) !== 46 /* . */) return null;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(13) !== 58 || s.charCodeAt(16) !== 58) return null;
  const y = digits(s, 0, 4);
  const mo = digits(s, 5, 2);
  const d = digits(s, 8, 2);
  const h = digits(s, 11, 2);
  const mi = digits(s, 14, 2);
  const se = digits(s, 17, 2);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59 || digits(s, 20, 9) < 0) return null;
  if (d > (mo === 2 ? (y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0) ? 29 : 28) : (MONTH_DAYS[mo] as number))) return null;
  const sec = Date.UTC(y, mo - 1, d, h, mi, se) / 1000;
  return { ns: BigInt(`${sec}${s.slice(20, 29)}`), text: s };
}

function parseTimeText(s: string): ParsedTime | null {
  const m = RFC3339.exec(s);
  if (!m) return null;
  const [, y, mo, d, h, mi, se, frac = '', zone = 'Z'] = m;
  const year = Number(y);
  // Date.UTC reads years 0..99 as 1900..1999: shift by one 400-year Gregorian cycle and back.
  const day = year < 100 ? Date.UTC(year + 400, Number(mo) - 1, Number(d)) - GREGORIAN_CYCLE_MS : Date.UTC(year, Number(mo) - 1, Number(d));
  if (!Number.isFinite(day)) return null;
  // The date is checked alone, so a leap second (23:59:60) does not roll it over into the next day.
  const check = new Date(day);
  if (check.getUTCDate() !== Number(d) || check.getUTCMonth() !== Number(mo) - 1 || Number(h) > 23 || Number(mi) > 59 || Number(se) > 60) {
    return null;
  }
  const ms = day + ((Number(h) * 60 + Number(mi)) * 60 + Number(se)) * 1000;
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    offsetMin = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
  }
  const seconds = BigInt(ms / 1000 - offsetMin * 60);
  // Its UTC form must be a 4-digit year too (9999-12-31T23:00:00-07:00 is not).
  if (seconds >= MAX_RFC3339_SECONDS || seconds < MIN_RFC3339_SECONDS) return null;
  const nanos = BigInt(frac.padEnd(9, '0'));
  const ns = seconds * 1_000_000_000n + nanos;
  // Already canonical (what Falco sends): the text is its own canonical form.
  const canonical = zone === 'Z' && frac.length === 9 && se !== '60' && s.length === 30 && s[10] === 'T';
  return { ns, text: canonical ? s : formatTimeNs(ns) };
}

/** Format ns since the epoch as RFC 3339 UTC with 9 fractional digits. */
export function formatTimeNs(ns: bigint): string {
  let sec = ns / 1_000_000_000n;
  let frac = ns % 1_000_000_000n;
  if (frac < 0n) {
    frac += 1_000_000_000n;
    sec -= 1n;
  }
  const iso = new Date(Number(sec) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z
  return `${iso.slice(0, 19)}.${frac.toString().padStart(9, '0')}Z`;
}

// ---------------------------------------------------------------------------------------------
// Construction

const EMPTY: Readonly<Record<string, never>> = Object.freeze({});

/** Build a frozen Alert from already-validated parts. */
export function createAlert(init: AlertInit): Alert {
  const t = parseTime(init.time);
  if (!t) throw new InvalidAlertError(`"time" is not an RFC 3339 timestamp: ${JSON.stringify(init.time).slice(0, 80)}`);
  return buildAlert(init, t, false);
}

/**
 * Freeze an alert. `owned`: the caller hands over fresh objects nobody else holds (the JSON
 * parser's output: output_fields and extra are built per alert), so they are frozen in place instead of copied.
 */
function buildAlert(init: AlertInit, t: ParsedTime, owned: boolean, known?: KnownFields): Alert {
  const fields = init.outputFields ?? null;
  const outputFields = fields ? Object.freeze(owned ? fields : { ...fields }) : null;
  const alert: Alert = {
    time: t.text,
    timeNs: t.ns,
    rule: init.rule,
    priority: init.priority,
    source: init.source ?? null,
    hostname: init.hostname ?? null,
    output: init.output ?? '',
    tags: init.tags ? Object.freeze(owned ? init.tags : [...init.tags]) : null,
    outputFields,
    known: known ?? knownFields(outputFields),
    extra: init.extra ? deepFreeze(owned ? init.extra : { ...init.extra }) : EMPTY,
    companion: init.companion ? Object.freeze({ ...init.companion }) : EMPTY,
    origin: Object.freeze({ ...init.origin }),
    receivedAtMs: init.receivedAtMs ?? Date.now(),
  };
  return Object.freeze(alert);
}

const KNOWN_KEYS = new Set(['time', 'rule', 'priority', 'source', 'hostname', 'output', 'tags', 'output_fields']);

/**
 * Normalise a parsed Falco JSON alert (http_output body, stdout/file line, the JSON inside gRPC
 * `output`). Throws InvalidAlertError with a precise reason and, where the body shows a
 * misconfigured Falco, a hint. `owned`: `v` is a fresh parse nobody else holds (a source's own
 * `parse(text)`): its `output_fields` object and `tags` array become the alert's, frozen in place
 * instead of copied.
 */
export function alertFromJson(v: JsonValue, origin: Origin, receivedAtMs = Date.now(), owned = false): Alert {
  if (!isJsonObject(v)) {
    throw new InvalidAlertError(
      `body is a JSON ${Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v === 'object' ? 'number' : typeof v}, not an object`,
      Array.isArray(v) ? 'Falco sends one alert per request; batches are not part of its http_output' : null,
    );
  }
  const o = v;
  const rule = o['rule'];
  const priority = o['priority'];
  const time = o['time'];
  if (rule === undefined || rule === null || priority === undefined || priority === null || time === undefined || time === null) {
    const missing = (['rule', 'priority', 'time'] as const).filter((k) => o[k] === undefined || o[k] === null);
    const hint =
      o['output'] !== undefined
        ? null
        : 'this does not look like a Falco alert: set json_output: true in falco.yaml';
    throw new InvalidAlertError(`missing required key${missing.length > 1 ? 's' : ''} ${missing.map((k) => `"${k}"`).join(', ')}`, hint);
  }
  if (typeof rule !== 'string' || rule.trim() === '') throw new InvalidAlertError('"rule" must be a non-empty string');
  if (typeof priority !== 'string') throw new InvalidAlertError('"priority" must be a string');
  const p = parsePriority(priority);
  if (!p) {
    throw new InvalidAlertError(
      `"priority" ${JSON.stringify(priority).slice(0, 40)} is not a Falco priority (Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug)`,
    );
  }
  if (typeof time !== 'string') throw new InvalidAlertError('"time" must be an RFC 3339 string');
  const parsedTime = parseTime(time);
  if (!parsedTime) throw new InvalidAlertError(`"time" is not an RFC 3339 timestamp: ${JSON.stringify(time).slice(0, 60)}`);

  const output = o['output'];
  if (output !== undefined && output !== null && typeof output !== 'string') throw new InvalidAlertError('"output" must be a string');
  const source = o['source'];
  if (source !== undefined && source !== null && typeof source !== 'string') throw new InvalidAlertError('"source" must be a string');
  const hostname = o['hostname'];
  if (hostname !== undefined && hostname !== null && typeof hostname !== 'string') throw new InvalidAlertError('"hostname" must be a string');

  let tags: string[] | null = null;
  const rawTags = o['tags'];
  if (rawTags !== undefined && rawTags !== null) {
    if (!Array.isArray(rawTags) || rawTags.some((t) => typeof t !== 'string')) throw new InvalidAlertError('"tags" must be an array of strings');
    tags = owned ? (rawTags as string[]) : [...(rawTags as string[])];
  }

  let fields: Record<string, FieldValue> | null = null;
  let known = NO_KNOWN_FIELDS;
  const rawFields = o['output_fields'];
  if (rawFields !== undefined && rawFields !== null) {
    if (!isJsonObject(rawFields)) throw new InvalidAlertError('"output_fields" must be an object');
    // One pass: flatten nested values (Falco never nests them; the text keeps nothing lost and
    // downstream flat) and fill the known-fields record. An owned parse is used in place.
    const into: Record<string, FieldValue> = owned ? (rawFields as Record<string, FieldValue>) : {};
    const scratch = new Array<FieldValue | undefined>(SCRATCH);
    let any = false;
    for (const k in rawFields) {
      const raw = rawFields[k] as JsonValue;
      const x = raw !== null && typeof raw === 'object' && !(raw instanceof LosslessNumber) ? stringify(raw) : (raw as FieldValue);
      if (!owned) setOwn(into, k, x);
      else if (x !== raw) into[k] = x; // an own key (`__proto__` included): a plain assignment stays one
      const i = SLOT_INDEX.get(k);
      if (i !== undefined) {
        scratch[i] = x;
        any = true;
      }
    }
    fields = into;
    if (any) known = Object.freeze(record(scratch));
  }

  let extra: Record<string, JsonValue> | undefined;
  for (const k in o) {
    if (!KNOWN_KEYS.has(k)) setOwn((extra ??= {}), k, o[k] as JsonValue);
  }

  // Everything below was built for this alert alone (or is the caller's own parse): freeze it in place.
  return buildAlert({
    time,
    rule,
    priority: p,
    source: (source as string | null | undefined) ?? null,
    hostname: (hostname as string | null | undefined) ?? null,
    output: (output as string | null | undefined) ?? '',
    tags,
    outputFields: fields,
    extra: extra ?? {},
    origin,
    receivedAtMs,
  }, parsedTime, true, known);
}

/** Assign as an own data property: a `__proto__` key from untrusted JSON must stay a key, not a prototype. */
function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/** Return a new Alert with more companion keys (later keys win). The input is untouched. */
export function withEnrichment(a: Alert, add: Readonly<Record<string, EnrichValue>>): Alert {
  if (isEmptyRecord(add)) return a;
  // A frozen plain record added to an alert without companion keys is shared, not copied.
  if (a.companion === EMPTY && Object.isFrozen(add) && Object.getPrototypeOf(add) === Object.prototype) return withCompanionRecord(a, add);
  return withCompanionRecord(a, { ...a.companion, ...add });
}

/**
 * The alert with `companion` as its whole companion record, built in one step. `companion` must
 * be fresh (or frozen) and already hold `a.companion`'s keys first; it is frozen in place, not copied.
 */
export function withCompanionRecord(a: Alert, companion: Readonly<Record<string, EnrichValue>>): Alert {
  // Same key order as buildAlert: every Alert shares one hidden class.
  return Object.freeze({
    time: a.time,
    timeNs: a.timeNs,
    rule: a.rule,
    priority: a.priority,
    source: a.source,
    hostname: a.hostname,
    output: a.output,
    tags: a.tags,
    outputFields: a.outputFields,
    known: a.known,
    extra: a.extra,
    companion: Object.freeze(companion),
    origin: a.origin,
    receivedAtMs: a.receivedAtMs,
  });
}

/** True when `o` has no enumerable keys (no key array allocated). */
export function isEmptyRecord(o: object): boolean {
  for (const _k in o) return false;
  return true;
}

/** A field value as a string (null when absent, `<NA>` or null). */
export function fieldString(a: Alert, key: string): string | null {
  return valueString(a.outputFields?.[key]);
}

/** A field value as a finite number (null when absent or not numeric). */
export function fieldNumber(a: Alert, key: string): number | null {
  return valueNumber(a.outputFields?.[key]);
}

/** {@link fieldString} of a value already read (a known-fields slot). */
export function valueString(v: FieldValue | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v === '<NA>' ? null : v;
  return String(v);
}

/** {@link fieldNumber} of a value already read (a known-fields slot). */
export function valueNumber(v: FieldValue | undefined): number | null {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(typeof v === 'string' ? v : v.raw);
  return Number.isFinite(n) && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

// ---------------------------------------------------------------------------------------------
// Serialisation (Falco's JSON shape; keys in current Falco's alphabetical order)

export interface SerializeOptions {
  /** Add `companion.*` keys into output_fields (default true). */
  readonly includeCompanion?: boolean;
}

/** Falco-shaped JSON text of an alert, digits exact. Valid input for Falcosidekick and Talon. */
export function serializeAlert(a: Alert, opts: SerializeOptions = {}): string {
  const parts: string[] = [];
  if (a.hostname !== null) parts.push(`"hostname":${JSON.stringify(a.hostname)}`);
  parts.push(`"output":${JSON.stringify(a.output)}`);
  const withCompanion = opts.includeCompanion !== false;
  const companionKeys = withCompanion ? Object.keys(a.companion) : [];
  if (a.outputFields !== null || companionKeys.length > 0) {
    let s = '{';
    let first = true;
    if (a.outputFields) {
      for (const k in a.outputFields) {
        if (!first) s += ',';
        first = false;
        s += JSON.stringify(k) + ':' + stringify(a.outputFields[k] as FieldValue);
      }
    }
    for (const k of companionKeys) {
      if (!first) s += ',';
      first = false;
      s += JSON.stringify('companion.' + k) + ':' + stringify(a.companion[k] as EnrichValue);
    }
    parts.push(`"output_fields":${s}}`);
  }
  parts.push(`"priority":${JSON.stringify(a.priority)}`);
  parts.push(`"rule":${JSON.stringify(a.rule)}`);
  if (a.source !== null) parts.push(`"source":${JSON.stringify(a.source)}`);
  if (a.tags !== null) parts.push(`"tags":${JSON.stringify(a.tags)}`);
  parts.push(`"time":${JSON.stringify(a.time)}`);
  for (const k in a.extra) parts.push(`${JSON.stringify(k)}:${stringify(a.extra[k] as JsonValue)}`);
  return `{${parts.join(',')}}`;
}
