/**
 * The detection journal's record and read API: one record per detection the companion emitted,
 * kept in the state database (namespace `journal`, src/journal/store.ts) with bounded retention.
 * A record is everything a responder needs to judge the detection without going back to Falco:
 * the forwarded detection alert, its evidence signals in full (process lineage, network facts,
 * container/k8s facts, the enrichment each evidence alert had: destination class, reverse DNS,
 * ASN, first-seen; image history), the score and why, response steps and the fields Falco Talon
 * acts on. `falco-companion report` renders it (src/report/), `tune` and `explain` read it.
 *
 * Values are JSON-safe: event times in ns are decimal strings (exact), Falco's big integers their
 * exact text. Attacker-controlled text (command lines, paths, names) is stored as seen (clipped):
 * whoever renders it escapes it.
 */
import type { EnrichValue, Priority } from '../alert.js';
import type { NetFacts, ProcFacts } from '../detect/types.js';

/** A value of an output field or signal key as stored (big integers as their exact text). */
export type StoredValue = string | number | boolean | null;

export const JOURNAL_RECORD_VERSION = 1;

/** Process facts of an evidence signal (the signal's own, strings clipped to 4096 characters). */
export type EvidenceProcess = ProcFacts;

/** Network facts of an evidence signal (addresses in canonical text; `remote` is the peer). */
export type EvidenceNetwork = NetFacts;

export interface EvidenceWorkload {
  /** container.id; null for a host process. */
  readonly id: string | null;
  readonly name: string | null;
  readonly imageRepository: string | null;
  readonly imageTag: string | null;
  readonly imageDigest: string | null;
  readonly namespace: string | null;
  readonly pod: string | null;
  readonly podLabels: Readonly<Record<string, string>>;
}

/** One evidence signal of a detection. */
export interface EvidenceRecord {
  /** Event time, ns since the epoch (decimal string, exact). */
  readonly timeNs: string;
  /** RFC 3339 with 9 fractional digits. */
  readonly time: string;
  /** The Falco rule that produced the signal. */
  readonly rule: string;
  readonly kind: string;
  readonly subtype: string | null;
  /** `companion.alert_id` of the Falco alert it came from (null when it had none). */
  readonly alertId: string | null;
  readonly hostname: string | null;
  readonly workload: EvidenceWorkload;
  readonly proc: EvidenceProcess;
  readonly net: EvidenceNetwork;
  /** Extra keys the signal mapping extracted (firewall `src`, `dport`, ...). */
  readonly keys: Readonly<Record<string, StoredValue>>;
  /** What the enrichers added to that alert (`dest.*`, `image.*`, ...; `companion.` prefix dropped). */
  readonly enrichment: Readonly<Record<string, EnrichValue>>;
}

/** Fields a Falco Talon rule matches and its actionners use (isolate, label, terminate, kill). */
export interface TalonFields {
  readonly rule: string;
  readonly priority: Priority;
  readonly tags: readonly string[];
  readonly hostname: string | null;
  readonly 'k8s.ns.name': string | null;
  readonly 'k8s.pod.name': string | null;
  readonly 'container.id': string | null;
  readonly 'fd.sip': string | null;
  readonly 'proc.pid': number | null;
}

export interface DetectionRecord {
  readonly v: number;
  /** `companion.alert_id` of the detection alert (the key). */
  readonly id: string;
  /** `companion.incident`: every detection of one chain shares it (null when the engine set none). */
  readonly incident: string | null;
  readonly time: string;
  readonly timeNs: string;
  /** Wall clock ms when the journal took it (retention runs on this). */
  readonly recordedAtMs: number;
  readonly rule: string;
  readonly priority: Priority;
  readonly detector: string | null;
  readonly score: number | null;
  /** One line saying what happened (the finding's message; the alert's output when absent). */
  readonly message: string;
  /** The finding's dedup / notify key (null when recorded from the alert alone). */
  readonly key: string | null;
  /** MITRE technique ids (T1205.002, ...). */
  readonly mitre: readonly string[];
  readonly tags: readonly string[];
  readonly hostname: string | null;
  /** The detection alert as forwarded: output text, output fields, companion keys. */
  readonly output: string;
  readonly outputFields: Readonly<Record<string, StoredValue>>;
  readonly companion: Readonly<Record<string, EnrichValue>>;
  /** Score and why: the detector's own fields (escalations, factors, counts, periods ...). */
  readonly why: Readonly<Record<string, StoredValue>>;
  /** Repeats folded into this detection when it was emitted. */
  readonly repeated: number;
  /** Evidence signals, oldest first (the middle dropped beyond the bound: see evidenceTotal). */
  readonly evidence: readonly EvidenceRecord[];
  /** How many evidence signals the finding had (> evidence.length when some were dropped). */
  readonly evidenceTotal: number;
  readonly response: readonly string[];
  readonly talon: TalonFields;
  /** The report page's URL when serving is on (journal.serve). */
  readonly reportUrl: string | null;
  /** Findings of the same key folded into this detection by the notify policy after it was sent. */
  readonly folded: number;
  /** True when the journal had only the alert (no engine finding): no evidence details. */
  readonly partial: boolean;
}

export interface DetectionQuery {
  /** Event time at or after (ns). */
  readonly sinceNs?: bigint;
  /** Event time before (ns). */
  readonly untilNs?: bigint;
  readonly detector?: string;
  /** Most records returned (default 1000, at most 10 000). */
  readonly limit?: number;
}

/**
 * What other commands read (tune, explain, report, the ops page). Lists are bounded by `limit`.
 * `container` matches Falco's 12-character id against a longer one by prefix (`host` for hosts).
 */
export interface JournalReader {
  get(id: string): DetectionRecord | null;
  /** Every record of an incident, oldest first. */
  byIncident(incident: string, limit?: number): DetectionRecord[];
  /** The newest `n` records, newest first. */
  last(n: number): DetectionRecord[];
  /** Records of a container (or `host`), newest first. */
  byContainer(containerId: string, limit?: number): DetectionRecord[];
  /** Records by event time, oldest first. */
  list(q?: DetectionQuery): DetectionRecord[];
  /** How many records are kept. */
  count(): number;
}
