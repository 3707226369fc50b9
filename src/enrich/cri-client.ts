/**
 * CRI client (runtime.v1) over a unix socket with grpc-js: ContainerStatus and ImageStatus
 * (verbose), ListContainers and ListContainerStats (the metrics source). The proto subset is
 * proto/cri/api.proto. Every call has a deadline and honours an AbortSignal; failures are
 * {@link CriError}s with stable codes.
 */
import * as grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { CompanionError } from '../errors.js';
import { PROTO_LOADER_OPTIONS, protoDir } from '../proto-path.js';

export type CriErrorCode = 'E_CRI_UNAVAILABLE' | 'E_CRI_TIMEOUT' | 'E_CRI_ABORTED' | 'E_CRI_NOT_FOUND' | 'E_CRI_CALL' | 'E_CRI_BAD_RESPONSE';

export class CriError extends CompanionError {
  readonly grpcCode: number | null;
  constructor(code: CriErrorCode, message: string, opts: { grpcCode?: number | null; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.name = 'CriError';
    this.grpcCode = opts.grpcCode ?? null;
  }
}

export interface CriImageSpec {
  readonly image: string;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly user_specified_image?: string;
  readonly runtime_handler?: string;
}

export interface CriContainerStatus {
  readonly id: string;
  readonly metadata: { readonly name: string; readonly attempt: number } | null;
  readonly state: number;
  /** ns since the epoch, decimal string. */
  readonly created_at: string;
  readonly started_at: string;
  readonly image: CriImageSpec | null;
  readonly image_ref: string;
  readonly image_id: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface CriImage {
  readonly id: string;
  readonly repo_tags: readonly string[];
  readonly repo_digests: readonly string[];
  readonly size: string;
}

export interface CriImageStatus {
  /** null when the runtime does not have the image. */
  readonly image: CriImage | null;
  readonly info: Readonly<Record<string, string>>;
}

/** One running container from ListContainers. */
export interface CriContainer {
  readonly id: string;
  readonly pod_sandbox_id: string;
  readonly metadata: { readonly name: string; readonly attempt: number } | null;
  readonly image: CriImageSpec | null;
  readonly image_ref: string;
  readonly state: number;
  /** ns since the epoch, decimal string. */
  readonly created_at: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly image_id: string;
}

type U64 = { readonly value: string } | null;

/** One entry of ListContainerStats (uint64 values as decimal strings). */
export interface CriContainerStats {
  readonly attributes: { readonly id: string; readonly labels: Readonly<Record<string, string>> } | null;
  readonly cpu: { readonly timestamp: string; readonly usage_core_nano_seconds: U64 } | null;
  readonly memory: { readonly timestamp: string; readonly working_set_bytes: U64 } | null;
}

/** CRI ContainerState RUNNING. */
export const CRI_CONTAINER_RUNNING = 1;

export interface CriClientOptions {
  /** Unix socket path (`/run/containerd/containerd.sock`). */
  readonly socketPath: string;
  /** Deadline per call (ms). */
  readonly timeoutMs: number;
  /** Directory holding `cri/api.proto` (default: the package's proto/). */
  readonly protoDir?: string;
}

type Method = protoLoader.MethodDefinition<object, object>;

function isMethod(v: unknown): v is Method {
  return typeof v === 'object' && v !== null && 'path' in v && 'requestSerialize' in v && 'responseDeserialize' in v;
}

/** Load the CRI subset (synchronously; call once from a constructor or start()). */
export function loadCriMethods(dir: string = protoDir()): {
  containerStatus: Method;
  imageStatus: Method;
  listContainers: Method;
  listContainerStats: Method;
  runtimeService: protoLoader.ServiceDefinition;
  imageService: protoLoader.ServiceDefinition;
} {
  const pkg = protoLoader.loadSync(['api.proto'], { ...PROTO_LOADER_OPTIONS, includeDirs: [`${dir}/cri`] });
  const rs = pkg['runtime.v1.RuntimeService'] as protoLoader.ServiceDefinition | undefined;
  const is = pkg['runtime.v1.ImageService'] as protoLoader.ServiceDefinition | undefined;
  const cs = rs?.['ContainerStatus'];
  const ims = is?.['ImageStatus'];
  const lc = rs?.['ListContainers'];
  const lcs = rs?.['ListContainerStats'];
  if (!rs || !is || !isMethod(cs) || !isMethod(ims) || !isMethod(lc) || !isMethod(lcs)) throw new CompanionError('E_PROTO_INVALID', `runtime.v1 services missing in ${dir}/cri/api.proto`);
  return { containerStatus: cs, imageStatus: ims, listContainers: lc, listContainerStats: lcs, runtimeService: rs, imageService: is };
}

export class CriClient {
  private readonly client: grpc.Client;
  private readonly methods: ReturnType<typeof loadCriMethods>;

  constructor(private readonly opts: CriClientOptions) {
    this.methods = loadCriMethods(opts.protoDir);
    this.client = new grpc.Client(`unix://${opts.socketPath}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  async containerStatus(containerId: string, signal?: AbortSignal): Promise<CriContainerStatus> {
    const res = (await this.call(this.methods.containerStatus, { container_id: containerId, verbose: false }, signal)) as { status?: CriContainerStatus | null };
    if (!res.status || typeof res.status.id !== 'string' || res.status.id === '') {
      throw new CriError('E_CRI_NOT_FOUND', `ContainerStatus ${containerId}: no status`);
    }
    return res.status;
  }

  /** ContainerStatus with `verbose`: the status and the runtime's info map (containerd: `info` JSON with `pid`). */
  async containerStatusVerbose(containerId: string, signal?: AbortSignal): Promise<{ status: CriContainerStatus; info: Readonly<Record<string, string>> }> {
    const res = (await this.call(this.methods.containerStatus, { container_id: containerId, verbose: true }, signal)) as { status?: CriContainerStatus | null; info?: Record<string, string> };
    if (!res.status || typeof res.status.id !== 'string' || res.status.id === '') throw new CriError('E_CRI_NOT_FOUND', `ContainerStatus ${containerId}: no status`);
    return { status: res.status, info: res.info ?? {} };
  }

  /** Running containers (ListContainers with a state filter). */
  async listContainers(signal?: AbortSignal): Promise<CriContainer[]> {
    const res = (await this.call(this.methods.listContainers, { filter: { state: { state: CRI_CONTAINER_RUNNING } } }, signal)) as { containers?: CriContainer[] };
    return (res.containers ?? []).filter((c) => typeof c?.id === 'string' && c.id !== '');
  }

  /** Stats of every running container (ListContainerStats, no filter). */
  async listContainerStats(signal?: AbortSignal): Promise<CriContainerStats[]> {
    const res = (await this.call(this.methods.listContainerStats, {}, signal)) as { stats?: CriContainerStats[] };
    return (res.stats ?? []).filter((st) => typeof st?.attributes?.id === 'string' && st.attributes.id !== '');
  }

  async imageStatus(image: string, signal?: AbortSignal): Promise<CriImageStatus> {
    const res = (await this.call(this.methods.imageStatus, { image: { image }, verbose: true }, signal)) as { image?: CriImage | null; info?: Record<string, string> };
    const img = res.image && typeof res.image.id === 'string' && res.image.id !== '' ? res.image : null;
    return { image: img, info: res.info ?? {} };
  }

  close(): void {
    this.client.close();
  }

  private call(m: Method, req: object, signal?: AbortSignal): Promise<object> {
    return new Promise<object>((resolve, reject) => {
      if (signal?.aborted) return reject(new CriError('E_CRI_ABORTED', `${m.path}: aborted`));
      const deadline = Date.now() + this.opts.timeoutMs;
      const onAbort = (): void => call.cancel();
      const call = this.client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, new grpc.Metadata(), { deadline }, (err, value) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) return reject(mapError(m.path, err, signal?.aborted ?? false));
        if (!value) return reject(new CriError('E_CRI_BAD_RESPONSE', `${m.path}: empty response`));
        resolve(value);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function mapError(path: string, err: grpc.ServiceError, aborted: boolean): CriError {
  const msg = `${path}: ${grpc.status[err.code] ?? err.code} ${err.details ?? err.message}`.slice(0, 300);
  if (aborted || err.code === grpc.status.CANCELLED) return new CriError('E_CRI_ABORTED', msg, { grpcCode: err.code, cause: err });
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return new CriError('E_CRI_TIMEOUT', msg, { grpcCode: err.code, cause: err });
  if (err.code === grpc.status.UNAVAILABLE) return new CriError('E_CRI_UNAVAILABLE', msg, { grpcCode: err.code, cause: err });
  if (err.code === grpc.status.NOT_FOUND) return new CriError('E_CRI_NOT_FOUND', msg, { grpcCode: err.code, cause: err });
  return new CriError('E_CRI_CALL', msg, { grpcCode: err.code, cause: err });
}
