/**
 * Kubernetes spread: a service-account token read (`sa_token_read`) followed, from the same
 * container within `window`, by API-server contact (`k8s_api_contact`); or kubelet contact
 * (`kubelet_contact`, or a `connect` to one of `kubelet_ports`) from a pod. Escalates when the
 * token was read by an interactive tool (`suspicious_readers`: cat, shells, base64, ...).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the latest
 * token read per container and the renotify stamps (LRU, evictions counted).
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, obj, oneOf, str, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { BoundedMap, compact, destOf, exeOf, msToNs, onceIn, raise, retain, whereOf } from './kit.js';

export const K8S_SPREAD_DETECTOR_ID = 'k8s_spread';
export const K8S_SPREAD_RULES = {
  token: 'Kubernetes spread: service-account token read, then API server contact',
  kubelet: 'Kubernetes spread: kubelet API contact from a pod',
} as const;
export const K8S_TOKEN_MITRE = ['T1528', 'T1552.007', 'T1613', 'mitre_credential_access', 'mitre_discovery'] as const;
export const K8S_KUBELET_MITRE = ['T1613', 'T1609', 'mitre_discovery', 'mitre_execution', 'mitre_lateral_movement'] as const;

export const k8sSpreadSettingsSpec = obj('Kubernetes spread: token read then API server, or kubelet contact from a pod.', {
  enabled: bool('Run this detector.', true),
  window: duration('API-server contact must follow the token read within this long.', 600_000, { min: 1000 }),
  kubelet_ports: list('Ports that count as kubelet contact for plain `connect` signals.', int('Port.', 10250, { min: 1, max: 65535 }), [10250, 10255]),
  suspicious_readers: list('Process names whose token read raises the priority.', str('Process name.', ''), ['cat', 'sh', 'bash', 'dash', 'ash', 'zsh', 'head', 'tail', 'less', 'more', 'base64', 'xxd', 'cp', 'tar', 'curl', 'wget']),
  priority: oneOf('Priority of token read then API contact.', PRIORITIES, 'Warning', { caseInsensitive: true }),
  kubelet_priority: oneOf('Priority of kubelet contact from a pod.', PRIORITIES, 'Error', { caseInsensitive: true }),
  renotify: duration('At most one finding per container and kind per this period.', 3_600_000, { min: 0 }),
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 10_000, { min: 1 }),
});

export type K8sSpreadSettings = Infer<typeof k8sSpreadSettingsSpec>;
export const K8S_SPREAD_DEFAULTS = defaults(k8sSpreadSettingsSpec) as unknown as K8sSpreadSettings;

export interface K8sSpreadState {
  /** Container id → latest token read. */
  readonly tokens: BoundedMap<string, Signal>;
  readonly reported: BoundedMap<string, bigint>;
}

export function createK8sSpreadDetector(overrides: Partial<K8sSpreadSettings> = {}): Detector<K8sSpreadState> {
  const cfg = { ...K8S_SPREAD_DEFAULTS, ...overrides } as K8sSpreadSettings;
  const windowNs = msToNs(cfg.window);
  const kubeletPorts = new Set(cfg.kubelet_ports);
  const readers = new Set(cfg.suspicious_readers);

  const renotifyNs = msToNs(cfg.renotify);
  const once = (st: K8sSpreadState, key: string, t: bigint): boolean => onceIn(st.reported, key, t, renotifyNs);

  return {
    id: K8S_SPREAD_DETECTOR_ID,
    consumes: ['sa_token_read', 'k8s_api_contact', 'kubelet_contact', 'connect'],
    init: () => ({ tokens: new BoundedMap<string, Signal>(cfg.max_containers), reported: new BoundedMap<string, bigint>(cfg.max_containers) }),
    evictions: (st) => st.tokens.evicted + st.reported.evicted,
    step(st, sig) {
      const none = { state: st, findings: [] as Finding[] };
      const cid = sig.containerId;
      if (cid === null) return none;
      if (sig.kind === 'sa_token_read') {
        st.tokens.set(cid, retain(sig)); // evidence only: no full alert per kept token read
        return none;
      }
      const d = destOf(sig);
      if (sig.kind === 'kubelet_contact' || (sig.kind === 'connect' && d.port !== null && kubeletPorts.has(d.port))) {
        const key = `${K8S_SPREAD_DETECTOR_ID}|kubelet|${cid}`;
        if (!once(st, key, sig.timeNs)) return none;
        return {
          state: st,
          findings: [
            {
              detector: K8S_SPREAD_DETECTOR_ID,
              rule: K8S_SPREAD_RULES.kubelet,
              priority: cfg.kubelet_priority,
              score: 0.8,
              message: `${exeOf(sig)} in ${whereOf(sig)} contacted a kubelet at ${d.host ?? '?'}:${d.port ?? '?'}`,
              mitre: K8S_KUBELET_MITRE,
              key,
              evidence: [sig],
              fields: compact({ 'k8s_spread.kind': 'kubelet', 'k8s_spread.dest': d.host, 'k8s_spread.dest_port': d.port, 'k8s_spread.exe': exeOf(sig) }),
              timeNs: sig.timeNs,
            },
          ],
        };
      }
      if (sig.kind !== 'k8s_api_contact') return none;
      const tok = st.tokens.get(cid);
      if (!tok || tok.timeNs > sig.timeNs || sig.timeNs - tok.timeNs > windowNs) return none;
      const key = `${K8S_SPREAD_DETECTOR_ID}|token|${cid}`;
      if (!once(st, key, sig.timeNs)) return none;
      const reader = tok.proc.name ?? exeOf(tok);
      const suspicious = readers.has(reader);
      const priority: Priority = suspicious ? raise(cfg.priority, 1) : cfg.priority;
      const secs = Number((sig.timeNs - tok.timeNs) / 1_000_000_000n);
      return {
        state: st,
        findings: [
          {
            detector: K8S_SPREAD_DETECTOR_ID,
            rule: K8S_SPREAD_RULES.token,
            priority,
            score: suspicious ? 0.8 : 0.6,
            message: `${reader} in ${whereOf(sig)} read the service-account token, then ${sig.proc.exepath ?? sig.proc.name ?? 'a process'} contacted the API server ${d.host ?? ''}${d.port !== null ? `:${d.port}` : ''} ${secs}s later`,
            mitre: K8S_TOKEN_MITRE,
            key,
            evidence: [tok, sig],
            fields: compact({ 'k8s_spread.kind': 'token_then_api', 'k8s_spread.reader': reader, 'k8s_spread.exe': exeOf(sig), 'k8s_spread.dest': d.host, 'k8s_spread.dest_port': d.port, 'k8s_spread.delay_s': secs }),
            timeNs: sig.timeNs,
          },
        ],
      };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const k8sSpreadModule = detectorModule({ id: K8S_SPREAD_DETECTOR_ID, settings: k8sSpreadSettingsSpec, quietInCi: false, create: createK8sSpreadDetector });
