import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ManualClock } from '../../src/clock.js';
import { parseImageRef, shortenCommand, digestFor } from '../../src/enrich/image-ref.js';
import { ImageStore, type ImageFacts } from '../../src/enrich/image-store.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';

describe('parseImageRef', () => {
  it.each([
    ['nginx', 'docker.io', 'library/nginx', 'latest', null],
    ['demo/app:1.0', 'docker.io', 'demo/app', '1.0', null],
    ['localhost:5000/x', 'localhost:5000', 'x', 'latest', null],
    ['localhost/x:2', 'localhost', 'x', '2', null],
    ['127.0.0.1:5055/demo/app:1.0', '127.0.0.1:5055', 'demo/app', '1.0', null],
    ['ghcr.io/o/r@sha256:' + 'a'.repeat(64), 'ghcr.io', 'o/r', null, 'sha256:' + 'a'.repeat(64)],
    ['index.docker.io/library/busybox:1.36@sha256:' + 'b'.repeat(64), 'docker.io', 'library/busybox', '1.36', 'sha256:' + 'b'.repeat(64)],
  ])('%s', (input, registry, repository, tag, digest) => {
    expect(parseImageRef(input)).toEqual({ registry, repository, tag, digest });
  });

  it('rejects image IDs and junk', () => {
    expect(parseImageRef('sha256:' + 'c'.repeat(64))).toBeNull();
    expect(parseImageRef('')).toBeNull();
    expect(parseImageRef('UPPER')).toBeNull();
    expect(parseImageRef('a@notadigest')).toBeNull();
  });

  it('never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (s) => {
      const r = parseImageRef(s);
      if (r) expect(r.repository.length).toBeGreaterThan(0);
    }));
  });

  it('picks the repo digest of the same repository', () => {
    const ref = parseImageRef('127.0.0.1:5000/a/b:1');
    expect(digestFor(ref, ['other/x@sha256:' + '1'.repeat(64), '127.0.0.1:5000/a/b@sha256:' + '2'.repeat(64)])).toBe('sha256:' + '2'.repeat(64));
    expect(digestFor(ref, [])).toBeNull();
  });

  it('shortens layer commands', () => {
    expect(shortenCommand('/bin/sh -c #(nop)  CMD ["sh"]')).toBe('CMD ["sh"]');
    expect(shortenCommand('/bin/sh -c apt-get update &&   apt-get install -y curl')).toBe('RUN apt-get update && apt-get install -y curl');
    const long = shortenCommand('/bin/sh -c ' + 'x'.repeat(500));
    expect(long.length).toBe(120);
  });
});

describe('ImageStore', () => {
  let db: Db | null = null;
  afterEach(() => db?.close());

  const facts = (imageId: string, tag: string, digest: string | null): ImageFacts => ({
    imageId,
    ref: parseImageRef(`reg.example:5000/app:${tag}`),
    digest,
    created: '2026-01-01T00:00:00.000Z',
    layers: 3,
    newestLayerCreated: '2026-01-01T00:00:00.000Z',
    newestLayerCmd: 'RUN make',
  });

  it('records first seen, pull time and tag mutation with the previous digest', () => {
    db = openStateDb(':memory:');
    const clock = new ManualClock(1_000_000);
    const s = new ImageStore({ db, maxImages: 100, maxTags: 100, metrics: new Metrics({ collectDefault: false }), clock });
    const a = s.observe(facts('sha256:a', '1', 'sha256:da'), { pulledAtMs: 999_000 });
    expect(a).toMatchObject({ firstSeenMs: 999_000, pulledAtMs: 999_000, tagMutated: false, previousDigest: null });
    clock.advance(5000);
    const again = s.observe(facts('sha256:a', '1', null));
    expect(again).toMatchObject({ firstSeenMs: 999_000, digest: 'sha256:da', tagMutated: false });
    clock.advance(5000);
    const b = s.observe(facts('sha256:b', '1', 'sha256:db'), { pulledAtMs: clock.now() });
    expect(b).toMatchObject({ tagMutated: true, previousDigest: 'sha256:da', pulledAtMs: clock.now(), firstSeenMs: clock.now() });
    // An old container still running image a does not flip the tag back.
    s.observe(facts('sha256:a', '1', 'sha256:da'), { tagCurrent: false });
    expect(s.get('sha256:b', parseImageRef('reg.example:5000/app:1'))?.tagMutated).toBe(true);
    expect(s.get('sha256:a', parseImageRef('reg.example:5000/app:1'))?.tagMutated).toBe(false);
  });

  it('is bounded: the oldest rows are evicted and counted', async () => {
    db = openStateDb(':memory:');
    const clock = new ManualClock(0);
    const metrics = new Metrics({ collectDefault: false });
    const s = new ImageStore({ db, maxImages: 10, maxTags: 10, metrics, clock });
    for (let i = 0; i < 25; i++) {
      clock.advance(1);
      s.observe(facts(`sha256:${i}`, String(i), null));
    }
    expect(s.counts().images).toBeLessThanOrEqual(10);
    expect(s.counts().tags).toBeLessThanOrEqual(10);
    expect(s.get('sha256:0', null)).toBeNull();
    expect(s.get('sha256:24', null)).not.toBeNull();
    expect(await metrics.text()).toMatch(/falco_companion_enrich_image_records_evicted_total\{table="images"\} 15/);
  });
});
