/**
 * The one helper module of the detectors: enrichment and signal-key readers that tolerate missing
 * keys, process lineage / tmpfs / masquerade checks for the chain detectors, score → priority,
 * rounding, evidence ordering, the slim evidence copy (`retain`), internal rate limits, and a bounded
 * LRU map with counted eviction. No wall clock anywhere.
 */
import { knownFields, NO_KNOWN_FIELDS, parseTime, type Alert, type FieldValue, type KnownFields, type OutputFields, type Priority } from '../../alert.js';
import { deprecated, duration } from '../../config/dsl.js';
import type { ProcFacts, Signal } from '../types.js';
import { DEST, IMAGE } from '../../enrich/keys.js';

export interface PriorityThresholds {
  readonly critical: number;
  readonly error: number;
  readonly warning: number;
}

export const DEFAULT_THRESHOLDS: PriorityThresholds = { critical: 0.85, error: 0.7, warning: 0.5 };

export function priorityFromScore(score: number, t: PriorityThresholds = DEFAULT_THRESHOLDS): Priority {
  if (score >= t.critical) return 'Critical';
  if (score >= t.error) return 'Error';
  if (score >= t.warning) return 'Warning';
  return 'Notice';
}

/** Thresholds of a chain detector's `critical_score` / `error_score` settings (Warning from 0.5). */
export function chainThresholds(cfg: { readonly critical_score: number; readonly error_score: number }): PriorityThresholds {
  return { critical: cfg.critical_score, error: cfg.error_score, warning: DEFAULT_THRESHOLDS.warning };
}

/** The container a chain detector tracks a signal under: its id, `host` when host processes are watched, else null. */
export function scopeOf(s: Signal, includeHost: boolean): string | null {
  return s.containerId ?? (includeHost ? 'host' : null);
}

/** Go's math.Round(x*1000)/1000: round half away from zero to 3 decimals (RITA's rounding; scores use it too). */
export function round3(x: number): number {
  if (!Number.isFinite(x)) return x;
  const r = Math.round(Math.abs(x) * 1000) / 1000;
  return x < 0 ? -r : r;
}

/** Oldest first, for `Array.prototype.sort` of evidence. */
export function byTime(a: { readonly timeNs: bigint }, b: { readonly timeNs: bigint }): number {
  return a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0;
}

/** The later of two event times (a detector's `now`: never behind the signal). */
export function laterNs(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** `p` within [min, max] (suspicious listener ranges). */
export function inPortRange(p: number | null, min: number, max: number): boolean {
  return p !== null && p >= min && p <= max;
}

/**
 * True when `t` is the process `p`, its child or descendant (p ∈ t's ancestors), or a member of
 * the session `p` leads. A bare shared session is not enough: every process of a container
 * shares its init's session unless one calls setsid.
 */
export function sameLineage(p: ProcFacts, t: ProcFacts): boolean {
  if (p.pid === null || t.pid === null) return false;
  if (t.pid === p.pid || t.ppid === p.pid || t.apids.includes(p.pid)) return true;
  if (t.sid !== null && t.sid === p.pid) return true;
  // The armer may itself be a child of the triggering process' session leader that setsid'd.
  if (p.sid !== null && p.sid === p.pid && t.sid === p.sid) return true;
  return false;
}

const TMPFS_PREFIXES = ['/dev/shm/', '/run/shm/', '/run/user/', '/tmp/', '/var/tmp/', '/run/', '/var/run/', 'memfd:'];

export function isTmpfsPath(p: string | null): boolean {
  return p !== null && TMPFS_PREFIXES.some((x) => p.startsWith(x));
}

export function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return (i >= 0 ? p.slice(i + 1) : p).replace(/ \(deleted\)$/, '');
}

/**
 * Executables an implant runs from: tmpfs-like directories, a memfd (fileless), a deleted file, or
 * `/proc/<pid>/fd/N` (fexecve of an unlinked or memfd file). The reason, or null.
 */
export function unusualExeLocation(exe: string | null): 'tmpfs' | 'memfd' | 'deleted' | null {
  if (exe === null) return null;
  if (exe.startsWith('memfd:') || /^\/proc\/(self|\d+)\/fd\//.test(exe)) return 'memfd';
  if (exe.endsWith(' (deleted)')) return 'deleted';
  return isTmpfsPath(exe) ? 'tmpfs' : null;
}

/**
 * Kernel threads user space never runs: `[kworker/0:1]`, `kworker/u8:2`, `ksoftirqd/0`,
 * `migration/3`, `kthreadd`, `jbd2/sda1-8`... (BPFDoor, Kinsing, XMRig droppers and Mirai pick
 * these names). A name with a slash is kernel-thread shaped by itself: no user-space program name
 * has one.
 */
const KTHREAD = /^\[.*\]$|\/|^(kworker|kthreadd|ksoftirqd|kswapd\d*|kcompactd\d*|khugepaged|ksmd|kauditd|kdevtmpfs|khungtaskd|kintegrityd|kblockd|kthrotld|kstrp|kaluad|kmpath_rdacd|kdmflush|kpsmoused|kcryptd|rcu_(sched|bh|gp|par_gp|preempt|tasks\w*)|migration|watchdog|watchdogd|cpuhp|idle_inject|irq|jbd2|writeback|oom_reaper|netns|mm_percpu_wq|scsi_eh_\d+|scsi_tmf_\d+|xfsaild|ext4-rsv-conver|edac-poller|devfreq_wq|ipv6_addrconf|charger_manager|khubd|kacpid|kacpi_notify|ata_sff|md\d*_raid\d*)$/;

export function isKernelThreadName(name: string | null): boolean {
  return name !== null && name !== '' && KTHREAD.test(name);
}

/** System daemons implants name themselves after (BPFDoor's list and the usual suspects). */
const DAEMON_NAMES = new Set([
  'udevd', 'systemd-udevd', 'dbus-daemon', 'sshd', 'crond', 'cron', 'atd', 'rsyslogd', 'syslogd', 'auditd', 'agetty', 'mingetty', 'getty',
  'console-kit-daemon', 'hald-runner', 'hald-addon-acpi', 'pickup', 'qmgr', 'master', 'avahi-daemon', 'systemd-journald', 'systemd-logind',
  'systemd-resolved', 'systemd-networkd', 'irqbalance', 'polkitd', 'lvmetad', 'multipathd', 'init', 'smartd', 'acpid', 'ntpd', 'chronyd',
]);

/**
 * A name taken with prctl(PR_SET_NAME) that disguises the program: a kernel thread's, or a system
 * daemon's that the executable is not. Another tool's name (a capture agent calling itself
 * `tcpdump`) is not a disguise worth an alert by itself.
 */
export function isDisguiseName(newName: string | null, exe: string | null): boolean {
  if (newName === null || newName === '') return false;
  if (isKernelThreadName(newName)) return true;
  const name = newName.replace(/^.*\//, '').split(/[\s:]/)[0] ?? '';
  if (!DAEMON_NAMES.has(name)) return false;
  const base = exe ? basename(exe) : '';
  return !(base === name || base.startsWith(name) || name.startsWith(base));
}

/** proc.name that is not the basename of the executable (Falco truncates names to 15 chars). */
export function isMasquerade(p: ProcFacts): boolean {
  if (!p.name || !p.exepath || p.exepath.startsWith('memfd:')) return false;
  const base = basename(p.exepath);
  if (base === p.name || base.startsWith(p.name) || p.name.startsWith(base)) return false;
  // Interpreters run scripts under their own name; busybox applets run under the applet name.
  if (/^(busybox|python[\d.]*|perl|ruby|node|bash|sh|dash)$/.test(base)) return false;
  return true;
}

/** Compact description of a process for evidence strings. */
export function procLabel(s: Signal): string {
  const p = s.proc;
  const name = p.name ?? (p.exepath ? basename(p.exepath) : '?');
  return `${name}[${p.pid ?? '?'}]`;
}

/** A mapping key (`Signal.keys`) as a string, else null. */
export function keyString(s: Signal, key: string): string | null {
  const v = s.keys[key];
  if (v === undefined || v === null) return null;
  return typeof v === 'object' ? v.raw : String(v);
}

/** A mapping key (`Signal.keys`) as a finite number, else null. */
export function keyNumber(s: Signal, key: string): number | null {
  const v = s.keys[key];
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(typeof v === 'string' ? v : v.raw);
  return Number.isFinite(n) ? n : null;
}

/** A companion key as a non-empty string, else null. */
export function cString(s: Signal, key: string): string | null {
  const v = s.alert.companion[key];
  if (v === undefined || v === null) return null;
  const t = typeof v === 'string' ? v : String(v);
  return t === '' ? null : t;
}

/** A companion key as a boolean (`true`/`"true"`), null when absent or not boolean-like. */
export function cBool(s: Signal, key: string): boolean | null {
  const v = s.alert.companion[key];
  if (typeof v === 'boolean') return v;
  if (v === 'true') return true;
  if (v === 'false') return false;
  return null;
}

/** A companion key as a finite number, else null. */
export function cNumber(s: Signal, key: string): number | null {
  const v = s.alert.companion[key];
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  return Number.isFinite(n) ? n : null;
}

/** A companion RFC 3339 time as ns, else null. */
export function cTimeNs(s: Signal, key: string): bigint | null {
  const v = cString(s, key);
  if (v === null) return null;
  return parseTime(v)?.ns ?? null;
}

/** Destination (domain, else IP) and port of a connect-like signal, enrichment as fallback. */
export function destOf(s: Signal): { host: string | null; ip: string | null; port: number | null } {
  const ip = s.net.remoteIp ?? s.net.serverIp ?? cString(s, DEST.ip);
  const host = s.net.remoteDomain ?? cString(s, DEST.rdns) ?? ip;
  const port = s.net.remotePort ?? s.net.serverPort ?? cNumber(s, DEST.port);
  return { host, ip, port };
}

export function exeOf(s: Signal): string {
  return s.proc.exepath ?? s.proc.name ?? '?';
}

/** Where a signal happened, for messages: namespace/pod, else container id, else `host`. */
export function whereOf(s: Signal): string {
  if (s.namespace && s.pod) return `${s.namespace}/${s.pod}`;
  if (s.containerId) return `container ${s.containerId}`;
  return 'host';
}

export function imageOf(s: Signal): string | null {
  const repo = s.imageRepository ?? cString(s, IMAGE.repository);
  if (!repo) return null;
  const tag = s.imageTag ?? cString(s, IMAGE.tag);
  return tag ? `${repo}:${tag}` : repo;
}

const NO_EXTRA = Object.freeze({}) as Alert['extra'];

/**
 * The signal as detector state should keep it (evidence held in an LRU entry): the same facts,
 * with its alert cut down to what evidence and findings read later (hostname, `container.name`,
 * the enrichment record, which is shared). A full alert (output text, every output field, tags)
 * costs about 3 KB; kept signals went from that to a few hundred bytes each.
 */
export function retain(s: Signal): Signal {
  // The detectors that consume one signal keep the same slim copy (and the signals of one alert share its slim alert).
  if (s === lastRetained.from) return lastRetained.to;
  const a = s.alert;
  let slim = lastSlim.from === a ? lastSlim.to : null;
  if (slim === null) {
    const name = a.known.containerName;
    const f = name === undefined ? null : slimFields(name);
    slim = Object.freeze({ ...a, output: '', tags: null, extra: NO_EXTRA, outputFields: f === null ? null : f.fields, known: f === null ? NO_KNOWN_FIELDS : f.known });
    lastSlim = { from: a, to: slim };
  }
  // A command line longer than Falco ever reads (4 KiB; only a sender that is not Falco) is kept as
  // much as the journal shows of it.
  const cmd = s.proc.cmdline;
  const kept = cmd !== null && cmd.length > MAX_RETAINED_CMDLINE ? { ...s, alert: slim, proc: { ...s.proc, cmdline: clip(cmd, MAX_RETAINED_CMDLINE) } } : { ...s, alert: slim };
  lastRetained = { from: s, to: kept };
  return kept;
}

/** The slim output fields and their record, one pair per container name (kept signals share them; a checkpoint writes each once). */
const slimByName = new Map<FieldValue, { readonly fields: OutputFields; readonly known: KnownFields }>();

function slimFields(name: FieldValue): { readonly fields: OutputFields; readonly known: KnownFields } {
  let f = slimByName.get(name);
  if (f === undefined) {
    if (slimByName.size >= 4096) slimByName.clear();
    const fields: OutputFields = Object.freeze({ 'container.name': name });
    f = { fields, known: knownFields(fields) };
    slimByName.set(name, f);
  }
  return f;
}

/** One-entry memos of retain (the signal in hand, its alert): kept signals are never mutated. */
let lastRetained: { readonly from: Signal | null; readonly to: Signal } = { from: null, to: null as unknown as Signal };
let lastSlim: { readonly from: Alert | null; readonly to: Alert } = { from: null, to: null as unknown as Alert };

/** Longest command line an evidence signal keeps (the journal's MAX_TEXT). */
const MAX_RETAINED_CMDLINE = 4096;

export const NS_PER_MS = 1_000_000n;
export const msToNs = (ms: number): bigint => BigInt(Math.round(ms)) * NS_PER_MS;

/** Truncate a string field so every finding field stays under 512 characters. */
export function clip(s: string, max = 500): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…';
}

/** Fields with strings clipped; null/undefined values dropped. */
export function compact(fields: Record<string, string | number | boolean | null | undefined>): Record<string, string | number | boolean | null> {
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || v === null) continue;
    out[k] = typeof v === 'string' ? clip(v) : v;
  }
  return out;
}

/** Raise a priority by `steps` toward Emergency (Notice → Warning → Error → Critical), capped at Critical. */
export function raise(p: Priority, steps: number): Priority {
  const order: Priority[] = ['Debug', 'Informational', 'Notice', 'Warning', 'Error', 'Critical'];
  const i = order.indexOf(p);
  if (i < 0) return p; // Alert / Emergency stay
  return order[Math.min(order.length - 1, i + steps)] as Priority;
}

/** Lower a priority by `steps` toward Informational (Critical → Error → Warning → Notice). */
export function lower(p: Priority, steps: number): Priority {
  const order: Priority[] = ['Informational', 'Notice', 'Warning', 'Error', 'Critical'];
  const i = order.indexOf(p);
  if (i < 0) return p; // Debug, Alert, Emergency stay
  return order[Math.max(0, i - steps)] as Priority;
}

/**
 * Internal rate limit of a finding key (not a user setting: the engine's notify policy decides
 * what reaches the sinks): true (and `key` stamped with `t`) when `key` was never seen or its last
 * finding is at least `periodNs` before `t`. Keeps a detector from re-evaluating and re-emitting on
 * every signal of a chatty workload.
 */
export function onceIn(reported: BoundedMap<string, bigint>, key: string, t: bigint, periodNs: bigint): boolean {
  const last = reported.touch(key);
  if (last !== undefined && t - last < periodNs) return false;
  reported.set(key, t);
  return true;
}

interface LruNode<K, V> {
  readonly k: K;
  v: V;
  prev: LruNode<K, V> | null;
  next: LruNode<K, V> | null;
}

/**
 * A bounded map with LRU order (get with `touch` moves to the newest end). `set` beyond `max`
 * evicts the least recently used entry and counts it in `evicted`. The order is a doubly linked
 * list beside the Map, so a touch relinks two nodes instead of deleting and re-inserting a Map key.
 * `onDrop` (optional) sees every value that leaves the map (eviction, sweep, delete), so an owner
 * can keep a total over the entries (a global budget across nested structures).
 */
export class BoundedMap<K, V> {
  private readonly m = new Map<K, LruNode<K, V>>();
  /** Least recently used (evicted first). */
  private head: LruNode<K, V> | null = null;
  /** Most recently used. */
  private tail: LruNode<K, V> | null = null;
  evicted = 0;
  constructor(
    readonly max: number,
    private readonly onDrop?: (v: V) => void,
  ) {}
  get size(): number {
    return this.m.size;
  }
  get(k: K): V | undefined {
    return this.m.get(k)?.v;
  }
  touch(k: K): V | undefined {
    const n = this.m.get(k);
    if (n === undefined) return undefined;
    if (n !== this.tail) {
      this.unlink(n);
      this.append(n);
    }
    return n.v;
  }
  set(k: K, v: V): void {
    const n = this.m.get(k);
    if (n !== undefined) {
      n.v = v;
      if (n !== this.tail) {
        this.unlink(n);
        this.append(n);
      }
    } else {
      const x: LruNode<K, V> = { k, v, prev: null, next: null };
      this.m.set(k, x);
      this.append(x);
    }
    while (this.m.size > this.max) if (!this.evictOldest()) break;
  }
  /** The least recently used value (next to be evicted), without touching it. */
  oldest(): V | undefined {
    return this.head?.v;
  }
  /** Evict the least recently used entry, counted in `evicted`; false when empty. */
  evictOldest(): boolean {
    const oldest = this.head;
    if (oldest === null) return false;
    this.remove(oldest);
    this.evicted++;
    return true;
  }
  delete(k: K): boolean {
    const n = this.m.get(k);
    if (n === undefined) return false;
    this.remove(n);
    return true;
  }
  *entries(): IterableIterator<[K, V]> {
    for (let n = this.head; n !== null; n = n.next) yield [n.k, n.v];
  }
  *values(): IterableIterator<V> {
    for (let n = this.head; n !== null; n = n.next) yield n.v;
  }
  /** Drop entries for which `expired` holds (not counted as evictions: they aged out). O(size): call on a cadence. */
  sweep(expired: (v: V) => boolean): number {
    let c = 0;
    for (let n = this.head; n !== null; ) {
      const next = n.next;
      if (expired(n.v)) {
        this.remove(n);
        c++;
      }
      n = next;
    }
    return c;
  }
  private remove(n: LruNode<K, V>): void {
    this.m.delete(n.k);
    this.unlink(n);
    this.onDrop?.(n.v);
  }
  private unlink(n: LruNode<K, V>): void {
    if (n.prev) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = null;
    n.next = null;
  }
  private append(n: LruNode<K, V>): void {
    n.prev = this.tail;
    n.next = null;
    if (this.tail) this.tail.next = n;
    else this.head = n;
    this.tail = n;
  }
}

/**
 * The per-detector `renotify` setting of older rules files: still accepted, ignored, warned about.
 * Repeats are the engine's business now (one notify policy for every detector).
 */
export const RENOTIFY_DEPRECATED = deprecated(
  duration('Ignored (deprecated).', 0, { min: 0 }),
  "ignored: repeats of a detection follow the engine's one notify policy (the rules file's `output:` section); remove this key",
);
