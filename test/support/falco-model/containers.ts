/**
 * Container metadata as libsinsp's Docker engine exposes it (container.* fields), read from the
 * Docker Engine API of the test's dockerd: inspect of the container and its image, taken as soon
 * as the container starts (containers run with --rm are gone afterwards). The `start` event's
 * time is when Falco's asynchronous lookup would have answered: dockerd holds the container's lock
 * while starting it, so an inspect issued at the first event returns only then; before it, the
 * container's events carry its id but null metadata (seen in the recordings).
 */
import http from 'node:http';

export interface ContainerMount {
  readonly source: string;
  readonly destination: string;
  readonly mode: string;
  readonly rw: boolean;
  readonly propagation: string;
}

export interface ContainerMeta {
  /** Full 64-hex id. */
  readonly id: string;
  readonly name: string;
  /** Config.Image as given to `docker run` (container.image). */
  readonly image: string;
  readonly imageId: string;
  readonly repository: string;
  readonly tag: string;
  readonly digest: string | null;
  readonly privileged: boolean;
  readonly hostPid: boolean;
  readonly hostNetwork: boolean;
  readonly hostIpc: boolean;
  readonly mounts: readonly ContainerMount[];
  readonly labels: Readonly<Record<string, string>>;
  readonly ip: string;
  readonly startTs: bigint;
  /** Realtime ns when the metadata became available (the `start` event); null: unknown. */
  readonly availableAt: bigint | null;
}

export interface ContainerDirectory {
  get(fullId: string): ContainerMeta | undefined;
}

export class StaticContainerDirectory implements ContainerDirectory {
  private readonly byId = new Map<string, ContainerMeta>();
  constructor(metas: Iterable<ContainerMeta> = []) {
    for (const m of metas) this.add(m);
  }
  add(m: ContainerMeta): void {
    this.byId.set(m.id, m);
  }
  get(fullId: string): ContainerMeta | undefined {
    return this.byId.get(fullId);
  }
  all(): ContainerMeta[] {
    return [...this.byId.values()];
  }
}

function getJson(socketPath: string, path: string, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 4_000_000) body += d;
      });
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300) reject(new Error(`${path}: HTTP ${res.statusCode}`));
        else {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e as Error);
          }
        }
      });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${path}: timeout`)));
    req.end();
  });
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** Split `repo[:tag][@digest]` the way libsinsp does (a `:` after the last `/` starts the tag). */
export function splitImageRef(ref: string): { repository: string; tag: string; digest: string | null } {
  let rest = ref;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) return { repository: rest.slice(0, colon), tag: rest.slice(colon + 1), digest };
  return { repository: rest, tag: digest === null ? 'latest' : '', digest };
}

function parseTime(s: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$/.exec(s);
  if (!m) return 0n;
  const secs = BigInt(Date.parse(`${m[1]}Z`)) / 1000n;
  const frac = (m[2] ?? '.0').slice(1).padEnd(9, '0').slice(0, 9);
  return secs * 1_000_000_000n + BigInt(frac);
}

/** Inspect a container (and its image) into ContainerMeta. */
export async function inspectContainer(socketPath: string, id: string, availableAt: bigint | null): Promise<ContainerMeta> {
  const c = obj(await getJson(socketPath, `/v1.41/containers/${id}/json`));
  const config = obj(c['Config']);
  const host = obj(c['HostConfig']);
  const state = obj(c['State']);
  const imageId = str(c['Image']);
  let image: Json = {};
  try {
    image = obj(await getJson(socketPath, `/v1.41/images/${imageId}/json`));
  } catch {
    image = {};
  }
  let ref = str(config['Image']);
  if (ref.startsWith('sha256:')) ref = (image['RepoTags'] as string[] | undefined)?.[0] ?? ref;
  const { repository, tag, digest: refDigest } = splitImageRef(ref);
  let digest = refDigest;
  if (digest === null) {
    for (const rd of (image['RepoDigests'] as string[] | undefined) ?? []) {
      const [repo, d] = rd.split('@');
      if (repo === repository && d) digest = d;
    }
  }
  const mounts = ((c['Mounts'] as unknown[] | undefined) ?? []).map((m) => {
    const x = obj(m);
    return { source: str(x['Source']), destination: str(x['Destination']), mode: str(x['Mode']), rw: x['RW'] === true, propagation: str(x['Propagation']) };
  });
  const networks = obj(obj(c['NetworkSettings'])['Networks']);
  const ip = str(obj(c['NetworkSettings'])['IPAddress']) || Object.values(networks).map((n) => str(obj(n)['IPAddress'])).find((x) => x !== '') || '';
  return {
    id: str(c['Id']),
    name: str(c['Name']).replace(/^\//, ''),
    image: str(config['Image']),
    imageId: imageId.replace(/^sha256:/, ''),
    repository,
    tag,
    digest,
    privileged: host['Privileged'] === true,
    hostPid: host['PidMode'] === 'host',
    hostNetwork: host['NetworkMode'] === 'host',
    hostIpc: host['IpcMode'] === 'host',
    mounts,
    labels: Object.fromEntries(Object.entries(obj(config['Labels'])).map(([k, v]) => [k, str(v)])),
    ip,
    startTs: parseTime(str(state['StartedAt'])),
    availableAt,
  };
}

/**
 * Watches a dockerd's event stream and inspects every container when it starts (as Falco's
 * lookup would), so the metadata survives `--rm`. Bounded: at most `max` containers kept.
 */
export class DockerWatcher implements ContainerDirectory {
  private readonly metas = new Map<string, ContainerMeta>();
  private readonly pending = new Set<Promise<void>>();
  private req: http.ClientRequest | null = null;
  private buf = '';
  readonly errors: string[] = [];

  constructor(
    private readonly socketPath: string,
    private readonly max = 500,
  ) {}

  /** Subscribe (resolves once the stream is open). */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const filters = encodeURIComponent(JSON.stringify({ type: ['container'], event: ['start'] }));
      const req = http.request({ socketPath: this.socketPath, path: `/v1.41/events?filters=${filters}` }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (d: string) => this.onData(d));
        resolve();
      });
      req.on('error', (e) => {
        this.errors.push(e.message);
        reject(e);
      });
      req.end();
      this.req = req;
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      let ev: Json;
      try {
        ev = obj(JSON.parse(line));
      } catch {
        continue;
      }
      const id = str(ev['id']);
      if (ev['Action'] !== 'start' || id === '' || this.metas.size >= this.max) continue;
      const at = typeof ev['timeNano'] === 'number' ? BigInt(Math.round(ev['timeNano'])) : null;
      // timeNano arrives as a JSON number (rounded above 2^53): take the exact digits from the text.
      const exact = /"timeNano":(\d+)/.exec(line)?.[1];
      const when = exact !== undefined ? BigInt(exact) : at;
      const p = inspectContainer(this.socketPath, id, when)
        .then((m) => void this.metas.set(m.id, m))
        .catch((e: Error) => void this.errors.push(`${id}: ${e.message}`))
        .finally(() => this.pending.delete(p));
      this.pending.add(p);
    }
  }

  get(fullId: string): ContainerMeta | undefined {
    return this.metas.get(fullId);
  }

  /** Wait for in-flight inspections. */
  async settle(): Promise<void> {
    for (let i = 0; i < 20 && this.pending.size > 0; i++) await Promise.all([...this.pending]);
  }

  stop(): void {
    this.req?.destroy();
    this.req = null;
  }
}
