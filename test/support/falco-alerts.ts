/**
 * Falco alerts for tests, shaped as Falco 0.40 prints them (`json_output`, with `output` and
 * `tags`): one builder for in-memory Alerts ({@link falcoAlert}) and JSON lines
 * ({@link falcoAlertJson}), with the defaults of a real "Terminal shell in container" alert and
 * overrides for everything.
 *
 *   falcoAlert()                                         // the recorded shell alert at BASE_NS
 *   falcoAlert({ t: 1.5, fields: { 'container.id': 'c0ffee123456' } })
 *   falcoAlertJson({ rule: 'Rule 1', priority: 'Warning', tags: ['t'], fields: { n: 1 } })
 */
import { createAlert, formatTimeNs, type Alert, type EnrichValue, type FieldValue, type Origin, type Priority } from '../../src/alert.js';
import { isJsonObject, LosslessNumber, parse, stringify, type JsonObject, type JsonValue } from '../../src/json/lossless.js';

/** 2024-01-01T00:00:00Z in ns: the event time tests count from. */
export const BASE_NS = 1_704_067_200_000_000_000n;

/** Seconds (fractions allowed) as ns. */
export const secNs = (s: number): bigint => BigInt(Math.round(s * 1e9));

export const TEST_ORIGIN: Origin = Object.freeze({ kind: 'test', component: 'test' });

export const SHELL_RULE = 'Terminal shell in container';

/**
 * output_fields (without `evt.time`) and tags Falco 0.40.0 printed for "Terminal shell in container"
 * (../shared/falco-reference/recorded/shell-reads-shadow.jsonl).
 */
export const SHELL_FIELDS: Readonly<Record<string, FieldValue>> = Object.freeze({
  'container.id': '592b88e2905c',
  'container.name': 'charming_noyce',
  'evt.arg.flags': 'EXE_WRITABLE|EXE_LOWER_LAYER',
  'evt.type': 'execve',
  'proc.cmdline': 'sh -c cat /etc/shadow >/dev/null; echo read',
  'proc.exepath': '/bin/busybox',
  'proc.name': 'sh',
  'proc.pname': 'containerd-shim',
  'proc.tty': 34816,
  'user.loginuid': -1,
  'user.name': 'root',
  'user.uid': 0,
});
export const SHELL_TAGS: readonly string[] = Object.freeze(['T1059', 'container', 'maturity_stable', 'mitre_execution', 'shell']);
const SHELL_TEXT = 'A shell was spawned in a container with an attached terminal';

export interface FalcoAlertSpec {
  /** Default "Terminal shell in container". */
  readonly rule?: string;
  /** Default Notice. */
  readonly priority?: Priority;
  /** Default `syscall`; null leaves the key out. */
  readonly source?: string | null;
  /** Default `node-1`; null leaves the key out. */
  readonly hostname?: string | null;
  /** Default: the shell rule's tags for the default rule, none for others; null leaves the key out. */
  readonly tags?: readonly string[] | null;
  /** Default `<time of day>: <priority> <text>` as Falco formats it. */
  readonly output?: string;
  /** Event time in seconds after {@link BASE_NS} (fractions allowed). Default 0. */
  readonly t?: number;
  /** Absolute event time in ns; wins over `t`. */
  readonly ns?: bigint;
  /** output_fields laid over the defaults (a null value is Falco's `<NA>`). */
  readonly fields?: Readonly<Record<string, FieldValue>>;
  /** false: output_fields are `fields` only (no shell defaults, no `evt.time`). Default true. */
  readonly defaults?: boolean;
  /** In-memory alerts only: companion keys as enrichment left them, origin (default {@link TEST_ORIGIN}), receive time. */
  readonly companion?: Readonly<Record<string, EnrichValue>>;
  readonly origin?: Origin;
  readonly receivedAtMs?: number;
}

interface Built {
  readonly rule: string;
  readonly priority: Priority;
  readonly source: string | null;
  readonly hostname: string | null;
  readonly tags: readonly string[] | null;
  readonly output: string;
  readonly time: string;
  readonly fields: Record<string, FieldValue>;
}

function build(s: FalcoAlertSpec): Built {
  const ns = s.ns ?? BASE_NS + secNs(s.t ?? 0);
  const time = formatTimeNs(ns);
  const rule = s.rule ?? SHELL_RULE;
  const priority = s.priority ?? 'Notice';
  const over = s.fields ?? {};
  const merged: Record<string, FieldValue> = s.defaults === false ? { ...over } : { ...SHELL_FIELDS, 'evt.time': new LosslessNumber(String(ns)), ...over };
  // Falco prints output_fields in key order.
  const fields: Record<string, FieldValue> = {};
  for (const k of Object.keys(merged).sort()) fields[k] = merged[k] as FieldValue;
  const text = rule === SHELL_RULE ? `${SHELL_TEXT} (container_id=${String(fields['container.id'])} user=${String(fields['user.name'])})` : rule;
  return {
    rule,
    priority,
    source: s.source === undefined ? 'syscall' : s.source,
    hostname: s.hostname === undefined ? 'node-1' : s.hostname,
    tags: s.tags === undefined ? (rule === SHELL_RULE ? SHELL_TAGS : []) : s.tags,
    output: s.output ?? `${time.slice(11, 29)}: ${priority} ${text}`,
    time,
    fields,
  };
}

/** An in-memory Alert as the edge builds it from Falco's JSON. */
export function falcoAlert(s: FalcoAlertSpec = {}): Alert {
  const b = build(s);
  return createAlert({
    time: b.time,
    rule: b.rule,
    priority: b.priority,
    source: b.source,
    hostname: b.hostname,
    output: b.output,
    tags: b.tags === null ? null : [...b.tags],
    outputFields: b.fields,
    origin: s.origin ?? TEST_ORIGIN,
    ...(s.companion !== undefined ? { companion: { ...s.companion } } : {}),
    ...(s.receivedAtMs !== undefined ? { receivedAtMs: s.receivedAtMs } : {}),
  });
}

/** One JSON line as Falco 0.40 prints it: keys in Falco's order, big integers exact. */
export function falcoAlertJson(s: FalcoAlertSpec = {}): string {
  const b = build(s);
  const o: Record<string, JsonValue> = {};
  if (b.hostname !== null) o['hostname'] = b.hostname;
  o['output'] = b.output;
  o['output_fields'] = b.fields;
  o['priority'] = b.priority;
  o['rule'] = b.rule;
  if (b.source !== null) o['source'] = b.source;
  if (b.tags !== null) o['tags'] = [...b.tags];
  o['time'] = b.time;
  return stringify(o);
}

/** A Falco JSON line with `fields` added to its output_fields (markers such as `test.seq`), digits exact. */
export function withOutputFields(line: string, fields: Readonly<Record<string, JsonValue>>): string {
  const o = parse(line) as Record<string, JsonValue>;
  const f = o['output_fields'];
  o['output_fields'] = { ...(isJsonObject(f) ? f : {}), ...fields };
  return stringify(o as JsonObject);
}

/**
 * A Falco JSON alert ("Terminal shell in container") numbered by `id`: `output_fields."test.id"`
 * carries the id and `proc.pid` is 1000 + id. `extra` is spliced into output_fields verbatim
 * (start it with a comma).
 */
export const shellAlertJson = (id: number, extra = ''): string =>
  `{"hostname":"node-a","output":"13:44:05.478445995: Critical shell ${id}","output_fields":{"container.id":"host","evt.time":1685022245478445995,"k8s.ns.name":null,"proc.pid":${1000 + id},"test.id":"${id}"${extra}},"priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["shell"],"time":"2023-05-25T13:44:05.478445995Z"}`;
