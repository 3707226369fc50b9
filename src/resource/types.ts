/**
 * Resource usage sampling: what a collector reads for one container (cumulative counters and
 * gauges), what is known about the container (runtime or alerts), the metrics the analyser derives
 * and the deviation events it emits. Shared by the live source (src/sources/metrics.ts), the
 * analyser (src/resource/analyser.ts), recordings and the demo.
 */

/** The metrics judged per container: rates per second for counters, current values for gauges. */
export const RESOURCE_METRICS = ['cpu', 'memory', 'pids', 'net_rx_bytes', 'net_tx_bytes', 'net_rx_packets', 'net_tx_packets'] as const;
export type ResourceMetric = (typeof RESOURCE_METRICS)[number];

/** Units for messages. */
export const METRIC_UNITS: Readonly<Record<ResourceMetric, string>> = {
  cpu: 'cores',
  memory: 'bytes',
  pids: 'tasks',
  net_rx_bytes: 'B/s',
  net_tx_bytes: 'B/s',
  net_rx_packets: 'pkt/s',
  net_tx_packets: 'pkt/s',
};

/** Where a sample came from (metric label values). */
export type SampleSource = 'cgroup_v1' | 'cgroup_v2' | 'docker' | 'cri' | 'recording';

/**
 * One reading of one container. Counters are cumulative since the container (re)started; a
 * counter that goes down means a restart. null: not available from this source (CRI has no pids
 * or network per container; host-network containers have no network counters of their own).
 */
export interface RawSample {
  /** Container id as the runtime knows it (64 hex for Docker/containerd). */
  readonly id: string;
  /** Wall-clock time of the reading, ns since the epoch. */
  readonly timeNs: bigint;
  readonly source: SampleSource;
  /** Cumulative CPU time, ns. */
  readonly cpuNs: number | null;
  /** Working set: usage minus inactive file cache, bytes. */
  readonly memoryBytes: number | null;
  readonly pids: number | null;
  readonly rxBytes: number | null;
  readonly txBytes: number | null;
  readonly rxPackets: number | null;
  readonly txPackets: number | null;
}

/** What is known about a container (runtime list, inspect, or the alerts that named it). */
export interface ContainerMeta {
  readonly id: string;
  readonly name: string | null;
  /** Image repository (no tag), e.g. `registry.example.com/shop/api`. */
  readonly image: string | null;
  readonly tag: string | null;
  readonly namespace: string | null;
  readonly pod: string | null;
  /** Container name inside the pod (k8s) or compose service. */
  readonly containerName: string | null;
  /** Pod labels when known (CI workload selectors). */
  readonly podLabels: Readonly<Record<string, string>>;
  /** A host pid of one of its processes (network counters), when the runtime says. */
  readonly pid: number | null;
  /** Shares the host's network namespace: its network counters are the node's, not its own. */
  readonly hostNetwork: boolean;
  /** Start time, ns since the epoch, when known (warm-up). */
  readonly startedNs: bigint | null;
}

export function emptyMeta(id: string): ContainerMeta {
  return { id, name: null, image: null, tag: null, namespace: null, pod: null, containerName: null, podLabels: {}, pid: null, hostNetwork: false, startedNs: null };
}

/** Why a container was seen deviating: the verdict from its siblings at the same time. */
export type Verdict = 'lone' | 'load' | 'single';

/** One metric of a deviation event. */
export interface MetricDeviation {
  readonly metric: ResourceMetric;
  readonly value: number;
  /** Baseline median. */
  readonly baseline: number;
  /** Baseline 99th percentile. */
  readonly peak: number;
  /** value / max(median, floor). */
  readonly ratio: number;
  /** Robust z-score. */
  readonly z: number;
  /** Since when this metric deviates (ns). */
  readonly sinceNs: bigint;
  readonly siblings: number;
  readonly siblingsShowing: number;
  /** Up to 5 sibling values, `name=value`. */
  readonly siblingValues: readonly string[];
  readonly verdict: Verdict;
}

/** A container whose usage left its baseline and held: one `resource_deviation` signal. */
export interface DeviationEvent {
  readonly timeNs: bigint;
  readonly meta: ContainerMeta;
  /** Baseline group: `workload:<ns>/<owner>/<container>` or `image:<repository>` or `container:<id>`. */
  readonly group: string;
  /** Strongest first (by ratio). */
  readonly metrics: readonly MetricDeviation[];
  readonly source: SampleSource;
}

/** Output field names of the `resource_deviation` signal alert (src/resource/signal.ts writes them, the detector reads them). */
export const RF = {
  metric: 'resource.metric',
  value: 'resource.value',
  baseline: 'resource.baseline',
  peak: 'resource.peak',
  ratio: 'resource.ratio',
  z: 'resource.z',
  since: 'resource.since',
  heldS: 'resource.held_s',
  verdict: 'resource.verdict',
  siblings: 'resource.siblings',
  siblingsShowing: 'resource.siblings_showing',
  siblingValues: 'resource.sibling_values',
  metrics: 'resource.metrics',
  group: 'resource.group',
  source: 'resource.source',
} as const;

