/**
 * Building a journal record (src/journal/types.ts) from what the engine had when it emitted a
 * detection: the finding (evidence signals with their enrichment) and the alert as forwarded.
 * Pure functions: the journal calls them off the alert path, when it writes a batch.
 */
import { formatTimeNs, type Alert, type EnrichValue, type FieldValue } from '../alert.js';
import { RESPONSE_STEPS } from '../detect/finding-to-alert.js';
import type { Finding, Signal } from '../detect/types.js';
import { LosslessNumber } from '../json/lossless.js';
import { ALERT_ID_KEY } from '../store/alert-id.js';
import { JOURNAL_RECORD_VERSION, type DetectionRecord, type EvidenceRecord, type StoredValue, type TalonFields } from './types.js';

/** Longest string kept per value (command lines can be long; the report shows them whole up to this). */
export const MAX_TEXT = 4096;
/** Companion keys of the detection alert that the record keeps elsewhere. */
export const INCIDENT_KEY = 'incident';
export const REPORT_URL_KEY = 'report_url';

/** Companion keys every detection alert has (src/detect/finding-to-alert.ts) or the pipeline adds. */
const STANDARD_KEYS = new Set([ALERT_ID_KEY, INCIDENT_KEY, REPORT_URL_KEY, 'detector', 'score', 'evidence', 'lineage', 'response', 'mitre', 'repeated']);
/** `14:30:49.000000000: Critical ` before a detection's message. */
const OUTPUT_PREFIX = /^\d{2}:\d{2}:\d{2}\.\d+: [A-Za-z]+ /;

function clip(s: string): string {
  return s.length <= MAX_TEXT ? s : s.slice(0, MAX_TEXT - 1) + '…';
}

export function storedValue(v: FieldValue | undefined): StoredValue {
  if (v === undefined || v === null) return null;
  if (v instanceof LosslessNumber) return v.raw;
  return typeof v === 'string' ? clip(v) : v;
}

function storedRecord(o: Readonly<Record<string, FieldValue>> | null): Record<string, StoredValue> {
  const out: Record<string, StoredValue> = {};
  if (!o) return out;
  for (const k of Object.keys(o)) out[k] = storedValue(o[k]);
  return out;
}

function enrichment(c: Readonly<Record<string, EnrichValue>>): Record<string, EnrichValue> {
  const out: Record<string, EnrichValue> = {};
  for (const k of Object.keys(c)) {
    if (k === ALERT_ID_KEY) continue;
    const v = c[k] as EnrichValue;
    out[k] = typeof v === 'string' ? clip(v) : v;
  }
  return out;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' && v !== '<NA>' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : v instanceof LosslessNumber ? Number(v.raw) : null);
const clipOrNull = (s: string | null): string | null => (s === null ? null : clip(s));

/** One evidence signal as the journal keeps it. */
export function evidenceRecord(s: Signal): EvidenceRecord {
  const a = s.alert;
  const p = s.proc;
  return {
    timeNs: s.timeNs.toString(),
    time: formatTimeNs(s.timeNs),
    rule: s.rule,
    kind: s.kind,
    subtype: s.subtype,
    alertId: str(a.companion[ALERT_ID_KEY]),
    hostname: a.hostname,
    workload: {
      id: s.containerId,
      name: str(a.outputFields?.['container.name']),
      imageRepository: s.imageRepository,
      imageTag: s.imageTag,
      imageDigest: s.imageDigest,
      namespace: s.namespace,
      pod: s.pod,
      podLabels: { ...s.podLabels },
    },
    proc: { ...p, apids: [...p.apids], name: clipOrNull(p.name), exepath: clipOrNull(p.exepath), cmdline: clipOrNull(p.cmdline), ancestors: p.ancestors.map(clip) },
    net: { ...s.net },
    keys: storedRecord(s.keys),
    enrichment: enrichment(a.companion),
  };
}

/** `1) a; 2) b` → [a, b]. */
export function responseSteps(text: string): string[] {
  const parts = text.split(/;\s*(?=\d+\)\s)/).map((x) => x.replace(/^\d+\)\s*/, '').trim());
  return parts.filter((x) => x !== '');
}

function talonFields(a: Alert): TalonFields {
  const f = a.outputFields ?? {};
  const cid = str(f['container.id']);
  return {
    rule: a.rule,
    priority: a.priority,
    tags: [...(a.tags ?? [])],
    hostname: a.hostname,
    'k8s.ns.name': str(f['k8s.ns.name']),
    'k8s.pod.name': str(f['k8s.pod.name']),
    'container.id': cid,
    'fd.sip': str(f['fd.sip']),
    'proc.pid': num(f['proc.pid']),
  };
}

/** Keep the first and the last signals when there are more than `max` (the chain's start and end). */
function boundEvidence(all: readonly Signal[], max: number): readonly Signal[] {
  if (all.length <= max) return all;
  const head = Math.ceil(max / 2);
  return [...all.slice(0, head), ...all.slice(all.length - (max - head))];
}

export interface RecordInput {
  /** The alert as forwarded (with its `companion.alert_id`). */
  readonly alert: Alert;
  /** The finding the engine emitted it for; null when only the alert is known. */
  readonly finding: Finding | null;
  readonly incident: string | null;
  readonly recordedAtMs: number;
  /** Most evidence signals kept. */
  readonly maxEvidence: number;
}

export function buildRecord(r: RecordInput): DetectionRecord {
  const a = r.alert;
  const f = r.finding;
  const c = a.companion;
  const id = str(c[ALERT_ID_KEY]) ?? '';
  const mitreText = str(c['mitre']);
  const mitre = f ? f.mitre.filter((m) => /^T\d/.test(m)) : (mitreText?.split(',').filter(Boolean) ?? (a.tags ?? []).filter((t) => /^T\d/.test(t)));
  const evidence = f ? boundEvidence(f.evidence, Math.max(1, r.maxEvidence)).map(evidenceRecord) : [];
  const why: Record<string, StoredValue> = {};
  if (f) for (const [k, v] of Object.entries(f.fields)) why[k] = storedValue(v);
  // From the alert alone: the detector's fields are its companion keys besides the standard ones.
  else for (const [k, v] of Object.entries(c)) if (!STANDARD_KEYS.has(k)) why[k] = v;
  const score = f ? f.score : num(c['score']);
  const repeated = num(c['repeated']) ?? 0;
  return {
    v: JOURNAL_RECORD_VERSION,
    id,
    incident: r.incident ?? str(c[INCIDENT_KEY]),
    time: a.time,
    timeNs: a.timeNs.toString(),
    recordedAtMs: r.recordedAtMs,
    rule: a.rule,
    priority: a.priority,
    detector: f?.detector ?? str(c['detector']),
    score,
    message: clip(f?.message ?? a.output.replace(OUTPUT_PREFIX, '')),
    key: f?.key ?? null,
    mitre,
    tags: [...(a.tags ?? [])],
    hostname: a.hostname,
    output: clip(a.output),
    outputFields: storedRecord(a.outputFields),
    companion: enrichment(c),
    why,
    repeated,
    evidence,
    evidenceTotal: f ? f.evidence.length : 0,
    response: responseSteps(str(c['response']) ?? RESPONSE_STEPS),
    talon: talonFields(a),
    reportUrl: str(c[REPORT_URL_KEY]),
    folded: 0,
    partial: f === null,
  };
}
