/**
 * CRI path: ImageStatus (verbose) and ContainerStatus against a real containerd with its CRI
 * plugin on a temp socket (image imported into the k8s.io namespace with ctr). Running a CRI
 * container needs a pod sandbox (pause image, CNI), so the enricher's ContainerStatus step is
 * served by a small CRI server built from proto/cri/api.proto that answers ContainerStatus and
 * forwards ImageStatus to the real containerd.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { systemClock } from '../../src/clock.js';
import { defaults } from '../../src/config/dsl.js';
import { containerEnrichSection } from '../../src/config/sections/enrich-container.js';
import { ContainerEnricher, criFacts, type ContainerEnrichConfig } from '../../src/enrich/container.js';
import { CriClient, loadCriMethods } from '../../src/enrich/cri-client.js';
import { parseImageRef } from '../../src/enrich/image-ref.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { containerdSkipReason, startContainerd, type Containerd } from '../support/containerd.js';
import { dockerSkipReason, startDockerd } from '../support/dockerd.js';
import { falcoAlert } from '../support/falco-alerts.js';

const skip = containerdSkipReason() ?? dockerSkipReason();
if (skip) console.warn(`skipping real containerd CRI tests: ${skip}`);

const REF = 'docker.io/demo/cri:1.0';
const CONTAINER = 'c0ffee000000c0ffee000000c0ffee000000c0ffee000000c0ffee000000c0ff';

describe.skipIf(skip !== null)('CRI ImageStatus / ContainerStatus with a real containerd', () => {
  let ctd: Containerd;
  let tmp: string;
  let cri: CriClient;
  let imageId: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fc-cri-'));
    // The image tar comes from a real dockerd (docker import + docker save).
    const d = await startDockerd();
    try {
      imageId = await d.importImage('demo/cri:1.0', 'cri');
      await d.docker('save', '-o', join(tmp, 'image.tar'), 'demo/cri:1.0');
    } finally {
      await d.close();
    }
    ctd = await startContainerd();
    await ctd.ctr('-n', 'k8s.io', 'images', 'import', join(tmp, 'image.tar'));
    cri = new CriClient({ socketPath: ctd.socket, timeoutMs: 3000 });
  });

  afterAll(async () => {
    cri?.close();
    await ctd?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('ImageStatus (verbose) returns the imported image with its OCI config', async () => {
    const st = await cri.imageStatus(REF);
    expect(st.image?.id).toBe(imageId);
    expect(st.image?.repo_tags).toContain(REF);
    const facts = criFacts(st, parseImageRef(REF));
    expect(facts.layers).toBe(1);
    expect(facts.created).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(facts.ref?.repository).toBe('demo/cri');
    expect(facts.newestLayerCreated).toMatch(/^\d{4}-\d\d-\d\dT/);
    // An image imported from a tar has tags but no registry (repo) digest.
    expect(facts.digest).toBe(st.image?.repo_digests.length ? expect.stringMatching(/^sha256:/) : null);
  });

  it('ImageStatus of an absent image has no image; ContainerStatus of an unknown id is NOT_FOUND', async () => {
    expect((await cri.imageStatus('docker.io/demo/absent:9.9')).image).toBeNull();
    await expect(cri.containerStatus('0123456789ab')).rejects.toMatchObject({ code: 'E_CRI_NOT_FOUND' });
  });

  describe('enricher over CRI', () => {
    let server: grpc.Server;
    let sock: string;
    let db: Db;
    let enricher: ContainerEnricher;

    beforeAll(async () => {
      sock = join(tmp, 'cri.sock');
      const m = loadCriMethods();
      server = new grpc.Server();
      server.addService(m.runtimeService as unknown as grpc.ServiceDefinition, {
        ContainerStatus: (call: grpc.ServerUnaryCall<{ container_id: string }, object>, cb: grpc.sendUnaryData<object>) => {
          if (!CONTAINER.startsWith(call.request.container_id)) return cb({ code: grpc.status.NOT_FOUND, details: 'does not exist' });
          cb(null, { status: { id: CONTAINER, state: 1, image: { image: REF }, image_ref: imageId, created_at: String(Date.now() * 1e6) } });
        },
      });
      server.addService(m.imageService as unknown as grpc.ServiceDefinition, {
        ImageStatus: (call: grpc.ServerUnaryCall<{ image?: { image?: string } }, object>, cb: grpc.sendUnaryData<object>) => {
          cri.imageStatus(call.request.image?.image ?? '').then(
            (st) => cb(null, st),
            (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }),
          );
        },
      });
      await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
      db = openStateDb(join(tmp, 'state'));
      const config: ContainerEnrichConfig = { ...(defaults(containerEnrichSection) as ContainerEnrichConfig), runtime: 'cri', cri_socket: sock };
      enricher = new ContainerEnricher({ config, db, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock });
      await enricher.start();
    });

    afterAll(async () => {
      await enricher?.stop(Date.now() + 2000);
      db?.close();
      await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
    });

    const alert = (id: string): Alert => falcoAlert({ fields: { 'container.id': id } });

    it('adds image history from ContainerStatus + ImageStatus', async () => {
      const keys = await enricher.enrich(alert(CONTAINER.slice(0, 12)), AbortSignal.timeout(3000));
      expect(keys['enrich_error']).toBeUndefined();
      expect(keys['container.runtime']).toBe('cri');
      expect(keys['image.registry']).toBe('docker.io');
      expect(keys['image.repository']).toBe('demo/cri');
      expect(keys['image.tag']).toBe('1.0');
      expect(keys['image.digest']).toBe(imageId); // no registry digest: the image ID stands in
      expect(keys['image.layers']).toBe(1);
      expect(typeof keys['image.first_seen']).toBe('string');
      expect(keys['image.tag_mutated']).toBe(false);
    });

    it('reports an unknown container', async () => {
      const keys = await enricher.enrich(alert('0123456789ab'), AbortSignal.timeout(3000));
      expect(keys['enrich_error']).toBe('container: not found in cri');
    });
  });
});
