/**
 * Kubernetes spread: a service-account token read (`sa_token_read`) followed, from the same
 * container within `window`, by API-server contact; or kubelet contact (`kubelet_contact`, or a
 * `connect` to one of `kubelet_ports`) from a pod.
 *
 * API-server contact is the official "Contact K8S API Server From Container" alert
 * (`k8s_api_contact`, which needs Falco to resolve the API server's DNS name), or **any** `connect`
 * to a known API-server address: the companion pod's `KUBERNETES_SERVICE_HOST:PORT` and
 * `detect.cluster.api_servers` (src/detect/cluster.ts), and the destinations the official alerts
 * showed (learned, bounded: the Service IP and the endpoints clients reach directly).
 *
 * Every in-cluster client (controllers, operators, client-go apps) reads its token and calls the
 * API by design, so the priority follows who did it:
 * - the token read by an interactive tool (`suspicious_readers`: cat, shells, base64, curl, ...):
 *   `priority` + 1;
 * - the contact made by a shell / network tool (`tools`) or a program run from tmpfs / memfd, or by
 *   another program than the one that read the token: `priority`;
 * - the image's own program reading its token and calling the API: `client_priority` (Notice).
 * Kubelet contact: `kubelet_priority` under the same conditions, else `client_priority`
 * (metrics-server and Prometheus scrape every kubelet).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the
 * latest token read per container, learned API-server addresses, and an internal rate limit per
 * finding key (LRU, evictions counted).
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, obj, oneOf, str, type Infer } from '../../config/dsl.js';
import { parseIp } from '../../net/address.js';
import { type ApiServer, type DetectorEnv, NO_ENV } from '../cluster.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { basename, BoundedMap, compact, destOf, exeOf, msToNs, onceIn, raise, retain, unusualExeLocation, whereOf, RENOTIFY_DEPRECATED } from './kit.js';

export const K8S_SPREAD_DETECTOR_ID = 'k8s_spread';
export const K8S_SPREAD_RULES = {
  token: 'Kubernetes spread: service-account token read, then API server contact',
  kubelet: 'Kubernetes spread: kubelet API contact from a pod',
} as const;
export const K8S_TOKEN_MITRE = ['T1528', 'T1552.007', 'T1613', 'mitre_credential_access', 'mitre_discovery'] as const;
export const K8S_KUBELET_MITRE = ['T1613', 'T1609', 'mitre_discovery', 'mitre_execution', 'mitre_lateral_movement'] as const;

export const k8sSpreadSettingsSpec = obj('Kubernetes spread: token read then API server (official alert or any connect to a known API-server address), or kubelet contact from a pod.', {
  enabled: bool('Run this detector.', true),
  window: duration('API-server contact must follow the token read within this long.', 600_000, { min: 1000 }),
  kubelet_ports: list('Ports that count as kubelet contact for plain `connect` signals.', int('Port.', 10250, { min: 1, max: 65535 }), [10250, 10255]),
  suspicious_readers: list('Process names whose token read raises the priority.', str('Process name.', ''), ['cat', 'sh', 'bash', 'dash', 'ash', 'zsh', 'head', 'tail', 'less', 'more', 'base64', 'xxd', 'od', 'hexdump', 'cp', 'tar', 'curl', 'wget']),
  tools: list('Shells and network tools: API or kubelet contact made by one of these (by process name) is not a client doing its job.', str('Process name.', ''), ['sh', 'bash', 'dash', 'ash', 'zsh', 'curl', 'wget', 'nc', 'ncat', 'netcat', 'socat', 'telnet', 'openssl', 'kubectl', 'kubeletctl', 'busybox']),
  priority: oneOf('Priority of token read then API contact by a tool, or by another program than the reader.', PRIORITIES, 'Warning', { caseInsensitive: true }),
  kubelet_priority: oneOf('Priority of kubelet contact by a tool, a program from tmpfs, or after a suspicious token read.', PRIORITIES, 'Error', { caseInsensitive: true }),
  client_priority: oneOf('Priority when the image\'s own program reads its token and calls the API or a kubelet (what in-cluster clients and scrapers do).', PRIORITIES, 'Notice', { caseInsensitive: true }),
  renotify: RENOTIFY_DEPRECATED,
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 10_000, { min: 1 }),
  max_api_servers: int('API-server addresses learned from official alerts (least recently seen evicted, counted).', 32, { min: 1 }),
});

export type K8sSpreadSettings = Infer<typeof k8sSpreadSettingsSpec>;
export const K8S_SPREAD_DEFAULTS = defaults(k8sSpreadSettingsSpec) as unknown as K8sSpreadSettings;

export interface K8sSpreadState {
  /** Container id → latest token read. */
  readonly tokens: BoundedMap<string, Signal>;
  /** Internal rate limit: finding key|priority → last finding time. */
  readonly reported: BoundedMap<string, bigint>;
  /** `ip|port` of API-server destinations the official alerts showed → last seen. */
  readonly api: BoundedMap<string, bigint>;
}

/** One finding per key and priority per this long at most (internal: the engine's notify policy decides what is sent). */
const RATE_NS = 600_000_000_000n;

export function createK8sSpreadDetector(overrides: Partial<K8sSpreadSettings> = {}, env: DetectorEnv = NO_ENV): Detector<K8sSpreadState> {
  const cfg = { ...K8S_SPREAD_DEFAULTS, ...overrides } as K8sSpreadSettings;
  const windowNs = msToNs(cfg.window);
  const kubeletPorts = new Set(cfg.kubelet_ports);
  const readers = new Set(cfg.suspicious_readers);
  const tools = new Set(cfg.tools);
  const known: readonly ApiServer[] = env.cluster.apiServers;

  const once = (st: K8sSpreadState, key: string, t: bigint): boolean => onceIn(st.reported, key, t, RATE_NS);

  /** Canonical `ip|port` of the remote side, or null. */
  function destKey(sig: Signal): { ip: string; port: number | null } | null {
    const d = destOf(sig);
    const ip = d.ip ? parseIp(d.ip) : null;
    return ip ? { ip: d.ip as string, port: d.port } : null;
  }

  function isApiServer(st: K8sSpreadState, sig: Signal): boolean {
    const d = destKey(sig);
    if (!d) return false;
    if (known.some((a) => a.ip === d.ip && (a.port === null || a.port === d.port))) return true;
    return st.api.touch(`${d.ip}|${d.port ?? ''}`) !== undefined;
  }

  const toolLike = (s: Signal): boolean => {
    const name = s.proc.name ?? (s.proc.exepath ? basename(s.proc.exepath) : null);
    return (name !== null && tools.has(name)) || unusualExeLocation(s.proc.exepath) !== null;
  };
  const readerOf = (tok: Signal): string => tok.proc.name ?? exeOf(tok);

  return {
    id: K8S_SPREAD_DETECTOR_ID,
    consumes: ['sa_token_read', 'k8s_api_contact', 'kubelet_contact', 'connect'],
    init: () => ({
      tokens: new BoundedMap<string, Signal>(cfg.max_containers),
      reported: new BoundedMap<string, bigint>(cfg.max_containers),
      api: new BoundedMap<string, bigint>(cfg.max_api_servers),
    }),
    evictions: (st) => st.tokens.evicted + st.reported.evicted + st.api.evicted,
    step(st, sig) {
      const none = { state: st, findings: [] as Finding[] };
      if (sig.kind === 'k8s_api_contact') {
        const d = destKey(sig);
        if (d) st.api.set(`${d.ip}|${d.port ?? ''}`, sig.timeNs);
      }
      const cid = sig.containerId;
      if (cid === null) return none;
      if (sig.kind === 'sa_token_read') {
        st.tokens.set(cid, retain(sig)); // evidence only: no full alert per kept token read
        return none;
      }
      const d = destOf(sig);
      const tok = st.tokens.get(cid);
      const tokLive = tok !== undefined && tok.timeNs <= sig.timeNs && sig.timeNs - tok.timeNs <= windowNs;
      const suspiciousRead = tokLive && readers.has(readerOf(tok));
      if (sig.kind === 'kubelet_contact' || (sig.kind === 'connect' && d.port !== null && kubeletPorts.has(d.port))) {
        const bad = toolLike(sig) || suspiciousRead;
        const priority: Priority = bad ? cfg.kubelet_priority : cfg.client_priority;
        const key = `${K8S_SPREAD_DETECTOR_ID}|kubelet|${cid}`;
        if (!once(st, `${key}|${priority}`, sig.timeNs)) return none;
        return {
          state: st,
          findings: [
            {
              detector: K8S_SPREAD_DETECTOR_ID,
              rule: K8S_SPREAD_RULES.kubelet,
              priority,
              score: bad ? 0.8 : 0.3,
              message: `${exeOf(sig)} in ${whereOf(sig)} contacted a kubelet at ${d.host ?? '?'}:${d.port ?? '?'}${bad ? (suspiciousRead ? ` after ${readerOf(tok as Signal)} read the service-account token` : ' (a shell or network tool)') : ' (the image\'s own program, as scrapers do)'}`,
              mitre: K8S_KUBELET_MITRE,
              key,
              evidence: suspiciousRead ? [tok as Signal, sig] : [sig],
              fields: compact({ 'k8s_spread.kind': 'kubelet', 'k8s_spread.dest': d.host, 'k8s_spread.dest_port': d.port, 'k8s_spread.exe': exeOf(sig), 'k8s_spread.tool': toolLike(sig) }),
              timeNs: sig.timeNs,
            },
          ],
        };
      }
      const apiContact = sig.kind === 'k8s_api_contact' || (sig.kind === 'connect' && isApiServer(st, sig));
      if (!apiContact || !tokLive) return none;
      const reader = readerOf(tok);
      const sameProgram = tok.proc.exepath !== null && tok.proc.exepath === sig.proc.exepath;
      const tool = toolLike(sig);
      const priority: Priority = suspiciousRead ? raise(cfg.priority, 1) : tool || !sameProgram ? cfg.priority : cfg.client_priority;
      const key = `${K8S_SPREAD_DETECTOR_ID}|token|${cid}`;
      if (!once(st, `${key}|${priority}`, sig.timeNs)) return none;
      const secs = Number((sig.timeNs - tok.timeNs) / 1_000_000_000n);
      const how = sig.kind === 'k8s_api_contact' ? 'official_alert' : 'connect';
      return {
        state: st,
        findings: [
          {
            detector: K8S_SPREAD_DETECTOR_ID,
            rule: K8S_SPREAD_RULES.token,
            priority,
            score: suspiciousRead ? 0.8 : priority === cfg.client_priority ? 0.3 : 0.6,
            message:
              `${reader} in ${whereOf(sig)} read the service-account token, then ${sig.proc.exepath ?? sig.proc.name ?? 'a process'} contacted the API server ` +
              `${d.host ?? ''}${d.port !== null ? `:${d.port}` : ''} ${secs}s later${priority === cfg.client_priority ? ' (the same program: an in-cluster client)' : ''}`,
            mitre: K8S_TOKEN_MITRE,
            key,
            evidence: [tok, sig],
            fields: compact({
              'k8s_spread.kind': 'token_then_api',
              'k8s_spread.reader': reader,
              'k8s_spread.exe': exeOf(sig),
              'k8s_spread.dest': d.host,
              'k8s_spread.dest_port': d.port,
              'k8s_spread.delay_s': secs,
              'k8s_spread.contact': how,
            }),
            timeNs: sig.timeNs,
          },
        ],
      };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const k8sSpreadModule = detectorModule({ id: K8S_SPREAD_DETECTOR_ID, settings: k8sSpreadSettingsSpec, quietInCi: false, create: createK8sSpreadDetector });
