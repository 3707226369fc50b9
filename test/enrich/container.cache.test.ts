/**
 * The container enricher's synchronous fast path (enrichSync) and its cached keys, with a Docker
 * client answering from memory (no daemon: the real-daemon behaviour is in container.docker.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { ManualClock, systemClock } from '../../src/clock.js';
import { defaults } from '../../src/config/dsl.js';
import { containerEnrichSection } from '../../src/config/sections/enrich-container.js';
import { ContainerEnricher, type ContainerEnrichConfig } from '../../src/enrich/container.js';
import { DockerClient, DockerError, type DockerContainer, type DockerEvent, type DockerHistoryEntry, type DockerImage, type WatchEventsOptions } from '../../src/enrich/docker-client.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { falcoAlert } from '../support/falco-alerts.js';
import { until } from '../support/wait.js';

const IMAGE_ID = `sha256:${'ab'.repeat(32)}`;
const REF = 'registry.example.com/shop/web:1.4.2';

class MemoryDocker extends DockerClient {
  inspects = 0;
  emit: ((ev: DockerEvent) => void) | null = null;
  /** Container ids this engine does not know (404). */
  readonly missing = new Set<string>();
  constructor() {
    super({ socketPath: '/nonexistent/docker.sock', timeoutMs: 1000, apiVersion: '1.41' });
  }
  override async containerInspect(id: string): Promise<DockerContainer> {
    this.inspects++;
    if (this.missing.has(id)) throw new DockerError('E_DOCKER_NOT_FOUND', `no such container: ${id}`, { status: 404 });
    return { Id: id.padEnd(64, '0'), Image: IMAGE_ID, Name: `/c-${id}`, Created: '2026-07-29T09:00:00Z', Config: { Image: REF, Labels: {} } };
  }
  override async imageInspect(): Promise<DockerImage> {
    return { Id: IMAGE_ID, RepoTags: [REF], RepoDigests: [`registry.example.com/shop/web@sha256:${'cd'.repeat(32)}`], Created: '2026-07-01T00:00:00Z', RootFS: { Layers: [`sha256:${'ef'.repeat(32)}`] } };
  }
  override async imageHistory(): Promise<DockerHistoryEntry[]> {
    return [{ Id: IMAGE_ID, Created: 1_782_864_000, CreatedBy: '/bin/sh -c #(nop) CMD ["nginx"]', Size: 0, Tags: [REF] }];
  }
  override async watchEvents(o: WatchEventsOptions): Promise<void> {
    this.emit = o.onEvent;
    o.onState?.(true, null);
    await new Promise<void>((r) => o.signal.addEventListener('abort', () => r(), { once: true }));
  }
}

const alertFor = (containerId: string): Alert => falcoAlert({ fields: { 'container.id': containerId } });

let dir = '';
let db: Db | null = null;
let enricher: ContainerEnricher | null = null;
afterEach(async () => {
  await enricher?.stop(Date.now() + 1000);
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ContainerEnricher enrichSync', () => {
  it('answers cache hits synchronously, rebuilds the keys when the image store changes, and starts no lookup on a miss', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-container-cache-'));
    db = openStateDb(dir);
    const docker = new MemoryDocker();
    const config: ContainerEnrichConfig = { ...(defaults(containerEnrichSection) as ContainerEnrichConfig), runtime: 'docker' };
    enricher = new ContainerEnricher({ config, db, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock, docker });
    await enricher.start();
    const a = alertFor('3f2a9c1b7d4e');

    expect(enricher.enrichSync(a)).toBeUndefined(); // not cached yet: the async path must look it up
    expect(docker.inspects).toBe(0); // and the fast path started nothing
    const first = await enricher.enrich(a, new AbortController().signal);
    expect(first['image.repository']).toBe('shop/web');
    expect(first['image.pulled_at']).toBeUndefined();
    expect(docker.inspects).toBe(1);

    const hit = enricher.enrichSync(a);
    expect(hit).toEqual(first);
    expect(enricher.enrichSync(a)).toBe(hit); // the same keys object, no rebuild
    expect(docker.inspects).toBe(1);

    // A pull recorded from the event stream changes the image record: the next hit shows it.
    await until(() => docker.emit !== null, 2000, 'event stream');
    docker.emit?.({ Type: 'image', Action: 'pull', id: REF, timeNano: Date.parse('2026-07-29T08:00:00Z') * 1e6 });
    await until(() => enricher?.enrichSync(a)?.['image.pulled_at'] !== undefined, 2000, 'pull recorded');
    expect(enricher.enrichSync(a)?.['image.pulled_at']).toBe('2026-07-29T08:00:00.000Z');

    // Host and malformed ids are answered synchronously too.
    expect(enricher.enrichSync(alertFor('host'))).toEqual({});
    expect(enricher.enrichSync(alertFor('not-an-id'))).toEqual({ enrich_error: 'container: container.id is not a container id' });
  });
});

describe('ContainerEnricher cache', () => {
  it('remembers "not found" for negative_ttl, found containers for cache_ttl, and counts evictions beyond cache_size', async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-container-cache-'));
    db = openStateDb(dir);
    const docker = new MemoryDocker();
    docker.missing.add('0000000000aa');
    const clock = new ManualClock(1_000_000);
    const metrics = new Metrics({ collectDefault: false });
    const config: ContainerEnrichConfig = { ...(defaults(containerEnrichSection) as ContainerEnrichConfig), runtime: 'docker', events: false, cache_size: 2, cache_ttl: 5000, negative_ttl: 1000 };
    enricher = new ContainerEnricher({ config, db, logger: silentLogger(), metrics, clock, docker });
    await enricher.start();
    const signal = new AbortController().signal;
    const gone = alertFor('0000000000aa');

    expect((await enricher.enrich(gone, signal))['enrich_error']).toBe('container: not found in docker');
    clock.advance(1000);
    expect(enricher.enrichSync(gone)?.['enrich_error']).toBe('container: not found in docker'); // still remembered
    clock.advance(1);
    expect(enricher.enrichSync(gone)).toBeUndefined(); // negative_ttl over: the next alert looks again
    expect(docker.inspects).toBe(1);

    const [a, b, c] = ['3f2a9c000001', '3f2a9c000002', '3f2a9c000003'].map(alertFor) as [Alert, Alert, Alert];
    for (const x of [a, b]) expect((await enricher.enrich(x, signal))['image.repository']).toBe('shop/web');
    expect(enricher.enrichSync(a)?.['image.repository']).toBe('shop/web'); // a is now the most recently used
    await enricher.enrich(c, signal); // a third container: b (least recently used) is evicted
    expect(enricher.enrichSync(b)).toBeUndefined();
    expect(enricher.enrichSync(a)).toBeDefined();
    expect(await metrics.registry.getSingleMetricAsString('falco_companion_enrich_container_cache_evictions_total')).toMatch(/_total 1$/m);
    clock.advance(5001);
    expect(enricher.enrichSync(a)).toBeUndefined(); // cache_ttl over
    expect(docker.inspects).toBe(4);
  });
});
