/**
 * Detection contracts: signals (what the detectors consume), detectors (deterministic state
 * machines on event time; state owned by the engine, mutated in place), the registry entry a
 * detector module exports, and the vocabulary shared by the shipped Falco rules (falco-rules/) and
 * the default signal mapping (src/detect/defaults/). Change names here and in both places together.
 */
import type { Alert, FieldValue, Priority } from '../alert.js';
import type { RemoteSeries } from '../cluster/types.js';
import type { ObjectSpec } from '../config/dsl.js';
import { NO_ENV, type DetectorEnv } from './cluster.js';

export const SIGNAL_KINDS = [
  'raw_socket', // AF_PACKET or AF_INET/AF_INET6 SOCK_RAW socket created
  'filter_attach', // setsockopt SO_ATTACH_FILTER / SO_ATTACH_BPF
  'bpf_load', // bpf(BPF_PROG_LOAD)
  'firewall_exec', // iptables / ip6tables / nft / ufw / firewall-cmd run (args parsed)
  'listen', // bind/listen (incl. wildcard addresses)
  'accept', // inbound connection accepted
  'connect', // outbound connect
  'shell_socket', // shell whose stdio is a socket (or stdio redirected to a socket)
  'proc_rename', // prctl(PR_SET_NAME)
  'tmpfs_exec', // exec from /dev/shm, /run, /tmp-like tmpfs
  'pidfile_create', // pid/lock file created under /var/run or /run
  'escape', // one escape indicator; `subtype` names which (see ESCAPE_SUBTYPES)
  'sa_token_read', // service-account token read
  'k8s_api_contact', // connect to the Kubernetes API server
  'kubelet_contact', // connect to a kubelet (10250)
  'shell_spawn', // interactive or unexpected shell in a container
  'network_tool', // nc, ncat, socat, curl, wget, nmap, ... launched in a container
  'container_start', // a container started (image provenance checks)
  'resource_deviation', // a container's CPU / memory / pids / network left its baseline (the metrics source, not Falco)
] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];

export const ESCAPE_SUBTYPES = [
  'namespace_change', // setns / unshare
  'mount', // mount in a container
  'release_agent', // cgroup release_agent write
  'notify_on_release', // cgroup notify_on_release write
  'core_pattern', // /proc/sys/kernel/core_pattern write
  'sysrq', // /proc/sysrq-trigger write
  'proc_sys_write', // other /proc/sys writes
  'runtime_socket', // connect to docker.sock / containerd.sock / crio.sock
  'kernel_module', // init_module / finit_module
  'privileged', // privileged container started
  'host_namespace', // container with host pid/network/ipc
  'sensitive_mount', // container with sensitive host mounts
] as const;
export type EscapeSubtype = (typeof ESCAPE_SUBTYPES)[number];

/** Process facts a signal carries (null when the alert had no such field). */
export interface ProcFacts {
  readonly pid: number | null;
  readonly ppid: number | null;
  readonly sid: number | null;
  /** Ancestor pids (proc.apid[1..]) when present. */
  readonly apids: readonly number[];
  readonly name: string | null;
  readonly exepath: string | null;
  readonly cmdline: string | null;
  /**
   * Names and executables of the parent and ancestors, nearest first, as far as the alert carries
   * them (`proc.pname`, `proc.pexepath`, `proc.pexe`, then `proc.aname[n]`, `proc.aexepath[n]`).
   */
  readonly ancestors: readonly string[];
}

/**
 * Network facts (src/net/socket.ts reads them): addresses in canonical text; `remote` is the peer
 * that is not this workload (server for connect, client for accept).
 */
export interface NetFacts {
  readonly l4proto: string | null;
  readonly clientIp: string | null;
  readonly clientPort: number | null;
  readonly serverIp: string | null;
  readonly serverPort: number | null;
  readonly remoteIp: string | null;
  readonly remotePort: number | null;
  /** Domain when known (enrichment rDNS or fd.name), else null. */
  readonly remoteDomain: string | null;
}

export interface Signal {
  readonly kind: SignalKind;
  /** For `escape`: an EscapeSubtype; otherwise optional detail (e.g. `af_packet`). */
  readonly subtype: string | null;
  /** Event time, ns since the epoch (from the alert): all windows run on this. */
  readonly timeNs: bigint;
  /** Falco rule that produced it (evidence). */
  readonly rule: string;
  /** container.id, null for the host (`host`, empty, missing). */
  readonly containerId: string | null;
  readonly imageRepository: string | null;
  readonly imageTag: string | null;
  readonly imageDigest: string | null;
  readonly namespace: string | null;
  readonly pod: string | null;
  /**
   * Pod labels the rules file selects on (allow entries' and CI workloads' `pod_labels` keys), from
   * `k8s.pod.label[key]` / `k8s.pod.label.key`, else Falco's `k8s.pod.labels` list.
   */
  readonly podLabels: Readonly<Record<string, string>>;
  readonly proc: ProcFacts;
  readonly net: NetFacts;
  /** Extra keys the mapping extracted (e.g. firewall `src`, `target`, `dport`). */
  readonly keys: Readonly<Record<string, FieldValue>>;
  /** The alert it came from (enrichment included). */
  readonly alert: Alert;
}

/** What a detector emits; the engine turns it into a Falco-shaped alert. */
export interface Finding {
  readonly detector: string;
  /** Human rule name, e.g. "Traffic signaling: socket filter armed, then new listener". */
  readonly rule: string;
  readonly priority: Priority;
  /** 0..1 confidence/score driving the priority. */
  readonly score: number;
  /** One line saying what happened. */
  readonly message: string;
  /** MITRE technique ids (T1205.002 ...) and tactic tags (mitre_defense_evasion ...). */
  readonly mitre: readonly string[];
  /**
   * What this finding is about (a chain, a series): stable across the repeats of one. The notify
   * policy groups findings into incidents by workload (src/detect/notify.ts); the key names the
   * finding in the journal and seeds the incident id.
   */
  readonly key: string;
  /** The signals that formed it, oldest first. */
  readonly evidence: readonly Signal[];
  /** Extra compact output fields (`companion.*` without the prefix). */
  readonly fields: Readonly<Record<string, string | number | boolean | null>>;
  readonly timeNs: bigint;
}

/** What happened to one (signal, detector) pair the engine routed. */
export type SignalOutcome = 'consumed' | 'allowlist' | 'ci_window' | 'ci_workload' | 'learning';

/**
 * Watches the engine (detection journal, signal statistics). Observers must be cheap and must never
 * throw into the engine: the engine catches what they throw, counts it
 * (`detect_observer_errors_total{hook}`) and goes on.
 */
export interface DetectionObserver {
  /**
   * Every (signal, detector) pair the engine routed, and what happened to it: suppressed before
   * the detector (`allowlist`, `ci_window`, `ci_workload`), stepped while the detector's learning
   * period runs (`learning`: its findings are suppressed), or stepped (`consumed`).
   */
  signal?(sig: Signal, detector: string, outcome: SignalOutcome): void;
  /**
   * Every finding a detector produced, with the alert emitted for it (null: folded by the notify
   * policy) and the incident it belongs to. Findings suppressed by a learning period are not
   * findings here (their signals were reported as `learning`).
   */
  finding?(f: Finding, emitted: Alert | null, incident: string): void;
}

/**
 * A deterministic state machine on event time: `step(state, signal, nowNs)` updates `state` in
 * place and returns it with the findings. The engine owns the state (one per detector, created by
 * `init`, kept across rules reloads and, through checkpoints, across restarts) and is the only
 * caller. `nowNs` is event time (the signal's or the latest seen), never the wall clock, so a
 * replay gives the same findings as live traffic. State is bounded; the detector counts what it
 * evicts in `evictions`.
 *
 * State is plain data the checkpoint codec can store (src/detect/codec.ts): plain objects, arrays,
 * Map, Set, bigint, numbers, strings, booleans, null, BoundedMap and slim Signals (`retain`); no
 * closures or other class instances. A restart restores it into a fresh `init()` state (which keeps
 * its BoundedMaps' `onDrop` callbacks). Change `stateVersion` whenever the shape changes: a
 * checkpoint of another version is not restored (the detector starts fresh, logged and counted).
 */
export interface Detector<S> {
  readonly id: string;
  /** Version of the state's shape (default 1). */
  readonly stateVersion?: number;
  /** Signal kinds this detector wants (others are never passed). */
  readonly consumes: readonly SignalKind[];
  init(): S;
  /** Mutates `state`; returns the same object (as `state`) and the findings. */
  step(state: S, signal: Signal, nowNs: bigint): { readonly state: S; readonly findings: readonly Finding[] };
  /** Entries dropped to respect the bound since init (for metrics). */
  evictions(state: S): number;
  /**
   * Input from other nodes (beacon series pooled by image, `store.backend: redis`), drained by the
   * engine between steps: merged into `state` in place like a signal, no findings (those come
   * from a local step, with local evidence). `nowNs` is the detection clock.
   */
  remote?(state: S, input: readonly RemoteSeries[], nowNs: bigint): void;
}

/**
 * What a detector module exports for the registry (src/detect/registry.ts): a new detector is one
 * file exporting one of these plus one line in the registry.
 */
export interface DetectorModule {
  readonly id: string;
  /** Settings schema (the rules file's `detectors.<id>`; `enabled` is added). */
  readonly settings: ObjectSpec;
  /**
   * True when CI/CD windows and workloads silence this detector by default (a rules file that sets
   * `suppress.ci.detectors` chooses for itself): detectors that page on new images, destinations or
   * periodic traffic, which CI bursts produce legitimately.
   */
  readonly quietInCi: boolean;
  /**
   * Version of the detector's state shape (default 1): bump it when the state changes shape, so a
   * checkpoint written by an older build is not restored into the new shape.
   */
  readonly stateVersion?: number;
  /** Build the detector from its validated settings (`rules.detectors[id]`) and the node/cluster facts. */
  readonly create: (settings: Readonly<Record<string, unknown>>, env?: DetectorEnv) => Detector<unknown>;
}

/** A {@link DetectorModule} from a detector's typed factory (its detectors carry the module's `stateVersion`). */
export function detectorModule<C, S>(m: {
  readonly id: string;
  readonly settings: ObjectSpec;
  readonly quietInCi: boolean;
  readonly stateVersion?: number;
  readonly create: (settings: Partial<C>, env: DetectorEnv) => Detector<S>;
}): DetectorModule {
  const version = m.stateVersion ?? 1;
  return {
    id: m.id,
    settings: m.settings,
    quietInCi: m.quietInCi,
    stateVersion: version,
    create: (s, env = NO_ENV) => {
      const d = m.create(s as Partial<C>, env) as unknown as Detector<unknown>;
      return d.stateVersion === undefined ? { ...d, stateVersion: version } : d;
    },
  };
}

/**
 * Rule names of the shipped Falco rules (falco-rules/falco-companion_rules.yaml) and the signal
 * each one maps to in the default mapping. One to one; tests hold both sides to this table.
 */
export const COMPANION_RULES: Readonly<Record<string, { kind: SignalKind; subtype?: EscapeSubtype | string }>> = {
  'Companion signal: packet or raw socket created': { kind: 'raw_socket' },
  'Companion signal: socket filter attached': { kind: 'filter_attach' },
  'Companion signal: BPF program loaded in container': { kind: 'bpf_load' },
  'Companion signal: firewall tool run': { kind: 'firewall_exec' },
  'Companion signal: listening socket in container': { kind: 'listen' },
  'Companion signal: inbound connection accepted in container': { kind: 'accept' },
  'Companion signal: outbound connection from container': { kind: 'connect' },
  'Companion signal: shell with socket stdio': { kind: 'shell_socket' },
  'Companion signal: process renamed with prctl': { kind: 'proc_rename' },
  'Companion signal: execution from tmpfs': { kind: 'tmpfs_exec' },
  'Companion signal: pid or lock file under /var/run': { kind: 'pidfile_create' },
  'Companion signal: namespace change in container': { kind: 'escape', subtype: 'namespace_change' },
  'Companion signal: mount in container': { kind: 'escape', subtype: 'mount' },
  'Companion signal: cgroup release_agent or notify_on_release write': { kind: 'escape', subtype: 'release_agent' },
  'Companion signal: core_pattern write': { kind: 'escape', subtype: 'core_pattern' },
  'Companion signal: sysrq-trigger write': { kind: 'escape', subtype: 'sysrq' },
  'Companion signal: /proc/sys write from container': { kind: 'escape', subtype: 'proc_sys_write' },
  'Companion signal: container runtime socket connect': { kind: 'escape', subtype: 'runtime_socket' },
  'Companion signal: kernel module loaded': { kind: 'escape', subtype: 'kernel_module' },
  'Companion signal: service account token read': { kind: 'sa_token_read' },
  'Companion signal: privileged or host-namespace container started': { kind: 'container_start' },
};
