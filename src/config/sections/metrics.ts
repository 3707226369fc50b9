/**
 * Resource usage sampling per container (the `metrics` source, src/sources/metrics.ts): which
 * files or runtime APIs are read, how often, the per-image baselines and what counts as a
 * deviation. The runtime (Docker or CRI) and its sockets are those of enrich.container.
 */
import { bool, checked, duration, int, num, obj, oneOf, size, str } from '../dsl.js';

export const METRICS_SOURCES = ['auto', 'cgroup', 'docker', 'cri'] as const;

const positive = (doc: string, def: number): ReturnType<typeof num> => num(doc, def, { min: 0 });

const deviationSpec = obj('What counts as a deviation of one container from its baseline (all of the conditions, held for `hold`).', {
  min_ratio: num('The value is at least this many times the baseline median.', 3, { min: 1 }),
  min_z: num('Robust z-score at least this: (value - median) / (IQR / 1.349).', 5, { min: 0 }),
  above_peak: num('The value is at least this many times the baseline\'s own 99th percentile (its usual peaks).', 1.25, { min: 1 }),
  hold: duration('A deviation must last this long without interruption (consecutive samples) before it is signalled; one signal per episode.', 30_000, { min: 0 }),
  end_after: duration('An episode ends after this long back within the baseline (shorter dips do not end it); a deviation after that is a new episode, signalled again.', 120_000, { min: 0 }),
  load_fraction: num('A deviation shared by at least this fraction of the sibling replicas (same workload or image, same node) at the same time is load.', 0.5, { min: 0, max: 1 }),
  sibling_share: num('A sibling "shows" the deviation when its value is at least this far (0..1) from the median towards the deviation threshold.', 0.5, { min: 0, max: 1 }),
  min_delta: obj('Smallest absolute increase over the median that can be a deviation, per metric (idle containers make large ratios of tiny numbers).', {
    cpu: positive('CPU, in cores (CPU seconds per second).', 0.2),
    memory: size('Working set memory.', 128 * 1024 * 1024, { min: 0 }),
    pids: positive('Processes and threads.', 20),
    net_rx_bytes: size('Received bytes per second.', 512 * 1024, { min: 0 }),
    net_tx_bytes: size('Sent bytes per second.', 512 * 1024, { min: 0 }),
    net_rx_packets: positive('Received packets per second.', 500),
    net_tx_packets: positive('Sent packets per second.', 500),
  }),
});

export const metricsSection = obj('Resource usage per container (the `metrics` source): CPU, working-set memory, pids, network bytes and packets, compared with robust per-image baselines; deviations become `resource_deviation` signals for the detection engine (docs/detections-resource.md).', {
  enabled: bool('Sample containers while a container runtime is reachable (enrich.container.runtime and its sockets) or containers are named by alerts; idle otherwise.', true),
  interval: duration('Time between two samples of every container.', 10_000, { min: 100, max: 600_000 }),
  source: oneOf(
    'Where the numbers come from. auto: cgroup and /proc files when readable, the runtime\'s stats API for containers whose files are not found. cgroup: files only. docker: Docker Engine /containers/{id}/stats. cri: CRI ListContainerStats (CPU and memory only).',
    METRICS_SOURCES,
    'auto',
    { caseInsensitive: true },
  ),
  cgroup_root: str('The host\'s cgroup filesystem (cgroup v2, or v1 with cpu/cpuacct, memory, pids hierarchies); in a pod, the host\'s /sys/fs/cgroup mounted read-only, e.g. at /host/sys/fs/cgroup.', '/sys/fs/cgroup'),
  proc_root: str('The host\'s /proc (network counters of a container process: <proc_root>/<pid>/net/dev); in a pod, mounted read-only, e.g. at /host/proc.', '/proc'),
  include_loopback: bool('Count traffic on the loopback interface of a container (off: sidecars and local proxies talk over lo all the time).', false),
  max_containers: int('Hard cap on containers sampled per tick; the others are skipped (counted in resource_capped_total) and sampled first next tick.', 500, { min: 1, max: 100_000 }),
  max_inflight: int('Runtime stats requests in flight at once (Docker / CRI sources).', 4, { min: 1, max: 64 }),
  warmup: duration('After a container starts (or restarts), its samples are neither judged nor learnt for this long (start-up spikes of JVMs, caches, migrations).', 180_000, { min: 0 }),
  seen_ttl: duration('Containers named only by alerts (no runtime list) are sampled for this long after their last alert.', 600_000, { min: 1000 }),
  baseline: checked(obj('Robust baselines per workload (namespace + owner + container name) when known, else per image repository; stored in the state directory.', {
    window: duration('Sliding window the baseline covers.', 86_400_000, { min: 60_000 }),
    slots: int('The window is kept as this many slots (the oldest slot is dropped as time moves on).', 12, { min: 1, max: 168 }),
    learning_period: duration('A baseline judges nothing until it has covered this long (event time).', 3_600_000, { min: 0 }),
    min_samples: int('… and holds at least this many samples.', 60, { min: 1 }),
    time_of_day_buckets: int('0: one baseline per workload and metric. N > 0: also one per N-th of the UTC day (e.g. 4: 6-hour buckets), used once it has learnt, for workloads with daily rhythms.', 0, { min: 0, max: 24, check: (n) => (n === 0 || 24 % n === 0 ? null : 'must divide 24 (1, 2, 3, 4, 6, 8, 12, 24) or be 0') }),
    adapt_after: duration('Values of a deviating container (lone, load or single) stay out of the baselines that judge it for this long, then are learnt: neither an attacker nor a passing spike teaches them, a lasting change becomes normal. Baselines still learning take every value.', 3_600_000, { min: 0 }),
    max_keys: int('Baselines kept (workload × metric [× bucket]); least recently updated evicted, counted.', 5000, { min: 10, max: 1_000_000 }),
    flush_interval: duration('How often changed baselines are written to the state database (the slots that changed, in one transaction) and, with store.backend: redis, their samples since the last flush handed to the cluster store (merged per baseline).', 300_000, { min: 100 }),
  }), (v, report) => {
    if (Number(v['learning_period']) > Number(v['window'])) report('learning_period must not be longer than window (the window never covers it)', ['learning_period']);
  }),
  deviation: deviationSpec,
});
