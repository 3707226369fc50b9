/** Detection settings (owned by the detection work: src/detect/). Detector tuning lives in the rules file. */
import { bool, duration, int, list, obj, str } from '../dsl.js';
import { parseCidr } from '../../net/cidr.js';
import { parseApiServer } from '../../detect/cluster.js';

const cidr = (v: string): string | null => (parseCidr(v) ? null : `must be an IP or CIDR such as 10.42.0.0/16 or fd00:10::/56; got ${JSON.stringify(v)}`);
const apiServer = (v: string): string | null => (parseApiServer(v) ? null : `must be an IP address with an optional port (10.96.0.1, 10.96.0.1:443, [fd00::1]:6443); got ${JSON.stringify(v)}`);

export const clusterSection = obj('What the cluster and this node look like, for the detectors: which destinations stay inside the cluster (the beacon detector scores only those that leave it) and where the Kubernetes API server is (the Kubernetes spread detector). Combined with enrich.egress.cluster_pod_cidrs / cluster_service_cidrs.', {
  discover: bool('Discover from the environment: the API server and the service network around it from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT, the node (or pod) network from this process\'s interfaces.', true),
  pod_cidrs: list('Pod network CIDRs.', str('CIDR', '', { check: cidr })),
  service_cidrs: list('Service network CIDRs (replaces the one guessed from KUBERNETES_SERVICE_HOST).', str('CIDR', '', { check: cidr })),
  node_cidrs: list('Node addresses or networks (the DaemonSet passes the node IP, status.hostIP, here).', str('CIDR', '', { check: cidr })),
  api_servers: list('Kubernetes API-server addresses (Service IP or endpoints), IP or IP:port.', str('address', '', { check: apiServer })),
});

export const detectSection = obj('Detection engine.', {
  enabled: bool('Run the detectors.', true),
  rules_file: str('Companion rules file (signals, detector settings, suppression, output; see docs/rules-file.md). Empty: the built-in defaults.', null),
  rules_poll_interval: duration('How often the rules file is checked for changes (mtime); it is also reloaded on SIGHUP. 0 disables polling.', 2000, { min: 0 }),
  forward_signal_alerts: bool('Forward alerts of the companion signal rules ("Companion signal: ...") to the sinks. When false, only detections and other alerts are forwarded. Overrides output.forward_signal_alerts of the rules file when set to false.', true),
  persist_state: bool('Keep the detection state (armed processes, beacon series, chains, incidents, learning-period starts) in the state database across restarts: restored at start, saved every `checkpoint_interval` and at a graceful stop. Replays never read or write it.', true),
  checkpoint_interval: duration('How often the detection state is checkpointed (wall clock; only what changed). 0: only at a graceful stop. After a crash the last checkpoint is restored.', 30_000, { min: 0 }),
  statistics: obj('Signal and detection statistics in the state directory (hourly aggregates, never raw events), read by `falco-companion tune` and `explain` (docs/tuning.md).', {
    enabled: bool('Keep the statistics (a failing state database only turns them off, logged and counted; detection goes on).', true),
    retention: duration('How much event time the statistics cover; older hours are deleted.', 8 * 24 * 3_600_000, { min: 3_600_000 }),
    max_rows: int('Rows kept at most (about 0.5 KB each); beyond it the oldest hours are deleted first.', 200_000, { min: 1000 }),
  }),
  cluster: clusterSection,
});
