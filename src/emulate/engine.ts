/**
 * The few Docker Engine API calls the emulation needs (create/start/exec/remove containers, tag,
 * push, pull, commit, put an archive), over the engine's unix socket. Every request has a hard
 * timeout; failures are DockerErrors with the enricher's stable codes.
 */
import http from 'node:http';
import { DockerError } from '../enrich/docker-client.js';

export const ENGINE_API = '/v1.41';

export interface EngineResponse {
  readonly status: number;
  readonly text: string;
}

export interface ContainerState {
  readonly Id: string;
  readonly State: { readonly Pid: number; readonly Running: boolean; readonly ExitCode?: number };
  readonly Config?: { readonly Labels?: Readonly<Record<string, string>> | null };
}

export interface ExecState {
  readonly Pid: number;
  readonly Running: boolean;
  readonly ExitCode: number | null;
}

const MAX_BODY = 8 * 1024 * 1024;

/** A one-file tar archive (ustar), for PUT /containers/{id}/archive. */
export function tarOneFile(name: string, content: Buffer, mode = 0o644): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, off: number, len: number): void => void h.write(s.slice(0, len), off, 'utf8');
  const oct = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0') + '\0';
  put(name, 0, 100);
  put(oct(mode, 8), 100, 8);
  put(oct(0, 8), 108, 8);
  put(oct(0, 8), 116, 8);
  put(oct(content.length, 12), 124, 12);
  put(oct(Math.floor(Date.now() / 1000), 12), 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([h, content, pad, Buffer.alloc(1024)]);
}

export class Engine {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 60_000,
  ) {}

  request(method: string, path: string, body?: unknown, opts: { headers?: Record<string, string>; raw?: Buffer; timeoutMs?: number } = {}): Promise<EngineResponse> {
    return new Promise((resolve, reject) => {
      const payload = opts.raw ?? (body === undefined ? null : Buffer.from(JSON.stringify(body)));
      const headers: Record<string, string> = { host: 'docker', ...(opts.headers ?? {}) };
      if (payload) {
        headers['content-length'] = String(payload.length);
        headers['content-type'] ??= opts.raw ? 'application/x-tar' : 'application/json';
      }
      const req = http.request({ socketPath: this.socketPath, path: `${ENGINE_API}${path}`, method, headers }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_BODY) chunks.push(c);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(new DockerError('E_DOCKER_UNAVAILABLE', `${method} ${path}: ${e.message}`, { cause: e }));
        });
      });
      const timer = setTimeout(() => {
        req.destroy();
        reject(new DockerError('E_DOCKER_TIMEOUT', `${method} ${path}: no answer within ${opts.timeoutMs ?? this.timeoutMs} ms`));
      }, opts.timeoutMs ?? this.timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(new DockerError('E_DOCKER_UNAVAILABLE', `${method} ${path}: ${e.message} (Docker socket ${this.socketPath})`, { cause: e }));
      });
      if (payload) req.write(payload);
      req.end();
    });
  }

  /** The request, which must answer 2xx; the parsed JSON body (or null when empty). */
  async ok<T>(method: string, path: string, body?: unknown, opts: { headers?: Record<string, string>; raw?: Buffer; timeoutMs?: number } = {}): Promise<T> {
    const r = await this.request(method, path, body, opts);
    if (r.status === 404) throw new DockerError('E_DOCKER_NOT_FOUND', `${method} ${path}: 404 ${message(r.text)}`, { status: 404 });
    if (r.status < 200 || r.status >= 300) throw new DockerError('E_DOCKER_HTTP', `${method} ${path}: ${r.status} ${message(r.text)}`, { status: r.status });
    if (!r.text.trim()) return null as T;
    // push / pull / create-image stream JSON lines: an `error` member anywhere is a failure
    const lines = r.text.trim().split('\n');
    if (lines.length > 1) {
      for (const l of lines) {
        try {
          const v = JSON.parse(l) as { error?: string };
          if (v.error) throw new DockerError('E_DOCKER_HTTP', `${method} ${path}: ${v.error}`);
        } catch (e) {
          if (e instanceof DockerError) throw e;
        }
      }
      return JSON.parse(lines[lines.length - 1] ?? 'null') as T;
    }
    try {
      const v = JSON.parse(r.text) as T & { error?: string };
      if (typeof v === 'object' && v !== null && typeof v.error === 'string') throw new DockerError('E_DOCKER_HTTP', `${method} ${path}: ${v.error}`);
      return v;
    } catch (e) {
      if (e instanceof DockerError) throw e;
      return null as T;
    }
  }

  async ping(): Promise<void> {
    const r = await this.request('GET', '/_ping', undefined, { timeoutMs: 5000 });
    if (r.status !== 200) throw new DockerError('E_DOCKER_UNAVAILABLE', `GET /_ping: ${r.status}`);
  }

  async createContainer(name: string, body: Record<string, unknown>): Promise<string> {
    const r = await this.ok<{ Id: string }>('POST', `/containers/create?name=${encodeURIComponent(name)}`, body);
    return r.Id;
  }

  async start(id: string): Promise<void> {
    await this.ok('POST', `/containers/${id}/start`);
  }

  inspect(id: string): Promise<ContainerState> {
    return this.ok<ContainerState>('GET', `/containers/${id}/json`);
  }

  async remove(id: string): Promise<void> {
    const r = await this.request('DELETE', `/containers/${id}?force=true&v=true`);
    if (r.status !== 204 && r.status !== 404) throw new DockerError('E_DOCKER_HTTP', `DELETE container ${id}: ${r.status} ${message(r.text)}`, { status: r.status });
  }

  /** Start `cmd` in the container, detached; the exec id. */
  async exec(id: string, cmd: readonly string[], opts: { tty?: boolean; env?: readonly string[] } = {}): Promise<string> {
    const e = await this.ok<{ Id: string }>('POST', `/containers/${id}/exec`, { Cmd: cmd, AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: opts.tty ?? false, User: '0', Env: opts.env ?? [] });
    await this.ok('POST', `/exec/${e.Id}/start`, { Detach: true, Tty: opts.tty ?? false });
    return e.Id;
  }

  execInspect(execId: string): Promise<ExecState> {
    return this.ok<ExecState>('GET', `/exec/${execId}/json`);
  }

  async tag(source: string, repo: string, tag: string): Promise<void> {
    await this.ok('POST', `/images/${encodeURIComponent(source)}/tag?repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`);
  }

  async push(repo: string, tag: string): Promise<void> {
    const auth = Buffer.from('{}').toString('base64');
    await this.ok('POST', `/images/${encodeURIComponent(repo)}/push?tag=${encodeURIComponent(tag)}`, undefined, { headers: { 'X-Registry-Auth': auth }, timeoutMs: 120_000 });
  }

  async pull(repo: string, tag: string): Promise<void> {
    await this.ok('POST', `/images/create?fromImage=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}`, undefined, { timeoutMs: 120_000 });
  }

  imageInspect(ref: string): Promise<{ Id: string; RepoDigests?: string[] | null }> {
    return this.ok('GET', `/images/${encodeURIComponent(ref)}/json`);
  }

  async removeImage(ref: string): Promise<void> {
    const r = await this.request('DELETE', `/images/${encodeURIComponent(ref)}?force=false&noprune=false`);
    if (r.status !== 200 && r.status !== 404) throw new DockerError('E_DOCKER_HTTP', `DELETE image ${ref}: ${r.status} ${message(r.text)}`, { status: r.status });
  }

  async commit(container: string, repo: string, tag: string, comment: string): Promise<string> {
    const r = await this.ok<{ Id: string }>('POST', `/commit?container=${container}&repo=${encodeURIComponent(repo)}&tag=${encodeURIComponent(tag)}&comment=${encodeURIComponent(comment)}&pause=false`, {});
    return r.Id;
  }

  async putFile(container: string, dir: string, name: string, content: Buffer): Promise<void> {
    await this.ok('PUT', `/containers/${container}/archive?path=${encodeURIComponent(dir)}`, undefined, { raw: tarOneFile(name, content) });
  }
}

function message(text: string): string {
  try {
    const v = JSON.parse(text) as { message?: string };
    if (typeof v.message === 'string') return v.message;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200);
}
