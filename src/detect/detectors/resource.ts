/**
 * Resource deviation (T1496 resource hijacking; T1041/T1048 exfiltration; T1498 network denial of
 * service; T1105 ingress tool transfer): what a container's usage leaving its baseline means,
 * from the `resource_deviation` signals of the metrics source (src/sources/metrics.ts) and the
 * other signals of the same container.
 *
 * - **precursor**: the deviation began within `follow_window` after a suspicious signal in the
 *   same container (execution from tmpfs, shell, shell on a socket, network tool, service-account
 *   token read, process rename, a connection to a never-seen destination, a new image digest), or
 *   such a signal, processed later, happened in that window or up to 2 minutes after the deviation
 *   was signalled: "CPU ×8 45 s after an execution from /dev/shm". Regardless of the siblings: a
 *   fleet-wide compromise spikes every replica.
 * - **lone**: only this replica deviates (×`lone_min_ratio` or more on one of the
 *   `unexplained_metrics`: CPU, bytes or packets out); its siblings (same workload or image,
 *   sampled at the same time on this node) do not.
 * - **single**: no sibling on this node; reported only when the ratio reaches `single_min_ratio`.
 * Memory, tasks and inbound traffic alone (leaks, thread pools, uploads) need a precursor.
 * - **load**: most siblings deviate too (a legitimate load spike): counted, no finding.
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): per
 * container the recent precursors (slim copies) and the last deviation (LRU, evictions counted).
 */
import { parseTime, PRIORITIES, type FieldValue, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, num, obj, oneOf, type Infer } from '../../config/dsl.js';
import { DEST, IMAGE } from '../../enrich/keys.js';
import { RESOURCE_METRICS, RF } from '../../resource/types.js';
import { type Detector, detectorModule, type Finding, type Signal, type SignalKind } from '../types.js';
import { BoundedMap, byTime, cBool, compact, destOf, exeOf, imageOf, msToNs, retain, whereOf } from './kit.js';

export const RESOURCE_DETECTOR_ID = 'resource_deviation';
export const RESOURCE_RULES = {
  precursor: 'Resource deviation: usage spike after a suspicious action in the container',
  lone: 'Resource deviation: one replica deviates, its siblings do not',
  single: "Resource deviation: sustained spike against the workload's own history",
} as const;

export const PRECURSORS = ['tmpfs_exec', 'shell_spawn', 'shell_socket', 'network_tool', 'sa_token_read', 'proc_rename', 'new_egress', 'new_image_digest'] as const;
export type Precursor = (typeof PRECURSORS)[number];

export const resourceSettingsSpec = obj('Resource deviation: a container whose CPU, memory, pids or network left its baseline, judged with its siblings and its other signals.', {
  enabled: bool('Run this detector.', true),
  follow_window: duration('A deviation that began within this long after a suspicious signal of the same container is a detection, whatever the siblings do (a signal processed later counts too when it happened in that window or up to 2 minutes after the deviation was signalled).', 600_000, { min: 1000 }),
  precursors: list('Signals that make a following deviation a detection: tmpfs_exec, shell_spawn, shell_socket, network_tool, sa_token_read, proc_rename, new_egress (a connect to a destination never seen for the image), new_image_digest (image.tag_mutated).', oneOf('Precursor.', PRECURSORS, 'tmpfs_exec'), [...PRECURSORS]),
  lone: bool('Report a replica that deviates while its siblings on the node do not, without a precursor.', true),
  lone_min_ratio: num('… at this ratio over its baseline or more (sticky clients and leaders load one replica 2-3× for hours).', 5, { min: 1 }),
  single_min_ratio: num('A container with no sibling on the node and no precursor is reported only at this ratio over its baseline or more (0: never).', 10, { min: 0 }),
  unexplained_metrics: list(
    'Metrics reported without a precursor (lone, single). The others (memory, tasks, inbound traffic: leaks, thread pools, uploads) count only after a precursor.',
    oneOf('Metric.', RESOURCE_METRICS, 'cpu'),
    ['cpu', 'net_tx_bytes', 'net_tx_packets'],
  ),
  precursor_priority: oneOf('Priority of a deviation after a precursor.', PRIORITIES, 'Error', { caseInsensitive: true }),
  critical_precursors: list('Precursors that make it Critical.', oneOf('Precursor.', PRECURSORS, 'tmpfs_exec'), ['tmpfs_exec', 'shell_socket']),
  lone_priority: oneOf('Priority of a lone replica deviation.', PRIORITIES, 'Warning', { caseInsensitive: true }),
  single_priority: oneOf('Priority of a single-instance deviation.', PRIORITIES, 'Notice', { caseInsensitive: true }),
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 10_000, { min: 1 }),
});

export type ResourceSettings = Infer<typeof resourceSettingsSpec>;
export const RESOURCE_DEFAULTS = defaults(resourceSettingsSpec) as unknown as ResourceSettings;

/** One metric of a deviation episode (from the `resource.metrics` summary). */
export interface MetricFact {
  readonly metric: string;
  readonly ratio: number;
  /** As the metrics source formatted them (`1.64`, `7.6MiB/s`). */
  readonly value: string | null;
  readonly baseline: string | null;
  readonly verdict: string;
  readonly showing: number | null;
  readonly siblings: number | null;
}

/** The numbers of one deviation signal (read from its `resource.*` fields). */
export interface DeviationFacts {
  readonly metric: string;
  readonly value: number | null;
  readonly baseline: number | null;
  readonly ratio: number;
  readonly heldS: number | null;
  readonly sinceNs: bigint;
  readonly verdict: string;
  readonly siblings: number;
  readonly showing: number;
  readonly siblingValues: string | null;
  readonly metrics: string | null;
  readonly group: string | null;
  /** Every metric of the episode, strongest first (the primary alone when there is no summary). */
  readonly all: readonly MetricFact[];
}

const SUMMARY = /([a-z_]+) ×([\d.]+) \((\S+) vs (\S+), (lone|load|single)(?: (\d+)\/(\d+))?\)/g;

/** Parse `cpu ×8.2 (1.64 vs 0.20, lone 0/2); net_tx_bytes ×20 (…)`. */
export function parseSummary(text: string | null): MetricFact[] {
  const out: MetricFact[] = [];
  for (const m of (text ?? '').matchAll(SUMMARY)) {
    out.push({ metric: m[1] as string, ratio: Number(m[2]), value: m[3] ?? null, baseline: m[4] ?? null, verdict: m[5] as string, showing: m[6] === undefined ? null : Number(m[6]), siblings: m[7] === undefined ? null : Number(m[7]) });
  }
  return out;
}

interface LastDeviation {
  readonly sig: Signal;
  readonly facts: DeviationFacts;
  /** A precursor finding was already made for it. */
  precursorReported: boolean;
}

interface Box {
  /** Recent precursors, oldest first (at most 4). */
  precursors: { readonly sig: Signal; readonly kind: Precursor }[];
  last: LastDeviation | null;
}

export interface ResourceState {
  readonly boxes: BoundedMap<string, Box>;
  /** Load deviations (most siblings show it) without a precursor: no finding. */
  load: number;
  /** Single-instance deviations below single_min_ratio without a precursor, and lone ones with `lone: false`. */
  quiet: number;
}

function field(s: Signal, k: string): FieldValue | undefined {
  return s.alert.outputFields?.[k];
}
function fnum(s: Signal, k: string): number | null {
  const v = field(s, k);
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : v !== null && typeof v === 'object' ? Number(v.raw) : Number.NaN;
  return Number.isFinite(n) ? n : null;
}
function fstr(s: Signal, k: string): string | null {
  const v = field(s, k);
  if (v === undefined || v === null || v === '') return null;
  return typeof v === 'object' ? v.raw : String(v);
}

/** The facts of a `resource_deviation` signal; null when it carries no metric. */
export function deviationFacts(s: Signal): DeviationFacts | null {
  const metric = fstr(s, RF.metric);
  if (!metric) return null;
  const since = fstr(s, RF.since);
  const held = fnum(s, RF.heldS);
  const sinceNs = (since ? (parseTime(since)?.ns ?? null) : null) ?? (held !== null ? s.timeNs - BigInt(Math.round(held * 1e9)) : s.timeNs);
  const ratio = fnum(s, RF.ratio) ?? 1;
  const verdict = fstr(s, RF.verdict) ?? 'single';
  const siblings = fnum(s, RF.siblings) ?? 0;
  const showing = fnum(s, RF.siblingsShowing) ?? 0;
  const value = fnum(s, RF.value);
  const baseline = fnum(s, RF.baseline);
  const metrics = fstr(s, RF.metrics);
  const parsed = parseSummary(metrics);
  const all = parsed.some((m) => m.metric === metric)
    ? parsed
    : [{ metric, ratio, value: value === null ? null : String(value), baseline: baseline === null ? null : String(baseline), verdict, showing, siblings }, ...parsed];
  return { metric, value, baseline, ratio, heldS: held, sinceNs, verdict, siblings, showing, siblingValues: fstr(s, RF.siblingValues), metrics, group: fstr(s, RF.group), all };
}

const LABEL: Readonly<Record<string, string>> = {
  cpu: 'CPU',
  memory: 'memory',
  pids: 'tasks',
  net_rx_bytes: 'inbound bytes',
  net_tx_bytes: 'outbound bytes',
  net_rx_packets: 'inbound packets',
  net_tx_packets: 'outbound packets',
};

const MITRE_BY_METRIC: Readonly<Record<string, readonly string[]>> = {
  cpu: ['T1496', 'mitre_impact'],
  memory: ['T1496', 'mitre_impact'],
  pids: ['T1496', 'mitre_impact'],
  net_tx_bytes: ['T1041', 'T1048', 'mitre_exfiltration'],
  net_tx_packets: ['T1498', 'mitre_impact'],
  net_rx_bytes: ['T1105', 'mitre_command_and_control'],
  net_rx_packets: ['T1105', 'mitre_command_and_control'],
};

const RESPONSE_CPU =
  "1) list the container's processes by CPU (crictl/docker exec top, or /proc/<pid>/stat on the node): miners are usually new binaries in /tmp, /dev/shm or renamed kworker-like names; 2) compare with a sibling replica; 3) look for connections to mining pools (stratum, ports 3333/4444/5555/14444); 4) isolate the pod (Falco Talon kubernetes:networkpolicy), keep it for forensics, redeploy from a clean image";
const RESPONSE_NET =
  '1) find where the bytes go (Falco connect signals of the container, conntrack on the node); 2) check what it could read (service-account token, mounted secrets, databases) and rotate those credentials; 3) block its egress (network policy), keep the pod for forensics; 4) engage incident response';


function precursorOf(s: Signal, wanted: ReadonlySet<Precursor>): Precursor | null {
  if (wanted.has('new_image_digest') && cBool(s, IMAGE.tagMutated) === true) return 'new_image_digest';
  if (s.kind === 'connect') return wanted.has('new_egress') && cBool(s, DEST.newForImage) === true && cBool(s, DEST.learning) !== true ? 'new_egress' : null;
  return wanted.has(s.kind as Precursor) ? (s.kind as Precursor) : null;
}

function precursorText(kind: Precursor, s: Signal): string {
  switch (kind) {
    case 'tmpfs_exec':
      return `an execution from ${s.proc.exepath ?? 'tmpfs'}`;
    case 'shell_spawn':
      return `a shell (${exeOf(s)})`;
    case 'shell_socket':
      return `a shell on a socket (${exeOf(s)})`;
    case 'network_tool':
      return `network tool ${exeOf(s)}`;
    case 'sa_token_read':
      return `a service-account token read by ${exeOf(s)}`;
    case 'proc_rename':
      return `a process renamed to ${s.proc.name ?? '?'}`;
    case 'new_egress': {
      const d = destOf(s);
      return `a connection to never-seen ${d.host ?? '?'}:${d.port ?? '?'}`;
    }
    case 'new_image_digest':
      return 'a new image digest behind its tag';
  }
}

const secs = (ns: bigint): number => Math.round(Number(ns) / 1e9);

/** A precursor processed after the deviation signal still counts up to this long after it (event time). */
export const DURING_NS = 120_000_000_000n;

export function createResourceDetector(overrides: Partial<ResourceSettings> = {}): Detector<ResourceState> {
  const cfg = { ...RESOURCE_DEFAULTS, ...overrides } as ResourceSettings;
  const wanted = new Set<Precursor>(cfg.precursors);
  const critical = new Set<Precursor>(cfg.critical_precursors);
  const allowed = new Set<string>(cfg.unexplained_metrics);
  const windowNs = msToNs(cfg.follow_window);
  const kinds = new Set<SignalKind>(['resource_deviation']);
  for (const p of wanted) {
    if (p === 'new_egress') kinds.add('connect');
    else if (p === 'new_image_digest') for (const k of ['container_start', 'shell_spawn', 'network_tool', 'connect'] as const) kinds.add(k);
    else kinds.add(p);
  }

  /** The metric a finding is about: the strongest of the episode, or of those that qualify without a precursor. */
  function unexplained(facts: DeviationFacts, verdict: 'lone' | 'single', minRatio: number): MetricFact | null {
    let best: MetricFact | null = null;
    for (const m of facts.all) if (allowed.has(m.metric) && m.verdict === verdict && m.ratio >= minRatio && (!best || m.ratio > best.ratio)) best = m;
    return best;
  }

  function finding(kind: keyof typeof RESOURCE_RULES, dev: Signal, facts: DeviationFacts, chosen: MetricFact, pre: { sig: Signal; kind: Precursor } | null): Finding {
    const metrics = facts.all.map((m) => m.metric);
    const mitre = new Set<string>();
    for (const m of metrics) for (const t of MITRE_BY_METRIC[m] ?? []) mitre.add(t);
    if (pre?.kind === 'sa_token_read') {
      mitre.add('T1528');
      mitre.add('mitre_credential_access');
    }
    const priority: Priority = kind === 'precursor' ? (pre && critical.has(pre.kind) ? 'Critical' : cfg.precursor_priority) : kind === 'lone' ? cfg.lone_priority : cfg.single_priority;
    const score = kind === 'precursor' ? 0.9 : kind === 'lone' ? (chosen.ratio >= 10 ? 0.7 : 0.6) : 0.5;
    const image = imageOf(dev) ?? dev.containerId ?? '?';
    const primary = chosen.metric === facts.metric;
    const what = `${LABEL[chosen.metric] ?? chosen.metric} ×${chosen.ratio}${chosen.value !== null && chosen.baseline !== null ? ` (${chosen.value} vs baseline ${chosen.baseline})` : ''}`;
    let message = `${what} in ${whereOf(dev)} (image ${image})${facts.heldS !== null ? `, held ${facts.heldS} s` : ''}`;
    let after: number | null = null;
    if (pre) {
      after = secs(facts.sinceNs - pre.sig.timeNs);
      message += after >= 0 ? `, ${after} s after ${precursorText(pre.kind, pre.sig)}` : `; ${-after} s into it: ${precursorText(pre.kind, pre.sig)}`;
    }
    const siblings = chosen.siblings ?? (primary ? facts.siblings : 0);
    const showing = chosen.showing ?? (primary ? facts.showing : 0);
    if (siblings > 0) message += `; ${showing} of ${siblings} sibling replica(s) show it${primary && facts.siblingValues ? ` (${facts.siblingValues})` : ''}`;
    else message += '; no sibling replica on this node';
    if (metrics.length > 1 && facts.metrics) message += `; all: ${facts.metrics}`;
    const net = metrics.some((m) => m.startsWith('net_tx'));
    const evidence = pre ? [pre.sig, dev].sort(byTime) : [dev];
    return {
      detector: RESOURCE_DETECTOR_ID,
      rule: RESOURCE_RULES[kind],
      priority,
      score,
      message,
      mitre: [...mitre],
      key: `${RESOURCE_DETECTOR_ID}|${dev.containerId ?? 'host'}`,
      evidence,
      fields: compact({
        'resource.kind': kind,
        'resource.metric': chosen.metric,
        'resource.value': primary ? facts.value : null,
        'resource.baseline': primary ? facts.baseline : null,
        'resource.ratio': chosen.ratio,
        'resource.held_s': facts.heldS,
        'resource.verdict': chosen.verdict,
        'resource.siblings': siblings,
        'resource.siblings_showing': showing,
        'resource.sibling_values': primary ? facts.siblingValues : null,
        'resource.metrics': facts.metrics,
        'resource.group': facts.group,
        'resource.precursor': pre?.kind,
        'resource.precursor_rule': pre?.sig.rule,
        'resource.precursor_exe': pre ? exeOf(pre.sig) : null,
        'resource.precursor_after_s': after,
        'resource.response': net ? RESPONSE_NET : RESPONSE_CPU,
      }),
      timeNs: pre && pre.sig.timeNs > dev.timeNs ? pre.sig.timeNs : dev.timeNs,
    };
  }

  return {
    id: RESOURCE_DETECTOR_ID,
    consumes: [...kinds],
    init: () => ({ boxes: new BoundedMap<string, Box>(cfg.max_containers), load: 0, quiet: 0 }),
    evictions: (st) => st.boxes.evicted,
    step(st, sig) {
      const none = { state: st, findings: [] as Finding[] };
      const cid = sig.containerId;
      if (cid === null) return none;
      let box = st.boxes.touch(cid);
      if (sig.kind === 'resource_deviation') {
        const facts = deviationFacts(sig);
        if (!facts) return none;
        box ??= { precursors: [], last: null };
        st.boxes.set(cid, box);
        box.precursors = box.precursors.filter((p) => p.sig.timeNs >= facts.sinceNs - windowNs);
        const kept = retain(sig);
        const pre = [...box.precursors].reverse().find((p) => p.sig.timeNs <= sig.timeNs) ?? null;
        box.last = { sig: kept, facts, precursorReported: pre !== null };
        const strongest = facts.all.reduce((a, b) => (b.ratio > a.ratio ? b : a), facts.all[0] as MetricFact);
        if (pre) return { state: st, findings: [finding('precursor', kept, facts, strongest, pre)] };
        const lone = cfg.lone ? unexplained(facts, 'lone', cfg.lone_min_ratio) : null;
        if (lone) return { state: st, findings: [finding('lone', kept, facts, lone, null)] };
        const single = cfg.single_min_ratio > 0 ? unexplained(facts, 'single', cfg.single_min_ratio) : null;
        if (single) return { state: st, findings: [finding('single', kept, facts, single, null)] };
        if (facts.all.every((m) => m.verdict === 'load')) st.load++;
        else st.quiet++;
        return none;
      }
      const kind = precursorOf(sig, wanted);
      if (kind === null) return none;
      box ??= { precursors: [], last: null };
      st.boxes.set(cid, box);
      const kept = retain(sig);
      box.precursors.push({ sig: kept, kind });
      if (box.precursors.length > 4) box.precursors.shift();
      const last = box.last;
      // Processed after the deviation (a late alert, or an action while it deviates): it counts
      // when its event time is in the window before the deviation began or up to DURING_NS after
      // the deviation was signalled (how long it lasted after that is not known here).
      if (last && !last.precursorReported && sig.timeNs >= last.facts.sinceNs - windowNs && sig.timeNs <= last.sig.timeNs + DURING_NS) {
        last.precursorReported = true;
        const strongest = last.facts.all.reduce((a, b) => (b.ratio > a.ratio ? b : a), last.facts.all[0] as MetricFact);
        return { state: st, findings: [finding('precursor', last.sig, last.facts, strongest, { sig: kept, kind })] };
      }
      return none;
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const resourceModule = detectorModule({ id: RESOURCE_DETECTOR_ID, settings: resourceSettingsSpec, quietInCi: true, create: createResourceDetector });
