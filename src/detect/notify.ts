/**
 * Incidents and the notify policy: which findings become detections (pages), for every detector
 * alike (issue #13 item 2, issue #18 item 6; docs/detections.md "Incidents and the notify policy").
 *
 * An **incident** is one compromised workload as a responder sees it: every finding whose newest
 * evidence is in the same container, whatever the detector or key, or, on the host (no
 * container), every finding whose evidence processes share a process lineage (the same pid or
 * session, or a parent / ancestor that is a member) with it. It stays open while findings keep
 * arriving: one idle for `incident_idle` (event time) is closed, and the next finding there opens
 * a new one. Its id is a ULID of the first finding's event time and a hash of the workload, so a
 * replay gives the same ids.
 *
 * A finding is **sent** (becomes a detection carrying `companion.incident`) when
 * - it opens an incident;
 * - its priority is above every priority the incident has sent, or above what was sent for its
 *   own chain (key) (`escalated`): a chain gives one more detection when it gets worse;
 * - it carries a MITRE technique the incident has not sent yet (`new_technique`): a new technique
 *   on a compromised workload is never folded;
 * - it is a new chain (`new_chain`): a finding key the incident has not sent, at Warning or above,
 *   whose evidence all comes at least `NEW_CHAIN_GAP_NS` (10 min) after the incident's last
 *   detection from the same detector (a second C2 destination hours after a first page is a new
 *   threat; the several keys one burst of activity completes are not), at most `MAX_NEW_CHAINS` times per `renotify` period
 *   so that churn (a workload that keeps finding new destinations) cannot page without end;
 * - `renotify` (24 h) has passed since the incident was last sent (`renotify`).
 * Otherwise it is **folded**: counted, and reported as `repeated N times since <time>` on the
 * incident's next detection. So a chain is one detection when it completes and at most one more
 * when it gets worse, and a beacon that keeps beaconing at one priority is one detection a day.
 *
 * Deterministic on event time; the state is plain data in a BoundedMap (the checkpoint codec
 * stores it), bounded by `max_incidents` (least recently active evicted first, counted).
 */
import { createHash } from 'node:crypto';
import { priorityRank } from '../alert.js';
import { alertIdFloor } from '../store/alert-id.js';
import { BoundedMap } from './detectors/kit.js';
import type { Finding, Signal } from './types.js';

export interface NotifySettings {
  /** An open incident is sent again at most once per this period (ms) unless it gets worse. */
  readonly renotifyMs: number;
  /** An incident without a finding for this long (ms, event time) is closed. */
  readonly incidentIdleMs: number;
  /** Incidents remembered (least recently active evicted first, counted). */
  readonly maxIncidents: number;
}

export type NotifyReason = 'new' | 'escalated' | 'new_technique' | 'new_chain' | 'renotify';

export interface NotifyDecision {
  readonly incident: string;
  /** Why it is sent; null: folded. */
  readonly reason: NotifyReason | null;
  /** Findings folded into the incident since its previous detection (when sent). */
  readonly repeated: number;
  /** Event time of the incident's previous detection (null for the first). */
  readonly sinceNs: bigint | null;
}

interface Incident {
  readonly id: string;
  /** `c|<container id>`, `h|<incident id>` (a host lineage) or `h|nopid`. */
  readonly scope: string;
  readonly openedNs: bigint;
  /** Event time of the newest finding. */
  lastNs: bigint;
  /** Event time of the last detection sent. */
  lastSentNs: bigint;
  /** Most severe priority rank sent (0 = Emergency). */
  rank: number;
  /** Techniques sent so far. */
  techniques: string[];
  /** Finding key → most severe priority rank sent for it (the chains sent so far; capped, oldest dropped). */
  keys?: Record<string, number>;
  /** Detections sent as `new_chain` since the last renotify. */
  newChains?: number;
  /** Detector id → event time of its last detection sent in this incident. */
  sentBy?: Record<string, bigint>;
  /** Findings folded since the last detection. */
  folded: number;
  /** Host lineage members (pids and session ids of the evidence), capped. */
  pids: number[];
}

export interface NotifyState {
  readonly incidents: BoundedMap<string, Incident>;
  lastSweepNs: bigint;
}

const MAX_PIDS = 32;
const MAX_KEYS = 32;
/** New chains sent per incident per renotify period at most (then folded like any repeat). */
export const MAX_NEW_CHAINS = 3;
/** A new chain's evidence must start this long after the incident's last detection (event time). */
export const NEW_CHAIN_GAP_NS = 600_000_000_000n;
const WARNING_RANK = priorityRank('Warning');
const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** ULID text: the event time's ms, then 80 bits of a hash of `seed` (deterministic). */
export function incidentId(timeNs: bigint, seed: string): string {
  const ms = Number(timeNs / 1_000_000n);
  const h = createHash('sha256').update(seed).digest();
  let bits = 0;
  let acc = 0;
  let out = '';
  for (let i = 0; i < 10; i++) {
    acc = (acc << 8) | (h[i] as number);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32.charAt((acc >> bits) & 31);
    }
    acc &= (1 << bits) - 1;
  }
  return alertIdFloor(ms).slice(0, 10) + out;
}

/** Techniques per detector's MITRE list (detectors reuse one constant list: computed once each). */
const techniquesBy = new WeakMap<readonly string[], string[]>();

/** MITRE technique ids of a finding (`T…`), or the detector when it names none. */
export function techniquesOf(f: Finding): string[] {
  let t = techniquesBy.get(f.mitre);
  if (t === undefined) {
    t = f.mitre.filter((m) => /^T\d/.test(m));
    techniquesBy.set(f.mitre, t);
  }
  return t.length > 0 ? [...t] : [`detector:${f.detector}`];
}

/** The container of the newest evidence that names one (the detection's `container.id`), else null. */
function containerOf(f: Finding): string | null {
  for (let i = f.evidence.length - 1; i >= 0; i--) {
    const c = (f.evidence[i] as Signal).containerId;
    if (c) return c;
  }
  return null;
}

function hostnameOf(f: Finding): string {
  for (let i = f.evidence.length - 1; i >= 0; i--) {
    const h = (f.evidence[i] as Signal).alert.hostname;
    if (h) return h;
  }
  return '';
}

const real = (p: number | null): p is number => p !== null && p > 1;

/** Pids and session ids a host finding's processes are: what later findings link to. */
function membersOf(f: Finding): number[] {
  const out = new Set<number>();
  for (const s of f.evidence) {
    if (real(s.proc.pid)) out.add(s.proc.pid);
    if (real(s.proc.sid)) out.add(s.proc.sid);
  }
  return [...out];
}

/** What a host finding links to an incident through: its processes, sessions, parents, ancestors. */
function linksOf(f: Finding): number[] {
  const out = new Set<number>(membersOf(f));
  for (const s of f.evidence) {
    if (real(s.proc.ppid)) out.add(s.proc.ppid);
    for (const a of s.proc.apids) if (real(a)) out.add(a);
  }
  return [...out];
}

export class Notifier {
  private st: NotifyState;
  /** Host lineage member pid → incident scope (derived from the incidents; rebuilt on restore). */
  private readonly hostIndex = new Map<number, string>();

  /** The settings' durations in ns (computed when configured, not per finding). */
  private idleNs: bigint;
  private renotifyNs: bigint;

  constructor(private settings: NotifySettings) {
    this.idleNs = BigInt(settings.incidentIdleMs) * 1_000_000n;
    this.renotifyNs = BigInt(settings.renotifyMs) * 1_000_000n;
    this.st = this.init();
  }

  /** A fresh state (its BoundedMap unindexes host members of evicted incidents). */
  init(): NotifyState {
    return {
      incidents: new BoundedMap<string, Incident>(this.settings.maxIncidents, (i) => this.unindex(i)),
      lastSweepNs: 0n,
    };
  }

  get state(): NotifyState {
    return this.st;
  }

  /** Install a restored state (from {@link init} filled by the checkpoint codec). */
  restore(st: NotifyState): void {
    this.st = st;
    this.hostIndex.clear();
    for (const i of st.incidents.values()) this.index(i);
  }

  /** New settings (rules reload); a new bound keeps the most recently active incidents. */
  configure(settings: NotifySettings): void {
    const resize = settings.maxIncidents !== this.settings.maxIncidents;
    this.settings = settings;
    this.idleNs = BigInt(settings.incidentIdleMs) * 1_000_000n;
    this.renotifyNs = BigInt(settings.renotifyMs) * 1_000_000n;
    if (!resize) return;
    const old = this.st;
    const next = this.init();
    for (const [k, v] of old.incidents.entries()) next.incidents.set(k, v);
    next.incidents.evicted += old.incidents.evicted;
    next.lastSweepNs = old.lastSweepNs;
    this.restore(next);
  }

  get evicted(): number {
    return this.st.incidents.evicted;
  }

  get size(): number {
    return this.st.incidents.size;
  }

  decide(f: Finding, nowNs: bigint): NotifyDecision {
    const t = f.timeNs;
    const idleNs = this.idleNs;
    this.sweep(nowNs > t ? nowNs : t, idleNs);
    let inc = this.find(f);
    if (inc && t - inc.lastNs > idleNs) {
      this.st.incidents.delete(inc.scope);
      inc = undefined;
    }
    const techniques = techniquesOf(f);
    const rank = priorityRank(f.priority);
    if (!inc) {
      inc = this.open(f, techniques, rank);
      return { incident: inc.id, reason: 'new', repeated: 0, sinceNs: null };
    }
    this.st.incidents.touch(inc.scope);
    if (t > inc.lastNs) inc.lastNs = t;
    if (inc.scope.startsWith('h|') && inc.pids.length < MAX_PIDS) this.addMembers(inc, f);
    let reason: NotifyReason | null = null;
    const keyRank = inc.keys?.[f.key];
    if (rank < inc.rank || (keyRank !== undefined && rank < keyRank)) reason = 'escalated';
    else if (techniques.some((x) => !inc.techniques.includes(x))) reason = 'new_technique';
    else if (t - inc.lastSentNs >= this.renotifyNs) reason = 'renotify';
    else if (this.isNewChain(inc, f, rank)) reason = 'new_chain';
    if (reason === null) {
      inc.folded++;
      return { incident: inc.id, reason: null, repeated: 0, sinceNs: null };
    }
    const d: NotifyDecision = { incident: inc.id, reason, repeated: inc.folded, sinceNs: inc.lastSentNs };
    inc.folded = 0;
    if (t > inc.lastSentNs) inc.lastSentNs = t;
    if (rank < inc.rank) inc.rank = rank;
    for (const x of techniques) if (!inc.techniques.includes(x)) inc.techniques.push(x);
    inc.newChains = reason === 'new_chain' ? (inc.newChains ?? 0) + 1 : reason === 'renotify' ? 0 : (inc.newChains ?? 0);
    this.rememberKey(inc, f.key, rank);
    (inc.sentBy ??= {})[f.detector] = t;
    return d;
  }

  private isNewChain(inc: Incident, f: Finding, rank: number): boolean {
    if (rank > WARNING_RANK || (inc.newChains ?? 0) >= MAX_NEW_CHAINS) return false;
    if (inc.keys?.[f.key] !== undefined) return false;
    const after = (inc.sentBy?.[f.detector] ?? inc.openedNs) + NEW_CHAIN_GAP_NS;
    return f.evidence.length > 0 && f.evidence.every((s) => s.timeNs >= after);
  }

  private rememberKey(inc: Incident, key: string, rank: number): void {
    const keys = (inc.keys ??= {});
    const had = keys[key];
    if (had !== undefined) {
      if (rank < had) keys[key] = rank;
      return;
    }
    const all = Object.keys(keys);
    if (all.length >= MAX_KEYS) delete keys[all[0] as string];
    keys[key] = rank;
  }

  private find(f: Finding): Incident | undefined {
    const c = containerOf(f);
    if (c !== null) return this.st.incidents.get(`c|${c}`);
    const links = linksOf(f);
    if (links.length === 0) return this.st.incidents.get('h|nopid');
    for (const p of links) {
      const scope = this.hostIndex.get(p);
      const inc = scope !== undefined ? this.st.incidents.get(scope) : undefined;
      if (inc) return inc;
    }
    return undefined;
  }

  private open(f: Finding, techniques: string[], rank: number): Incident {
    const c = containerOf(f);
    const members = c === null ? membersOf(f) : [];
    const seed = `${hostnameOf(f)}|${c ?? `host:${members.join(',')}`}|${f.key}|${f.timeNs}`;
    const id = incidentId(f.timeNs, seed);
    const scope = c !== null ? `c|${c}` : members.length > 0 ? `h|${id}` : 'h|nopid';
    const inc: Incident = { id, scope, openedNs: f.timeNs, lastNs: f.timeNs, lastSentNs: f.timeNs, rank, techniques: [...techniques], keys: { [f.key]: rank }, newChains: 0, sentBy: { [f.detector]: f.timeNs }, folded: 0, pids: members.slice(0, MAX_PIDS) };
    this.st.incidents.set(scope, inc);
    this.index(inc);
    return inc;
  }

  private addMembers(inc: Incident, f: Finding): void {
    for (const p of membersOf(f)) {
      if (inc.pids.length >= MAX_PIDS) break;
      if (inc.pids.includes(p)) continue;
      inc.pids.push(p);
      this.hostIndex.set(p, inc.scope);
    }
  }

  private index(inc: Incident): void {
    if (!inc.scope.startsWith('h|')) return;
    for (const p of inc.pids) this.hostIndex.set(p, inc.scope);
  }

  private unindex(inc: Incident): void {
    for (const p of inc.pids) if (this.hostIndex.get(p) === inc.scope) this.hostIndex.delete(p);
  }

  /** Close incidents idle past `incident_idle` (not evictions), at most 16 times per idle period. */
  private sweep(nowNs: bigint, idleNs: bigint): void {
    if (nowNs - this.st.lastSweepNs < idleNs / 16n) return;
    this.st.lastSweepNs = nowNs;
    this.st.incidents.sweep((i) => i.lastNs + idleNs < nowNs);
  }
}
