/**
 * Container and image enricher (`enrich/container`): for alerts with a `container.id`, ask the
 * container runtime (Docker Engine API or CRI) which image runs there and add its history from
 * the image store: registry, repository, tag, digest, created, first seen on this node, pulled
 * at, layers, newest layer, tag mutation.
 *
 * Best effort inside the pipeline's per-alert budget: results are cached (bounded LRU with TTL,
 * negative caching for unknown containers), concurrent lookups of one container are coalesced,
 * and a lookup that outlives the budget finishes in the background to warm the cache. When the
 * runtime is down, alerts get `enrich_error` at once for `error_ttl`.
 *
 * As a Component it follows Docker's event stream (image pull/tag/untag/import/delete/push,
 * container create/start) so pull times and tag changes are recorded without polling.
 */
import { existsSync } from 'node:fs';
import { fieldString, type Alert, type EnrichValue } from '../alert.js';
import type { Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Enricher } from '../pipeline/types.js';
import type { Db } from '../store/db.js';
import type { ChangeSink } from '../cluster/types.js';
import { CriClient, type CriImageStatus } from './cri-client.js';
import { DockerClient, type DockerEvent, type DockerHistoryEntry, type DockerImage } from './docker-client.js';
import { digestFor, isImageId, parseImageRef, shortenCommand, tagKey, type ImageRef } from './image-ref.js';
import { ImageStore, type ImageFacts, type ImageRecord } from './image-store.js';
import { CONTAINER_RUNTIME, IMAGE } from './keys.js';
import { TtlLru } from './ttl-lru.js';

export type ContainerEnrichConfig = Config['enrich']['container'];
export type RuntimeKind = 'docker' | 'cri';

export interface ContainerEnricherDeps {
  readonly config: ContainerEnrichConfig;
  readonly db: Db;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Injected clients (tests); otherwise created from the config sockets. */
  readonly docker?: DockerClient;
  readonly cri?: CriClient;
  /** Shared store (cluster) the image history also writes to; absent: this node only. */
  readonly cluster?: ChangeSink | null;
}

/** What a lookup found: where the container's image is in the store. */
type Lookup =
  | { readonly kind: 'found'; readonly runtime: RuntimeKind; readonly imageId: string; readonly ref: ImageRef | null }
  | { readonly kind: 'not_found'; readonly runtime: RuntimeKind }
  | { readonly kind: 'error'; readonly runtime: RuntimeKind; readonly message: string; readonly code: string };

interface CacheEntry {
  readonly value: Lookup;
  /** The keys last built from `value` and the image store at `keysVersion` (reused on hits). */
  keys: { readonly res: Readonly<Record<string, EnrichValue>> } | null;
  keysVersion: number;
}

const NO_KEYS = { res: Object.freeze({}) as Readonly<Record<string, EnrichValue>> } as const;
const CONTAINER_ID = /^[0-9a-f]{12,64}$/;

/** True for exactly 12 lower-case hex digits (what CONTAINER_ID accepts and the cache keys on). */
function isShortId(s: string): boolean {
  if (s.length !== 12) return false;
  for (let i = 0; i < 12; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

const MAX_VALUE = 256;
const MAX_INFLIGHT = 256;
const MAX_EVENT_QUEUE = 1000;
const IMAGE_EVENTS = new Set(['pull', 'tag', 'untag', 'import', 'delete', 'push']);
const CONTAINER_EVENTS = new Set(['create', 'start']);
const NONE_RECHECK_MS = 30_000;

export class ContainerEnricher implements Enricher, Component {
  readonly id = 'enrich/container';
  readonly store: ImageStore;
  private readonly cfg: ContainerEnrichConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  /** Container id (12 hex digits) → found (cache_ttl) or not found (negative_ttl). */
  private readonly cache: TtlLru<string, CacheEntry>;
  private readonly inflight = new Map<string, Promise<Lookup>>();
  private runtime: RuntimeKind | 'none' | null = null;
  private runtimeCheckedMs = 0;
  private docker: DockerClient | null;
  private cri: CriClient | null;
  private downUntilMs = 0;
  private downReason = '';
  private readonly stopper = new AbortController();
  private watching: Promise<void> | null = null;
  private eventsConnected = false;
  private readonly eventQueue: DockerEvent[] = [];
  private draining: Promise<void> | null = null;
  private readonly m;

  constructor(private readonly d: ContainerEnricherDeps) {
    this.cfg = d.config;
    this.log = d.logger.child({ component: this.id });
    this.clock = d.clock;
    this.docker = d.docker ?? null;
    this.cri = d.cri ?? null;
    this.store = new ImageStore({ db: d.db, maxImages: d.config.max_images, maxTags: d.config.max_tags, metrics: d.metrics, clock: d.clock, cluster: d.cluster ?? null });
    const mx = d.metrics;
    const lookups = mx.counter('enrich_container_lookups_total', 'Container lookups by result', ['result']);
    this.m = {
      lookups,
      /** Bound once: counted for every alert of a known container. */
      hits: lookups.labels({ result: 'hit' }),
      cacheEvictions: mx.counter('enrich_container_cache_evictions_total', 'Container cache entries evicted because the cache was full'),
      events: mx.counter('enrich_container_runtime_events_total', 'Runtime events handled, by type and action', ['type', 'action']),
      eventsDropped: mx.counter('enrich_container_runtime_events_dropped_total', 'Runtime events dropped because the event queue was full'),
      connected: mx.gauge('enrich_container_events_connected', '1 while the Docker event stream is open'),
      lookupSeconds: mx.histogram('enrich_container_lookup_seconds', 'Duration of one runtime lookup (cache misses)', ['runtime'], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 5]),
    };
    this.cache = new TtlLru({ max: d.config.cache_size, clock: d.clock, onEvict: () => this.m.cacheEvictions.inc() });
  }

  // -------------------------------------------------------------------------------------------
  // Component

  async start(): Promise<void> {
    if (!this.cfg.enabled) return;
    const rt = this.resolveRuntime();
    this.log.info({ status: rt }, `container runtime: ${rt}`);
    if (rt === 'docker' && this.cfg.events && !this.watching) {
      const docker = this.dockerClient();
      this.watching = docker.watchEvents({
        filters: { type: ['image', 'container'], event: [...IMAGE_EVENTS, ...CONTAINER_EVENTS] },
        signal: this.stopper.signal,
        reconnectMaxMs: this.cfg.events_reconnect_max,
        onEvent: (ev) => this.enqueueEvent(ev),
        onState: (connected, err) => {
          this.eventsConnected = connected;
          this.m.connected.set(connected ? 1 : 0);
          if (connected) {
            this.downUntilMs = 0;
            this.log.info({ status: 'connected' }, 'docker event stream open');
          } else this.log.warn({ status: 'disconnected', error: errorMessage(err) }, 'docker event stream closed; reconnecting');
        },
      });
    }
  }

  async stop(deadlineMs: number): Promise<void> {
    this.stopper.abort();
    const left = Math.max(0, deadlineMs - Date.now());
    let t: NodeJS.Timeout | undefined;
    const pending = [this.watching ?? Promise.resolve(), this.draining ?? Promise.resolve(), ...this.inflight.values()];
    await Promise.race([Promise.allSettled(pending), new Promise<void>((r) => (t = setTimeout(r, left)))]);
    clearTimeout(t);
    this.docker?.close();
    this.cri?.close();
    this.m.connected.set(0);
  }

  health(): ComponentHealth {
    const rt = this.runtime ?? 'unresolved';
    if (!this.cfg.enabled) return { ready: true, detail: 'disabled' };
    const down = this.clock.now() < this.downUntilMs ? `; runtime failing: ${this.downReason}` : '';
    const ev = rt === 'docker' && this.cfg.events ? (this.eventsConnected ? '; events connected' : '; events disconnected') : '';
    // Enrichment is best effort: a missing runtime never makes the companion unready.
    return { ready: true, detail: `runtime ${rt}${ev}${down}`.slice(0, 200) };
  }

  // -------------------------------------------------------------------------------------------
  // Enricher

  /**
   * The answer without waiting (cache hit, host, invalid id, runtime down: the pipeline's fast
   * path, no timer); undefined when a runtime lookup is needed (nothing counted then).
   */
  enrichSync(alert: Alert): Readonly<Record<string, EnrichValue>> | undefined {
    const q = this.quick(alert);
    return 'res' in q ? q.res : undefined;
  }

  async enrich(alert: Alert, signal: AbortSignal): Promise<Readonly<Record<string, EnrichValue>>> {
    const q = this.quick(alert);
    if ('res' in q) return q.res;
    const { id, rt } = q;
    const p = this.lookup(id, rt);
    if (p === null) {
      this.m.lookups.inc({ result: 'overloaded' });
      return { 'container.runtime': rt, enrich_error: 'container: too many lookups in flight' };
    }
    const r = await raceAbort(p, signal);
    if (r === null) {
      this.m.lookups.inc({ result: 'budget' });
      return { 'container.runtime': rt, enrich_error: `container: ${rt} lookup slower than the enrichment budget` };
    }
    return this.keysFor(r);
  }

  /** Everything answered without a runtime request, or the container to look up. */
  private quick(alert: Alert): { readonly res: Readonly<Record<string, EnrichValue>> } | { readonly id: string; readonly rt: Exclude<RuntimeKind, 'none'> } {
    if (!this.cfg.enabled) return NO_KEYS;
    const raw = fieldString(alert, 'container.id');
    if (raw === null) return NO_KEYS;
    let id: string;
    if (isShortId(raw)) id = raw; // Falco's usual form: nothing to trim, lower or cut
    else {
      const cid = raw.trim().toLowerCase();
      if (cid === '' || cid === 'host') return NO_KEYS;
      if (!CONTAINER_ID.test(cid)) {
        this.m.lookups.inc({ result: 'invalid' });
        return { res: { enrich_error: 'container: container.id is not a container id' } };
      }
      id = cid.slice(0, 12);
    }
    const rt = this.resolveRuntime();
    if (rt === 'none') return NO_KEYS;

    const cached = this.cache.get(id);
    if (cached) {
      this.m.hits.inc();
      // Keys are rebuilt only when the image store changed since (a local observation or a merge
      // from other nodes; no SQLite read per hit); the frozen record and its wrapper are reused.
      if (cached.keys === null || cached.keysVersion !== this.store.version) {
        cached.keys = { res: Object.freeze(this.keysFor(cached.value)) };
        cached.keysVersion = this.store.version;
      }
      return cached.keys;
    }
    const now = this.clock.now();
    if (now < this.downUntilMs) {
      this.m.lookups.inc({ result: 'runtime_down' });
      return { res: { 'container.runtime': rt, enrich_error: `container: ${this.downReason}`.slice(0, MAX_VALUE) } };
    }
    return { id, rt };
  }

  /** Start (or join) the lookup of one container; null when too many are in flight. */
  private lookup(id: string, rt: RuntimeKind): Promise<Lookup> | null {
    const existing = this.inflight.get(id);
    if (existing) return existing;
    if (this.inflight.size >= MAX_INFLIGHT) return null;
    const started = performance.now();
    const p = (rt === 'docker' ? this.lookupDocker(id) : this.lookupCri(id))
      .catch((err: unknown): Lookup => ({ kind: 'error', runtime: rt, code: errorCode(err), message: errorMessage(err) }))
      .then((r) => {
        this.m.lookupSeconds.observe({ runtime: rt }, (performance.now() - started) / 1000);
        this.afterLookup(id, r);
        return r;
      })
      .finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private afterLookup(id: string, r: Lookup): void {
    const now = this.clock.now();
    if (r.kind === 'found') {
      this.m.lookups.inc({ result: 'found' });
      this.downUntilMs = 0;
      this.cachePut(id, r, this.cfg.cache_ttl);
    } else if (r.kind === 'not_found') {
      this.m.lookups.inc({ result: 'not_found' });
      this.downUntilMs = 0;
      this.cachePut(id, r, this.cfg.negative_ttl);
    } else {
      this.m.lookups.inc({ result: 'error' });
      this.d.metrics.errors.inc({ component: this.id, code: r.code });
      if (/UNAVAILABLE|TIMEOUT/.test(r.code)) {
        this.downUntilMs = now + this.cfg.error_ttl;
        this.downReason = `${r.runtime} unavailable (${shortError(r.message)})`;
      }
      this.log.warn({ error: r.message, status: r.code }, `${r.runtime} lookup failed`);
    }
  }

  private async lookupDocker(id: string): Promise<Lookup> {
    const docker = this.dockerClient();
    const signal = this.stopper.signal;
    const c = await unlessCode(docker.containerInspect(id, signal), 'E_DOCKER_NOT_FOUND');
    if (c === null) return { kind: 'not_found', runtime: 'docker' };
    const refText = c.Config?.Image ?? '';
    const ref = isImageId(refText) ? null : parseImageRef(refText);
    const existing = this.store.get(c.Image, ref);
    if (existing && existing.layers !== null) {
      // Image facts never change for an image ID; only refresh whether the tag still points here.
      return { kind: 'found', runtime: 'docker', imageId: c.Image, ref };
    }
    const [img, hist] = await Promise.all([docker.imageInspect(c.Image, signal), docker.imageHistory(c.Image, signal)]);
    const facts = dockerFacts(img, hist, ref);
    this.store.observe(facts, { tagCurrent: tagPointsHere(ref, img.RepoTags ?? []) });
    return { kind: 'found', runtime: 'docker', imageId: img.Id, ref: facts.ref };
  }

  private async lookupCri(id: string): Promise<Lookup> {
    const cri = this.criClient();
    const signal = this.stopper.signal;
    const s = await unlessCode(cri.containerStatus(id, signal), 'E_CRI_NOT_FOUND');
    if (s === null) return { kind: 'not_found', runtime: 'cri' };
    const name = s.image?.image ?? '';
    const target = s.image_id || s.image_ref || name;
    if (!target) return { kind: 'not_found', runtime: 'cri' };
    const st = await cri.imageStatus(target, signal);
    if (!st.image) return { kind: 'not_found', runtime: 'cri' };
    const ref = (isImageId(name) ? null : parseImageRef(name)) ?? firstRef(st.image.repo_tags);
    const facts = criFacts(st, ref);
    this.store.observe(facts, { tagCurrent: tagPointsHere(ref, st.image.repo_tags) });
    return { kind: 'found', runtime: 'cri', imageId: facts.imageId, ref };
  }

  private keysFor(r: Lookup): Record<string, EnrichValue> {
    if (r.kind === 'not_found') return { 'container.runtime': r.runtime, enrich_error: `container: not found in ${r.runtime}` };
    if (r.kind === 'error') return { 'container.runtime': r.runtime, enrich_error: `container: ${r.runtime} lookup failed (${shortError(r.message)})`.slice(0, MAX_VALUE) };
    const rec = this.store.get(r.imageId, r.ref);
    if (!rec) return { 'container.runtime': r.runtime, enrich_error: 'container: image history evicted' };
    return imageKeys(rec, r.runtime);
  }

  // -------------------------------------------------------------------------------------------
  // Docker events

  private enqueueEvent(ev: DockerEvent): void {
    if (this.eventQueue.length >= MAX_EVENT_QUEUE) {
      this.m.eventsDropped.inc();
      return;
    }
    this.eventQueue.push(ev);
    this.draining ??= this.drainEvents().finally(() => {
      this.draining = null;
    });
  }

  private async drainEvents(): Promise<void> {
    for (let ev = this.eventQueue.shift(); ev !== undefined; ev = this.eventQueue.shift()) {
      if (this.stopper.signal.aborted) return;
      try {
        await this.handleEvent(ev);
      } catch (err) {
        this.d.metrics.errors.inc({ component: this.id, code: errorCode(err) });
        this.log.warn({ error: errorMessage(err), status: `${ev.Type}/${ev.Action}` }, 'runtime event not recorded');
      }
    }
  }

  /** Handle one Docker event (exposed for tests through the event stream only). */
  private async handleEvent(ev: DockerEvent): Promise<void> {
    const type = ev.Type === 'image' || ev.Type === 'container' ? ev.Type : 'other';
    const action = IMAGE_EVENTS.has(ev.Action) || CONTAINER_EVENTS.has(ev.Action) ? ev.Action : 'other';
    this.m.events.inc({ type, action });
    const docker = this.dockerClient();
    const signal = this.stopper.signal;
    const atMs = typeof ev.timeNano === 'number' && ev.timeNano > 0 ? Math.floor(ev.timeNano / 1e6) : typeof ev.time === 'number' ? ev.time * 1000 : this.clock.now();
    const id = ev.Actor?.ID ?? ev.id ?? '';
    if (type === 'container') {
      // Warm the cache so the first alert of a new container is answered from it.
      if (/^[0-9a-f]{12,64}$/.test(id)) {
        const cid = id.slice(0, 12);
        this.cache.delete(cid);
        await this.lookup(cid, 'docker');
      }
      return;
    }
    if (action === 'pull' || action === 'tag' || action === 'import') {
      // pull: id is the reference pulled. tag: id is the image ID, Attributes.name the new reference.
      const refText = action === 'tag' ? (ev.Actor?.Attributes?.['name'] ?? '') : action === 'pull' ? id : '';
      const ref = refText && !isImageId(refText) ? parseImageRef(refText) : null;
      if (!id) return;
      const img = await docker.imageInspect(id, signal);
      const hist = await docker.imageHistory(img.Id, signal);
      const facts = dockerFacts(img, hist, ref);
      const rec = this.store.observe(facts, { pulledAtMs: action === 'pull' ? atMs : null, tagCurrent: ref !== null });
      this.log.debug({ status: action, image: img.Id.slice(0, 19), tag_mutated: rec.tagMutated }, 'image event recorded');
    }
    // untag/delete/push: nothing to record; history outlives the local image.
  }

  // -------------------------------------------------------------------------------------------
  // Runtime selection, clients, cache

  private resolveRuntime(): RuntimeKind | 'none' {
    const now = this.clock.now();
    if (this.runtime !== null && !(this.runtime === 'none' && this.cfg.runtime === 'auto' && now - this.runtimeCheckedMs > NONE_RECHECK_MS)) {
      return this.runtime;
    }
    this.runtimeCheckedMs = now;
    const mode = this.cfg.runtime;
    if (mode === 'docker' || mode === 'cri' || mode === 'none') this.runtime = mode;
    else if (this.d.docker || existsSync(this.cfg.docker_socket)) this.runtime = 'docker';
    else if (this.d.cri || existsSync(this.cfg.cri_socket)) this.runtime = 'cri';
    else this.runtime = 'none';
    return this.runtime;
  }

  private dockerClient(): DockerClient {
    this.docker ??= new DockerClient({ socketPath: this.cfg.docker_socket, timeoutMs: this.cfg.request_timeout, apiVersion: this.cfg.docker_api_version });
    return this.docker;
  }

  private criClient(): CriClient {
    this.cri ??= new CriClient({ socketPath: this.cfg.cri_socket, timeoutMs: this.cfg.request_timeout });
    return this.cri;
  }

  private cachePut(id: string, value: Lookup, ttlMs: number): void {
    this.cache.set(id, { value, keys: null, keysVersion: 0 }, ttlMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers (exported for unit tests)

/** Output keys (without the `companion.` prefix) for one image record. */
export function imageKeys(rec: ImageRecord, runtime: RuntimeKind): Record<string, EnrichValue> {
  const out: Record<string, EnrichValue> = {};
  const put = (k: string, v: string | number | boolean | null | undefined): void => {
    if (v === null || v === undefined) return;
    out[k] = typeof v === 'string' ? v.slice(0, MAX_VALUE) : v;
  };
  put(IMAGE.registry, rec.ref?.registry);
  put(IMAGE.repository, rec.ref?.repository);
  put(IMAGE.tag, rec.ref?.tag);
  put(IMAGE.digest, rec.digest ?? rec.imageId);
  put(IMAGE.created, rec.created);
  put(IMAGE.firstSeen, isoMs(rec.firstSeenMs));
  put(IMAGE.pulledAt, rec.pulledAtMs === null ? null : isoMs(rec.pulledAtMs));
  put(IMAGE.layers, rec.layers);
  put(IMAGE.newestLayerCreated, rec.newestLayerCreated);
  put(IMAGE.newestLayerCmd, rec.newestLayerCmd);
  put(IMAGE.tagMutated, rec.tagMutated);
  if (rec.tagMutated) put(IMAGE.previousDigest, rec.previousDigest);
  out[CONTAINER_RUNTIME] = runtime;
  return out;
}

/** Facts from Docker's image inspect and history (history is newest first). */
export function dockerFacts(img: DockerImage, hist: readonly DockerHistoryEntry[], ref: ImageRef | null): ImageFacts {
  const usedRef = ref ?? firstRef(img.RepoTags ?? []);
  const newest = hist.find((h) => (h.Size ?? 0) > 0) ?? hist[0];
  return {
    imageId: img.Id,
    ref: usedRef,
    digest: digestFor(usedRef, img.RepoDigests ?? []),
    created: isoText(img.Created),
    layers: img.RootFS?.Layers?.length ?? null,
    newestLayerCreated: newest && Number.isFinite(newest.Created) && newest.Created > 0 ? isoMs(newest.Created * 1000) : null,
    newestLayerCmd: newest?.CreatedBy ? shortenCommand(newest.CreatedBy) || null : null,
  };
}

interface OciImageConfig {
  created?: string;
  rootfs?: { diff_ids?: unknown[] };
  history?: { created?: string; created_by?: string; empty_layer?: boolean }[];
}

/** Facts from CRI ImageStatus (verbose: containerd puts the OCI image config in info.info.imageSpec). */
export function criFacts(st: CriImageStatus, ref: ImageRef | null): ImageFacts {
  const img = st.image;
  if (!img) throw new Error('criFacts: no image');
  let spec: OciImageConfig | null = null;
  for (const v of Object.values(st.info)) {
    try {
      const parsed = JSON.parse(v) as { imageSpec?: OciImageConfig } | OciImageConfig;
      const cand = 'imageSpec' in parsed && parsed.imageSpec ? parsed.imageSpec : (parsed as OciImageConfig);
      if (cand && (cand.rootfs || cand.history || cand.created)) {
        spec = cand;
        break;
      }
    } catch {
      // not JSON: skip
    }
  }
  const hist = Array.isArray(spec?.history) ? spec.history : [];
  const nonEmpty = hist.filter((h) => !h.empty_layer);
  const newest = nonEmpty[nonEmpty.length - 1] ?? hist[hist.length - 1];
  return {
    imageId: img.id,
    ref,
    digest: digestFor(ref, img.repo_digests),
    created: isoText(spec?.created),
    layers: Array.isArray(spec?.rootfs?.diff_ids) ? spec.rootfs.diff_ids.length : null,
    newestLayerCreated: isoText(newest?.created),
    newestLayerCmd: newest?.created_by ? shortenCommand(newest.created_by) || null : null,
  };
}

function firstRef(tags: readonly string[]): ImageRef | null {
  for (const t of tags) {
    const r = parseImageRef(t);
    if (r && r.tag !== null && t !== '<none>:<none>') return r;
  }
  return null;
}

function tagPointsHere(ref: ImageRef | null, repoTags: readonly string[]): boolean {
  const key = ref ? tagKey(ref) : null;
  if (!key) return false;
  return repoTags.some((t) => {
    const p = parseImageRef(t);
    return p !== null && tagKey(p) === key;
  });
}

function isoMs(ms: number): string {
  return new Date(ms).toISOString();
}

function isoText(s: string | undefined | null): string | null {
  if (!s) return null;
  const ms = Date.parse(s);
  if (!Number.isFinite(ms) || ms <= 0) return null;
  return new Date(ms).toISOString();
}

/** The promise's value, or null when it fails with the error code `code` (other failures pass on). */
async function unlessCode<T>(p: Promise<T>, code: string): Promise<T | null> {
  try {
    return await p;
  } catch (err) {
    if (errorCode(err) === code) return null;
    throw err;
  }
}

function shortError(msg: string): string {
  return msg.replace(/^GET \S+: /, '').slice(0, 120);
}

/** Resolve with the promise's value, or null as soon as the signal aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise<T | null>((resolve) => {
    const onAbort = (): void => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve(null);
      },
    );
  });
}
