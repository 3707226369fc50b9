/**
 * Turn a detector Finding into a Falco-shaped Alert: a human rule name, priority from the score,
 * one-line `output` prefixed with time and priority as Falco does, MITRE tags, the container / k8s
 * fields and `fd.sip` Falco Talon needs, and compact `companion.*` evidence and response steps.
 * Every value stays under 512 characters.
 */
import { createAlert, formatTimeNs, type Alert, type EnrichValue, type FieldValue } from '../alert.js';
import { fieldString } from '../alert.js';
import type { Finding, Signal } from './types.js';
import { SIGNAL_RULE_PREFIX } from './mapping.js';

export const DETECTION_SOURCE = 'falco-companion';
export const RESPONSE_STEPS =
  "1) isolate the container's network (e.g. Falco Talon kubernetes:networkpolicy); 2) examine network logs and runtime metrics; 3) review the image history for unauthorized changes; 4) engage incident response";

const MAX = 500;

export function clipText(s: string, max = MAX): string {
  return s.length <= max ? s : s.slice(0, max - 1) + '…';
}

function hms(ns: bigint): string {
  return formatTimeNs(ns).slice(11, 29); // HH:MM:SS.nnnnnnnnn
}

function shortRule(rule: string): string {
  return rule.startsWith(SIGNAL_RULE_PREFIX) ? rule.slice(SIGNAL_RULE_PREFIX.length).trim() : rule;
}

/** `HH:MM:SS.mmm rule; ...`, oldest first; the middle elided to stay under the cap. */
export function evidenceText(evidence: readonly Signal[]): string {
  const parts = evidence.map((s) => `${formatTimeNs(s.timeNs).slice(11, 23)} ${shortRule(s.rule)}`);
  let text = parts.join('; ');
  if (text.length <= MAX) return text;
  for (let keep = parts.length - 1; keep >= 2; keep--) {
    const head = parts.slice(0, Math.ceil(keep / 2));
    const tail = parts.slice(parts.length - Math.floor(keep / 2));
    text = [...head, `… +${parts.length - keep} more`, ...tail].join('; ');
    if (text.length <= MAX) return text;
  }
  return clipText(text);
}

/** Unique processes of the evidence, `name[pid]` joined by ` > ` (oldest first). */
export function lineageText(evidence: readonly Signal[]): string {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const s of evidence) {
    const p = s.proc;
    const label = `${p.name ?? '?'}[${p.pid ?? '?'}${p.ppid !== null ? `<${p.ppid}` : ''}]`;
    if (!seen.has(label)) {
      seen.add(label);
      out.push(label);
    }
  }
  return clipText(out.join(' > '));
}

export interface FindingAlertOptions {
  /** The incident it belongs to (`companion.incident`, src/detect/notify.ts). */
  readonly incident?: string;
  /** Why an incident already sent is sent again (`companion.incident_update`); absent for its first detection. */
  readonly update?: 'escalated' | 'new_technique' | 'new_chain' | 'renotify' | null;
  /** Findings of the incident folded since its previous detection (`companion.repeated`). */
  readonly repeated?: number;
  /** Event time of the incident's previous detection (`companion.repeated_since`). */
  readonly repeatedSinceNs?: bigint | null;
  /** Wall-clock receive time for latency metrics (defaults to 0: set by the engine's clock). */
  readonly receivedAtMs?: number;
}

/** `2024-01-01T00:00:00Z`: an event time to the second. */
function secondsText(ns: bigint): string {
  return `${formatTimeNs(ns).slice(0, 19)}Z`;
}

export function findingToAlert(f: Finding, opts: FindingAlertOptions = {}): Alert {
  const last = f.evidence[f.evidence.length - 1] ?? null;
  // Workload facts from the newest evidence that has them (metadata can arrive late).
  const pick = (get: (s: Signal) => string | null): string | null => {
    for (let i = f.evidence.length - 1; i >= 0; i--) {
      const v = get(f.evidence[i] as Signal);
      if (v) return v;
    }
    return null;
  };
  const containerId = pick((s) => s.containerId);
  const ns = pick((s) => s.namespace);
  const pod = pick((s) => s.pod);
  const image = pick((s) => s.imageRepository);
  const tag = pick((s) => s.imageTag);
  const containerName = pick((s) => fieldString(s.alert, 'container.name'));
  const concrete = (ip: string | null): string | null => (ip && ip !== '0.0.0.0' && ip !== '::' ? ip : null);
  const sip = pick((s) => concrete(s.net.serverIp) ?? concrete(s.net.remoteIp));
  const hostname = pick((s) => s.alert.hostname);
  const repeated = opts.repeated ?? 0;

  const where = ns && pod ? ` k8s=${ns}/${pod}` : '';
  const since = opts.repeatedSinceNs ?? null;
  const rep = repeated > 0 ? ` (repeated ${repeated} times${since !== null ? ` since ${secondsText(since)}` : ''})` : '';
  const output = clipText(
    `${hms(f.timeNs)}: ${f.priority} ${f.message} (detector=${f.detector} score=${f.score} container=${containerId ?? 'host'}${image ? ` image=${image}${tag ? `:${tag}` : ''}` : ''}${where})${rep}`,
    1000,
  );

  const fields: Record<string, FieldValue> = {
    'container.id': containerId ?? 'host',
    'container.name': containerName,
    'container.image.repository': image,
    'container.image.tag': tag,
    'k8s.ns.name': ns,
    'k8s.pod.name': pod,
    'fd.sip': sip,
    'proc.name': last?.proc.name ?? null,
    'proc.pid': last?.proc.pid ?? null,
    'proc.exepath': last?.proc.exepath ? clipText(last.proc.exepath) : null,
    'proc.cmdline': last?.proc.cmdline ? clipText(last.proc.cmdline) : null,
  };
  const companion: Record<string, EnrichValue> = {
    detector: f.detector,
    score: f.score,
    evidence: evidenceText(f.evidence),
    lineage: lineageText(f.evidence),
    response: RESPONSE_STEPS,
    mitre: clipText(f.mitre.filter((m) => /^T\d/.test(m)).join(',')),
  };
  if (opts.incident) companion['incident'] = opts.incident;
  if (opts.update) companion['incident_update'] = opts.update;
  if (repeated > 0) {
    companion['repeated'] = repeated;
    if (since !== null) companion['repeated_since'] = secondsText(since);
  }
  for (const [k, v] of Object.entries(f.fields)) {
    if (k in companion) continue;
    companion[k] = typeof v === 'string' ? clipText(v) : v;
  }
  return createAlert({
    time: formatTimeNs(f.timeNs),
    rule: f.rule,
    priority: f.priority,
    source: DETECTION_SOURCE,
    hostname,
    output,
    tags: ['falco_companion', ...f.mitre],
    outputFields: fields,
    companion,
    origin: { kind: 'detector', component: `detect/${f.detector}` },
    receivedAtMs: opts.receivedAtMs ?? 0,
  });
}
