/**
 * `--verify URL`: ask a running companion (GET /detections on its ops port) whether the detections
 * a scenario declares arrived within a deadline, matching by the run's container id (container
 * runs), pod name (Kubernetes pods) or pids (host runs). One row per declared detection (detector,
 * MITRE technique, minimum priority); benign twins pass when nothing at Warning or above arrived.
 */
import { atLeast, parsePriority, type Priority } from '../alert.js';
import { errorMessage } from '../errors.js';
import type { DetectionSummary } from '../sinks/recent-detections.js';
import type { RunReport } from './run.js';
import type { DeclaredDetection, Scenario } from './scenarios.js';

export interface VerifyRow {
  readonly detector: string;
  readonly mitre: string;
  readonly minPriority: Priority;
  readonly rule: string | null;
  /** pass, fail, or pending (declared pending: reported, never fails the run). */
  readonly status: 'pass' | 'fail' | 'pending';
  readonly pending: string | null;
  /** The best matching detection, or why none matched. */
  readonly seen: string;
}

export interface VerifyReport {
  readonly url: string;
  readonly query: string;
  readonly waitedS: number;
  readonly rows: readonly VerifyRow[];
  /** Benign twins: detections at Warning or above (must be none). */
  readonly loud: readonly DetectionSummary[];
  readonly received: number;
  readonly ok: boolean;
  readonly error: string | null;
}

export interface VerifyOptions {
  readonly url: string;
  readonly waitS: number;
  readonly scenario: Scenario;
  readonly report: RunReport;
  readonly signal: AbortSignal;
  readonly progress?: (line: string) => void;
  /** Poll interval (ms). */
  readonly pollMs?: number;
}

/** The /detections query that finds this run's detections (null: the run cannot be identified). */
export function runQuery(r: RunReport): string | null {
  const since = new Date(Date.parse(r.startedAt) - 10_000).toISOString();
  const q = new URLSearchParams({ since, limit: '1000' });
  if (r.containerId) q.set('container', r.containerId.slice(0, 12));
  else if (r.pod) q.set('pod', r.pod);
  else if (r.hostRun && r.pids.length > 0) q.set('pid', r.pids.join(','));
  else return null;
  return q.toString();
}

function endpoint(url: string): string {
  const u = url.replace(/\/+$/, '');
  return u.endsWith('/detections') ? u : `${u}/detections`;
}

function matches(d: DeclaredDetection, s: DetectionSummary): boolean {
  if (s.detector !== d.detector) return false;
  if (!s.mitre.includes(d.mitre) && !s.tags.includes(d.mitre)) return false;
  return d.rule === undefined || s.rule.startsWith(d.rule);
}

function best(list: readonly DetectionSummary[]): DetectionSummary | null {
  let b: DetectionSummary | null = null;
  for (const s of list) if (b === null || atLeast(s.priority, b.priority)) b = s;
  return b;
}

/** Judge the detections seen so far against the declarations. */
export function evaluate(scenario: Scenario, seen: readonly DetectionSummary[]): { rows: VerifyRow[]; loud: DetectionSummary[] } {
  const rows: VerifyRow[] = scenario.detections.map((d) => {
    const hits = seen.filter((s) => matches(d, s));
    const b = best(hits);
    const ok = b !== null && atLeast(b.priority, d.minPriority);
    const sameDetector = seen.filter((s) => s.detector === d.detector);
    const why =
      b !== null
        ? `${b.priority} "${b.rule}" at ${b.time}${hits.length > 1 ? ` (+${hits.length - 1} more)` : ''}${ok ? '' : `: below ${d.minPriority}`}`
        : sameDetector.length > 0
          ? `${sameDetector.length} ${d.detector} detection(s) without ${d.mitre}${d.rule ? ` / rule ${d.rule}` : ''}`
          : 'no detection';
    return { detector: d.detector, mitre: d.mitre, minPriority: d.minPriority, rule: d.rule ?? null, pending: d.pending ?? null, status: ok ? 'pass' : d.pending ? 'pending' : 'fail', seen: why };
  });
  const loud = scenario.benign ? seen.filter((s) => atLeast(s.priority, 'Warning')) : [];
  return { rows, loud };
}

async function fetchDetections(url: string, signal: AbortSignal): Promise<DetectionSummary[]> {
  const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]), headers: { accept: 'application/json' } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 200)}`);
  const body = JSON.parse(text) as { detections?: unknown };
  if (!Array.isArray(body.detections)) throw new Error(`GET ${url}: no detections array (is this a falco-companion ops port?)`);
  return (body.detections as DetectionSummary[]).filter((d) => typeof d?.rule === 'string' && parsePriority(String(d.priority)) !== null).map((d) => ({ ...d, priority: parsePriority(String(d.priority)) as Priority, mitre: Array.isArray(d.mitre) ? d.mitre : [], tags: Array.isArray(d.tags) ? d.tags : [] }));
}

export async function verifyRun(o: VerifyOptions): Promise<VerifyReport> {
  const query = runQuery(o.report);
  const base = endpoint(o.url);
  const started = Date.now();
  const done = (rows: VerifyRow[], loud: DetectionSummary[], received: number, error: string | null, q = query ?? ''): VerifyReport => ({
    url: base,
    query: q,
    waitedS: Math.round((Date.now() - started) / 100) / 10,
    rows,
    loud,
    received,
    ok: error === null && rows.every((r) => r.status !== 'fail') && loud.length === 0,
    error,
  });
  if (query === null) {
    const r = evaluate(o.scenario, []);
    return done(r.rows, r.loud, 0, 'this run cannot be matched to detections: no container id (pass --container-id ID), pod or host pids');
  }
  const url = `${base}?${query}`;
  o.progress?.(`verify: polling ${url} for up to ${o.waitS} s`);
  const end = started + o.waitS * 1000;
  let seen: DetectionSummary[] = [];
  let lastErr: string | null = null;
  const firm = o.scenario.detections.filter((d) => !d.pending);
  for (;;) {
    try {
      seen = await fetchDetections(url, o.signal);
      lastErr = null;
    } catch (err) {
      lastErr = errorMessage(err);
    }
    const r = evaluate(o.scenario, seen);
    const firmDone = firm.length > 0 && r.rows.filter((x) => x.pending === null).every((x) => x.status === 'pass');
    if (o.scenario.benign && r.loud.length > 0) return done(r.rows, r.loud, seen.length, null);
    if (firmDone || Date.now() >= end || o.signal.aborted) return done(r.rows, r.loud, seen.length, lastErr);
    await new Promise((res) => setTimeout(res, Math.min(o.pollMs ?? 1000, Math.max(0, end - Date.now()))));
  }
}
