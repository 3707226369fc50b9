/**
 * A deviation event as a Falco-shaped signal alert, `Companion signal: resource usage deviation`,
 * which the default signal mapping (src/detect/defaults/companion-rules.yaml) maps to the
 * `resource_deviation` signal kind. Going through the intake like any Falco alert, it gets the
 * spool, enrichment, suppression (allowlists, CI windows and workloads, learning), dedup and the
 * notify policy of the detection engine with no path of its own; it is forwarded like the other
 * signal alerts (`output.forward_signal_alerts`), at priority Informational (Debug for load).
 *
 * The numbers travel as `resource.*` output fields (the detector reads them from the alert).
 */
import { createAlert, formatTimeNs, type Alert, type FieldValue, type Origin } from '../alert.js';
import { fmtValue } from './analyser.js';
import { RF, type DeviationEvent, type MetricDeviation, type Verdict } from './types.js';

export { RF };

export const RESOURCE_SIGNAL_RULE = 'Companion signal: resource usage deviation';
export const RESOURCE_SIGNAL_SOURCE = 'metrics';

const VERDICT_RANK: Readonly<Record<Verdict, number>> = { lone: 0, single: 1, load: 2 };

/** The event's verdict (lone before single before load) and its primary metric (largest ratio with that verdict). */
export function primaryOf(ev: DeviationEvent): MetricDeviation {
  let best: MetricDeviation | null = null;
  for (const m of ev.metrics) {
    if (!best || VERDICT_RANK[m.verdict] < VERDICT_RANK[best.verdict] || (m.verdict === best.verdict && m.ratio > best.ratio)) best = m;
  }
  if (!best) throw new Error('deviation event without metrics');
  return best;
}

const r2 = (x: number): number => Math.round(x * 100) / 100;
const r1 = (x: number): number => Math.round(x * 10) / 10;

/** `cpu ×8.2 (1.64 vs 0.20, lone 0/2)` per metric, strongest first. */
export function metricsText(ev: DeviationEvent): string {
  return ev.metrics
    .map((m) => `${m.metric} ×${r1(m.ratio)} (${fmtValue(m.metric, m.value)} vs ${fmtValue(m.metric, m.baseline)}, ${m.verdict}${m.siblings > 0 ? ` ${m.siblingsShowing}/${m.siblings}` : ''})`)
    .join('; ')
    .slice(0, 500);
}

function labelsText(labels: Readonly<Record<string, string>>): string | null {
  const e = Object.entries(labels);
  return e.length === 0 ? null : e.map(([k, v]) => `${k}:${v}`).join(',').slice(0, 500);
}

export interface SignalAlertOptions {
  readonly hostname: string | null;
  readonly origin: Origin;
  readonly receivedAtMs?: number;
}

/** The Falco-shaped alert of one deviation event. */
export function deviationAlert(ev: DeviationEvent, o: SignalAlertOptions): Alert {
  const p = primaryOf(ev);
  const m = ev.meta;
  const time = formatTimeNs(ev.timeNs);
  const priority = p.verdict === 'load' ? 'Debug' : 'Informational';
  const id = m.id.slice(0, 12);
  const heldS = Math.max(0, Math.round(Number(ev.timeNs - p.sinceNs) / 1e9));
  const fields: Record<string, FieldValue> = {
    'evt.time': ev.timeNs <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(ev.timeNs) : String(ev.timeNs),
    'container.id': id,
    'container.name': m.name?.replace(/^\//, '') ?? null,
    'container.image.repository': m.image,
    'container.image.tag': m.tag,
    'k8s.ns.name': m.namespace,
    'k8s.pod.name': m.pod,
    'k8s.pod.labels': labelsText(m.podLabels),
    [RF.metric]: p.metric,
    [RF.value]: r2(p.value),
    [RF.baseline]: r2(p.baseline),
    [RF.peak]: r2(p.peak),
    [RF.ratio]: r1(p.ratio),
    [RF.z]: r1(p.z),
    [RF.since]: formatTimeNs(p.sinceNs),
    [RF.heldS]: heldS,
    [RF.verdict]: p.verdict,
    [RF.siblings]: p.siblings,
    [RF.siblingsShowing]: p.siblingsShowing,
    [RF.siblingValues]: p.siblingValues.join(', ').slice(0, 500) || null,
    [RF.metrics]: metricsText(ev),
    [RF.group]: ev.group.slice(0, 300),
    [RF.source]: ev.source,
  };
  for (const k of Object.keys(fields)) if (fields[k] === null) delete fields[k];
  const output =
    `${time.slice(11, 29)}: ${priority} ${RESOURCE_SIGNAL_RULE} | id=${id} metric=${p.metric} value=${fmtValue(p.metric, p.value)} baseline=${fmtValue(p.metric, p.baseline)} ` +
    `ratio=${r1(p.ratio)} verdict=${p.verdict} siblings=${p.siblingsShowing}/${p.siblings} held=${heldS}s image=${m.image ?? '?'}${m.pod ? ` k8s=${m.namespace ?? '?'}/${m.pod}` : ''}`;
  return createAlert({
    time,
    rule: RESOURCE_SIGNAL_RULE,
    priority,
    source: RESOURCE_SIGNAL_SOURCE,
    hostname: o.hostname,
    output,
    tags: ['falco_companion', 'resource'],
    outputFields: fields,
    origin: o.origin,
    receivedAtMs: o.receivedAtMs ?? 0,
  });
}
