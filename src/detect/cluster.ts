/**
 * What the cluster and this node look like to the detectors: the networks that belong to the
 * cluster (pods, services, nodes) and the Kubernetes API server's addresses. Built once at start
 * (and on every rules reload) from the config (`detect.cluster`, plus the egress enricher's
 * `cluster_pod_cidrs` / `cluster_service_cidrs`) and, with `discover: true`, from the environment:
 *
 * - `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` (set in every pod, also with
 *   `automountServiceAccountToken: false`): the API server's Service address, and the service
 *   network around it. Kubernetes gives the `kubernetes` Service the first address of the service
 *   range, so the range starts one address below it; its size is not in the environment, so the
 *   guess is the largest block aligned there, capped at the largest range Kubernetes accepts (/12
 *   for IPv4, /108 for IPv6). 10.96.0.1 → 10.96.0.0/12 (kubeadm's default exactly),
 *   10.43.0.1 → 10.43.0.0/16 (k3s), 172.20.0.1 → 172.20.0.0/14 (EKS's 172.20.0.0/16 inside).
 * - the node: this process's network interfaces (the node's own addresses when the companion runs
 *   with the host network, the pod's address and its subnet otherwise) and `node_cidrs` (the
 *   DaemonSet passes `status.hostIP` there). Private subnets of the interfaces count whole; public
 *   ones only as the single address.
 *
 * Pure: the environment and the interfaces are passed in (src/detect/wiring.ts reads them), so
 * tests build any node they like. Detectors keep what they learn at run time (pod prefixes, API
 * endpoints) in their own state; this is only the static part.
 */
import { formatIp, parseIp, type Ip } from '../net/address.js';
import { cidrContains, CidrMap, formatCidr, parseCidr, type Cidr } from '../net/cidr.js';
import type { ClusterSeries } from '../cluster/types.js';
import { IpClassifier, type IpClass } from '../enrich/ip-class.js';

/** Where a cluster network came from (shown in findings and logs). */
export type NetworkSource = 'config' | 'service_host' | 'interface' | 'learned';

export interface ClusterNetwork {
  readonly cidr: Cidr;
  readonly what: 'pod' | 'service' | 'node';
  readonly source: NetworkSource;
}

/** An API-server address: the Service IP or an endpoint; `port` null matches any port. */
export interface ApiServer {
  readonly ip: string;
  readonly port: number | null;
  readonly source: 'config' | 'service_host' | 'learned';
}

export interface ClusterFacts {
  readonly networks: readonly ClusterNetwork[];
  readonly apiServers: readonly ApiServer[];
}

export const NO_CLUSTER: ClusterFacts = Object.freeze({ networks: [], apiServers: [] });

/** What a detector factory gets besides its settings (src/detect/registry.ts buildDetectors). */
export interface DetectorEnv {
  readonly cluster: ClusterFacts;
  /**
   * Beacon series pooled by image across nodes (`store.backend: redis`; src/cluster/series.ts):
   * where the beacon detector records its own connection seconds. Absent: this node only.
   */
  readonly series?: ClusterSeries;
}

export const NO_ENV: DetectorEnv = Object.freeze({ cluster: NO_CLUSTER });

/** The `detect.cluster` config section as the discovery reads it. */
export interface ClusterConfig {
  readonly discover: boolean;
  readonly pod_cidrs: readonly string[];
  readonly service_cidrs: readonly string[];
  readonly node_cidrs: readonly string[];
  readonly api_servers: readonly string[];
}

/** One address of `os.networkInterfaces()` (only the fields read). */
export interface InterfaceAddress {
  readonly address: string;
  readonly cidr: string | null;
  readonly internal: boolean;
}

export interface DiscoverInput {
  readonly config: ClusterConfig;
  /** The egress enricher's cluster CIDRs (`enrich.egress.cluster_pod_cidrs` / `_service_cidrs`). */
  readonly enrichPodCidrs?: readonly string[];
  readonly enrichServiceCidrs?: readonly string[];
  /** process.env (only KUBERNETES_SERVICE_HOST / _PORT are read). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** os.networkInterfaces() flattened. */
  readonly interfaces?: readonly InterfaceAddress[];
}

let classifier: IpClassifier | null = null; // built on first use (no work at import)

/** Address classes that never leave a site: what may be summarised as a network, not one address. */
export const NON_PUBLIC: ReadonlySet<IpClass> = new Set<IpClass>(['private', 'cgnat', 'unique_local']);

/** The class of an address without cluster knowledge (src/enrich/ip-class.ts). */
export function addressClass(ip: Ip | string): IpClass | null {
  classifier ??= new IpClassifier();
  return classifier.classify(ip);
}

/** `ip[:port]`, `[v6]:port` or a bare IPv6 address; null when it is not one. */
export function parseApiServer(text: string): { ip: string; port: number | null } | null {
  const s = text.trim();
  let host = s;
  let port: number | null = null;
  const br = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (br) {
    host = br[1] as string;
    port = br[2] !== undefined ? Number(br[2]) : null;
  } else if (s.split(':').length === 2) {
    const i = s.lastIndexOf(':');
    host = s.slice(0, i);
    port = Number(s.slice(i + 1));
    if (!/^\d{1,5}$/.test(s.slice(i + 1))) return null;
  }
  const ip = parseIp(host);
  if (!ip || (port !== null && (port < 1 || port > 65535))) return null;
  return { ip: formatIp(ip), port };
}

/**
 * The service network guessed from the `kubernetes` Service address (see the module comment):
 * the largest block that starts one address below it, at most /12 (IPv4) or /108 (IPv6).
 */
export function serviceCidrAround(host: string): Cidr | null {
  const ip = parseIp(host);
  if (!ip) return null;
  if (ip.v === 4) {
    const base = (ip.n - 1) >>> 0;
    let prefix = 32;
    while (prefix > 12 && ((base >>> (32 - prefix + 1)) << (32 - prefix + 1)) >>> 0 === base) prefix--;
    return parseCidr(`${formatIp({ v: 4, n: base })}/${prefix}`);
  }
  const base = ip.n - 1n;
  let prefix = 128;
  while (prefix > 108 && ((base >> BigInt(128 - prefix + 1)) << BigInt(128 - prefix + 1)) === base) prefix--;
  return parseCidr(`${formatIp({ v: 6, n: base })}/${prefix}`);
}

/** The static cluster facts (see the module comment). Invalid entries are skipped (the config validated them). */
export function discoverCluster(input: DiscoverInput): ClusterFacts {
  const c = input.config;
  const networks: ClusterNetwork[] = [];
  const add = (text: string, what: ClusterNetwork['what'], source: NetworkSource): void => {
    const cidr = parseCidr(text);
    if (cidr && !networks.some((n) => n.what === what && formatCidr(n.cidr) === formatCidr(cidr))) networks.push({ cidr, what, source });
  };
  for (const x of [...c.pod_cidrs, ...(input.enrichPodCidrs ?? [])]) add(x, 'pod', 'config');
  for (const x of [...c.service_cidrs, ...(input.enrichServiceCidrs ?? [])]) add(x, 'service', 'config');
  for (const x of c.node_cidrs) add(x, 'node', 'config');
  const apiServers: ApiServer[] = [];
  for (const x of c.api_servers) {
    const a = parseApiServer(x);
    if (a) apiServers.push({ ...a, source: 'config' });
  }
  if (c.discover) {
    const host = input.env?.['KUBERNETES_SERVICE_HOST']?.trim();
    const portText = input.env?.['KUBERNETES_SERVICE_PORT']?.trim();
    const ip = host ? parseIp(host) : null;
    if (ip) {
      const port = portText && /^\d{1,5}$/.test(portText) ? Number(portText) : null;
      apiServers.push({ ip: formatIp(ip), port, source: 'service_host' });
      const svc = serviceCidrAround(formatIp(ip));
      if (svc && !networks.some((n) => n.what === 'service' && n.source === 'config')) networks.push({ cidr: svc, what: 'service', source: 'service_host' });
    }
    for (const i of input.interfaces ?? []) {
      if (i.internal) continue;
      const a = parseIp(i.address);
      if (!a) continue;
      const cls = addressClass(a);
      if (cls === 'loopback' || cls === 'link_local') continue;
      const subnet = i.cidr ? parseCidr(i.cidr) : null;
      // A private subnet is the node's (or pod's) network; a public one is shared with strangers.
      if (subnet && cls !== null && NON_PUBLIC.has(cls) && subnet.prefix >= (subnet.v === 4 ? 8 : 32)) add(formatCidr(subnet), 'node', 'interface');
      else add(formatIp(a), 'node', 'interface');
    }
  }
  return Object.freeze({ networks: Object.freeze(networks), apiServers: Object.freeze(dedupeApi(apiServers)) });
}

function dedupeApi(xs: readonly ApiServer[]): ApiServer[] {
  const out: ApiServer[] = [];
  for (const x of xs) if (!out.some((o) => o.ip === x.ip && o.port === x.port)) out.push(x);
  return out;
}

/** Longest-prefix lookup over the static cluster networks. */
export class ClusterNetworks {
  private readonly map = new CidrMap<ClusterNetwork>();
  constructor(readonly facts: ClusterFacts) {
    for (const n of facts.networks) this.map.set(n.cidr, n);
  }
  /** The cluster network containing `ip`, or undefined. */
  lookup(ip: Ip): ClusterNetwork | undefined {
    return this.map.get(ip);
  }
}

/**
 * The prefix a learned pod (or node) address is summarised to: `v4` / `v6` bits, only for
 * non-public addresses (null otherwise: a public address is never widened to its neighbours).
 */
export function learnedPrefix(ip: Ip, v4: number, v6: number): string | null {
  const cls = addressClass(ip);
  if (cls === null || !NON_PUBLIC.has(cls)) return null;
  const c = parseCidr(`${formatIp(ip)}/${ip.v === 4 ? v4 : v6}`);
  return c ? formatCidr(c) : null;
}

/** True when `ip` lies in the CIDR text `prefix` (parsed once per text by the caller's cache). */
export function inPrefix(cache: Map<string, Cidr | null>, prefix: string, ip: Ip): boolean {
  let c = cache.get(prefix);
  if (c === undefined) {
    c = parseCidr(prefix);
    if (cache.size > 4096) cache.clear();
    cache.set(prefix, c);
  }
  return c !== null && cidrContains(c, ip);
}

/** One line per fact, for the start-up log (`pod 10.244.0.0/16 (config)`, `api 10.96.0.1:443 (service_host)`). */
export function formatClusterFacts(f: ClusterFacts): string[] {
  return [
    ...f.networks.map((n) => `${n.what} ${formatCidr(n.cidr)} (${n.source})`),
    ...f.apiServers.map((a) => `api ${a.ip.includes(':') ? `[${a.ip}]` : a.ip}${a.port !== null ? `:${a.port}` : ''} (${a.source})`),
  ];
}
