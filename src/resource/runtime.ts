/**
 * The container runtime's side of resource sampling: which containers run (Docker
 * `GET /containers/json`, CRI `ListContainers`) with what is known about them (image, pod,
 * container name, start time, host network), details for the file reader (the host pid of a
 * process, from inspect / verbose ContainerStatus), and the runtime's own stats as the alternative
 * to the cgroup files (Docker `/containers/{id}/stats?stream=false&one-shot=true`, CRI
 * `ListContainerStats`: CPU and working set only).
 */
import { errorCode } from '../errors.js';
import type { CriClient, CriContainer, CriContainerStats } from '../enrich/cri-client.js';
import type { DockerClient, DockerContainerSummary, DockerStats } from '../enrich/docker-client.js';
import { parseTime } from '../alert.js';
import { emptyMeta, type ContainerMeta, type RawSample } from './types.js';

export interface RuntimeDetails {
  readonly pid: number | null;
  readonly startedNs: bigint | null;
  readonly hostNetwork: boolean | null;
}

export interface StatsResult {
  readonly samples: RawSample[];
  readonly errors: { readonly id: string; readonly err: unknown }[];
}

export interface RuntimeAdapter {
  readonly kind: 'docker' | 'cri';
  /** Running containers. Throws the client's coded error when the runtime cannot be asked. */
  list(signal: AbortSignal): Promise<ContainerMeta[]>;
  /** Host pid, start time and network mode of one container. */
  details(id: string, signal: AbortSignal): Promise<RuntimeDetails>;
  /** The runtime's stats for these containers, `maxInflight` requests at a time. */
  stats(metas: readonly ContainerMeta[], signal: AbortSignal, maxInflight: number, nowNs: () => bigint): Promise<StatsResult>;
  close(): void;
}

/** `registry/repo:tag@digest` → repository and tag (Falco's split: the tag is after the last colon past the last slash). */
export function splitImage(ref: string | null | undefined): { image: string | null; tag: string | null } {
  if (!ref || /^(sha256:)?[a-f0-9]{64}$/.test(ref)) return { image: null, tag: null };
  let rest = ref;
  const at = rest.indexOf('@');
  if (at >= 0) rest = rest.slice(0, at);
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) return { image: rest.slice(0, colon) || null, tag: rest.slice(colon + 1) || null };
  return { image: rest || null, tag: null };
}

const K8S_NS = 'io.kubernetes.pod.namespace';
const K8S_POD = 'io.kubernetes.pod.name';
const K8S_CONTAINER = 'io.kubernetes.container.name';

function k8sOf(labels: Readonly<Record<string, string>> | null | undefined): Pick<ContainerMeta, 'namespace' | 'pod' | 'containerName'> {
  const l = labels ?? {};
  return { namespace: l[K8S_NS] ?? null, pod: l[K8S_POD] ?? null, containerName: l[K8S_CONTAINER] ?? null };
}

const nsOfSeconds = (s: number | undefined): bigint | null => (typeof s === 'number' && s > 0 ? BigInt(Math.floor(s)) * 1_000_000_000n : null);
const nsOfText = (s: string | undefined): bigint | null => {
  if (!s || s.startsWith('0001-')) return null;
  return parseTime(s)?.ns ?? null;
};

/** Metadata of one `GET /containers/json` entry. */
export function dockerMeta(c: DockerContainerSummary): ContainerMeta {
  const { image, tag } = splitImage(c.Image);
  const k8s = k8sOf(c.Labels);
  const compose = c.Labels?.['com.docker.compose.service'] ?? null;
  return {
    ...emptyMeta(c.Id),
    name: c.Names?.[0]?.replace(/^\//, '') ?? null,
    image,
    tag,
    ...k8s,
    containerName: k8s.containerName ?? compose,
    hostNetwork: c.HostConfig?.NetworkMode === 'host',
    startedNs: nsOfSeconds(c.Created),
  };
}

/** A raw sample from a Docker stats answer; null when the container is not running (zero read time). */
export function dockerSample(id: string, st: DockerStats, fallbackNs: bigint): RawSample | null {
  const readNs = st.read ? nsOfText(st.read) : null;
  if (st.read && readNs === null) return null;
  const cpu = st.cpu_stats?.cpu_usage?.total_usage;
  const usage = st.memory_stats?.usage;
  const stats = st.memory_stats?.stats ?? {};
  const inactive = stats['inactive_file'] ?? stats['total_inactive_file'] ?? 0;
  let rxBytes: number | null = null;
  let txBytes: number | null = null;
  let rxPackets: number | null = null;
  let txPackets: number | null = null;
  if (st.networks) {
    rxBytes = txBytes = rxPackets = txPackets = 0;
    for (const [name, n] of Object.entries(st.networks)) {
      if (name === 'lo') continue;
      rxBytes += n.rx_bytes ?? 0;
      txBytes += n.tx_bytes ?? 0;
      rxPackets += n.rx_packets ?? 0;
      txPackets += n.tx_packets ?? 0;
    }
  }
  return {
    id,
    timeNs: readNs ?? fallbackNs,
    source: 'docker',
    cpuNs: typeof cpu === 'number' ? cpu : null,
    memoryBytes: typeof usage === 'number' ? Math.max(0, usage - inactive) : null,
    pids: typeof st.pids_stats?.current === 'number' ? st.pids_stats.current : null,
    rxBytes,
    txBytes,
    rxPackets,
    txPackets,
  };
}

/** Run `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class DockerRuntime implements RuntimeAdapter {
  readonly kind = 'docker' as const;
  constructor(private readonly client: DockerClient) {}

  async list(signal: AbortSignal): Promise<ContainerMeta[]> {
    return (await this.client.containerList(signal)).map(dockerMeta);
  }

  async details(id: string, signal: AbortSignal): Promise<RuntimeDetails> {
    const c = await this.client.containerInspect(id, signal);
    return { pid: c.State?.Pid && c.State.Pid > 0 ? c.State.Pid : null, startedNs: nsOfText(c.State?.StartedAt), hostNetwork: c.HostConfig?.NetworkMode === undefined ? null : c.HostConfig.NetworkMode === 'host' };
  }

  async stats(metas: readonly ContainerMeta[], signal: AbortSignal, maxInflight: number, nowNs: () => bigint): Promise<StatsResult> {
    const samples: RawSample[] = [];
    const errors: { id: string; err: unknown }[] = [];
    await pool(metas, maxInflight, async (m) => {
      try {
        const s = dockerSample(m.id, await this.client.containerStats(m.id, signal), nowNs());
        if (s) samples.push(s);
        else errors.push({ id: m.id, err: Object.assign(new Error(`container ${m.id.slice(0, 12)} is not running`), { code: 'E_DOCKER_NOT_FOUND' }) });
      } catch (err) {
        errors.push({ id: m.id, err });
      }
    });
    return { samples, errors };
  }

  close(): void {
    this.client.close();
  }
}

/** Metadata of one CRI container. */
export function criMeta(c: CriContainer): ContainerMeta {
  const spec = c.image;
  const ref = [spec?.user_specified_image, spec?.image, c.image_ref].find((r) => r && !/^(sha256:)?[a-f0-9]{64}$/.test(r) && !r.includes('@sha256:')) ?? spec?.image ?? null;
  const { image, tag } = splitImage(ref);
  const k8s = k8sOf(c.labels);
  const created = /^\d+$/.test(c.created_at) ? BigInt(c.created_at) : null;
  return { ...emptyMeta(c.id), name: c.metadata?.name ?? null, image, tag, ...k8s, containerName: k8s.containerName ?? c.metadata?.name ?? null, startedNs: created && created > 0n ? created : null };
}

/** A raw sample from one ListContainerStats entry (CPU and working set; no pids or network in CRI container stats). */
export function criSample(st: CriContainerStats, fallbackNs: bigint): RawSample | null {
  const id = st.attributes?.id;
  if (!id) return null;
  const u64 = (v: { readonly value: string } | null | undefined): number | null => (v && /^\d+$/.test(v.value) ? Number(v.value) : null);
  const ts = st.cpu?.timestamp && /^\d+$/.test(st.cpu.timestamp) && st.cpu.timestamp !== '0' ? BigInt(st.cpu.timestamp) : fallbackNs;
  return { id, timeNs: ts, source: 'cri', cpuNs: u64(st.cpu?.usage_core_nano_seconds), memoryBytes: u64(st.memory?.working_set_bytes), pids: null, rxBytes: null, txBytes: null, rxPackets: null, txPackets: null };
}

export class CriRuntime implements RuntimeAdapter {
  readonly kind = 'cri' as const;
  constructor(private readonly client: CriClient) {}

  async list(signal: AbortSignal): Promise<ContainerMeta[]> {
    return (await this.client.listContainers(signal)).map(criMeta);
  }

  async details(id: string, signal: AbortSignal): Promise<RuntimeDetails> {
    const { status, info } = await this.client.containerStatusVerbose(id, signal);
    let pid: number | null = null;
    for (const v of Object.values(info)) {
      try {
        const p = (JSON.parse(v) as { pid?: unknown }).pid;
        if (typeof p === 'number' && p > 0) pid = p;
      } catch {
        // not JSON
      }
    }
    const started = /^\d+$/.test(status.started_at) && status.started_at !== '0' ? BigInt(status.started_at) : null;
    return { pid, startedNs: started, hostNetwork: null };
  }

  async stats(metas: readonly ContainerMeta[], signal: AbortSignal, _maxInflight: number, nowNs: () => bigint): Promise<StatsResult> {
    const all = await this.client.listContainerStats(signal);
    const want = new Set(metas.map((m) => m.id));
    const samples: RawSample[] = [];
    const now = nowNs();
    for (const st of all) {
      const s = criSample(st, now);
      if (s && want.has(s.id)) {
        samples.push(s);
        want.delete(s.id);
      }
    }
    const errors = [...want].map((id) => ({ id, err: Object.assign(new Error(`ListContainerStats has no entry for ${id.slice(0, 12)}`), { code: 'E_CRI_NOT_FOUND' }) }));
    return { samples, errors };
  }

  close(): void {
    this.client.close();
  }
}

/** True for errors that mean the container is gone (not a failure of the runtime). */
export function isGone(err: unknown): boolean {
  const c = errorCode(err);
  return c === 'E_DOCKER_NOT_FOUND' || c === 'E_CRI_NOT_FOUND' || c === 'E_CGROUP_GONE' || c === 'E_CGROUP_NOT_FOUND';
}
