/**
 * Per-image history on this node, in the state database (namespace `images`): first seen, pulled
 * at, registry/repository/tag, digest, created, layer count, newest layer, and tag mutation (a
 * tag that pointed to another image before). Both tables are capped; the least recently updated
 * rows are evicted and counted.
 *
 * Cluster (optional `cluster` sink, docs/cluster-store.md): every observation is also handed to the
 * shared store (namespace `img`, group `registry/repository` or `~`): the image's facts (first seen
 * min, updated max, facts by byte order) and, when the runtime says a tag points to the image,
 * that tag observation (first, last, digest). Other nodes' observations come back through
 * {@link ImageStore.mergeRemote}: first seen becomes the earliest in the cluster, and a tag that
 * pointed to another image earlier on any node marks the image as a tag mutation.
 */
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { NS, type ChangeSink, type Entry } from '../cluster/types.js';
import type { Tuple } from '../cluster/tuple.js';
import { repoKey, tagKey, type ImageRef } from './image-ref.js';

export const IMAGES_NAMESPACE = 'images';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE image_records (
     image_id TEXT PRIMARY KEY,
     registry TEXT, repository TEXT, tag TEXT, digest TEXT,
     created TEXT, layers INTEGER, newest_layer_created TEXT, newest_layer_cmd TEXT,
     first_seen_ms INTEGER NOT NULL, pulled_at_ms INTEGER, updated_ms INTEGER NOT NULL
   );
   CREATE INDEX image_records_updated ON image_records(updated_ms);
   CREATE TABLE image_tags (
     tag_key TEXT PRIMARY KEY,
     image_id TEXT NOT NULL, digest TEXT,
     previous_image_id TEXT, previous_digest TEXT, changed_ms INTEGER,
     pulled_at_ms INTEGER, first_seen_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL
   );
   CREATE INDEX image_tags_updated ON image_tags(updated_ms);`,
  // Cluster: every image a tag was seen pointing to, on any node (first, last seen as current).
  `CREATE TABLE image_tag_seen (
     tag_key TEXT NOT NULL, image_id TEXT NOT NULL, digest TEXT,
     first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
     PRIMARY KEY (tag_key, image_id)
   ) WITHOUT ROWID;
   CREATE INDEX image_tag_seen_last ON image_tag_seen(last_ms);`,
];

/** Shared-store layouts (src/cluster/tuple.ts). Image: first seen, updated, digest, created, layers, newest layer created, its command. */
export const IMAGE_RECORD_OPS = '<>^^>^^';
/** Tag observation: first seen, last seen (as the tag's current image), digest. */
export const IMAGE_TAG_OPS = '<>^';
/** Group of images without a registry reference. */
export const NO_REPO_GROUP = '~';

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const intOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : null);

/** `registry/repository` of a group name (registries never contain `/`). */
function splitRepo(group: string): { registry: string; repository: string } | null {
  const i = group.indexOf('/');
  return group === NO_REPO_GROUP || i <= 0 ? null : { registry: group.slice(0, i), repository: group.slice(i + 1) };
}

/** What the runtime tells about an image. */
export interface ImageFacts {
  /** Local image ID (`sha256:` of the config). */
  readonly imageId: string;
  /** The reference the container (or event) used; null when only an ID is known. */
  readonly ref: ImageRef | null;
  /** Registry manifest digest (`sha256:...`) when the image came from a registry. */
  readonly digest: string | null;
  /** RFC 3339. */
  readonly created: string | null;
  readonly layers: number | null;
  readonly newestLayerCreated: string | null;
  /** Already shortened. */
  readonly newestLayerCmd: string | null;
}

export interface ImageRecord extends ImageFacts {
  readonly firstSeenMs: number;
  readonly pulledAtMs: number | null;
  readonly tagMutated: boolean;
  /** The digest (or image ID when no digest was known) this tag pointed to before. */
  readonly previousDigest: string | null;
}

interface ImageRow {
  image_id: string;
  registry: string | null;
  repository: string | null;
  tag: string | null;
  digest: string | null;
  created: string | null;
  layers: number | null;
  newest_layer_created: string | null;
  newest_layer_cmd: string | null;
  first_seen_ms: number;
  pulled_at_ms: number | null;
}

interface TagRow {
  tag_key: string;
  image_id: string;
  digest: string | null;
  previous_image_id: string | null;
  previous_digest: string | null;
  changed_ms: number | null;
  pulled_at_ms: number | null;
}

export interface ImageStoreOptions {
  readonly db: Db;
  readonly maxImages: number;
  readonly maxTags: number;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Shared store (cluster); null or absent: this node only. */
  readonly cluster?: ChangeSink | null;
}

interface SeenRow {
  tag_key: string;
  image_id: string;
  digest: string | null;
  first_ms: number;
  last_ms: number;
}

export class ImageStore {
  private readonly db: Db;
  private imageCount: number;
  private tagCount: number;
  private seenCount: number;
  /** Bumped on every change (readers cache what they built from the store per version). */
  version = 1;
  private readonly evicted;
  private readonly mutations;
  private readonly st;

  constructor(private readonly o: ImageStoreOptions) {
    this.db = o.db;
    migrate(this.db, IMAGES_NAMESPACE, MIGRATIONS);
    this.evicted = o.metrics.counter('enrich_image_records_evicted_total', 'Image history rows evicted because the table was full', ['table']);
    this.mutations = o.metrics.counter('enrich_image_tag_mutations_total', 'Tags seen pointing to a new image');
    const db = this.db;
    this.st = {
      getImage: db.prepare<[string], ImageRow>('SELECT * FROM image_records WHERE image_id = ?'),
      getTag: db.prepare<[string], TagRow>('SELECT * FROM image_tags WHERE tag_key = ?'),
      insertImage: db.prepare(
        `INSERT INTO image_records(image_id, registry, repository, tag, digest, created, layers, newest_layer_created, newest_layer_cmd, first_seen_ms, pulled_at_ms, updated_ms)
         VALUES (@image_id, @registry, @repository, @tag, @digest, @created, @layers, @newest_layer_created, @newest_layer_cmd, @first_seen_ms, @pulled_at_ms, @updated_ms)`,
      ),
      updateImage: db.prepare(
        `UPDATE image_records SET registry = @registry, repository = @repository, tag = @tag, digest = @digest, created = @created, layers = @layers,
           newest_layer_created = @newest_layer_created, newest_layer_cmd = @newest_layer_cmd, first_seen_ms = @first_seen_ms, pulled_at_ms = @pulled_at_ms, updated_ms = @updated_ms
         WHERE image_id = @image_id`,
      ),
      insertTag: db.prepare(
        `INSERT INTO image_tags(tag_key, image_id, digest, previous_image_id, previous_digest, changed_ms, pulled_at_ms, first_seen_ms, updated_ms)
         VALUES (@tag_key, @image_id, @digest, NULL, NULL, NULL, @pulled_at_ms, @now, @now)`,
      ),
      updateTag: db.prepare(
        `UPDATE image_tags SET image_id = @image_id, digest = @digest, previous_image_id = @previous_image_id, previous_digest = @previous_digest,
           changed_ms = @changed_ms, pulled_at_ms = @pulled_at_ms, updated_ms = @now WHERE tag_key = @tag_key`,
      ),
      countImages: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM image_records'),
      countTags: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM image_tags'),
      evictImages: db.prepare('DELETE FROM image_records WHERE image_id IN (SELECT image_id FROM image_records ORDER BY updated_ms ASC LIMIT ?)'),
      evictTags: db.prepare('DELETE FROM image_tags WHERE tag_key IN (SELECT tag_key FROM image_tags ORDER BY updated_ms ASC LIMIT ?)'),
      upsertSeen: db.prepare(
        `INSERT INTO image_tag_seen(tag_key, image_id, digest, first_ms, last_ms) VALUES (@tag_key, @image_id, @digest, @first_ms, @last_ms)
         ON CONFLICT(tag_key, image_id) DO UPDATE SET digest = COALESCE(image_tag_seen.digest, excluded.digest),
           first_ms = MIN(image_tag_seen.first_ms, excluded.first_ms), last_ms = MAX(image_tag_seen.last_ms, excluded.last_ms)`,
      ),
      getSeen: db.prepare<[string, string], SeenRow>('SELECT * FROM image_tag_seen WHERE tag_key = ? AND image_id = ?'),
      previousSeen: db.prepare<[string, string, number], SeenRow>(
        'SELECT * FROM image_tag_seen WHERE tag_key = ? AND image_id <> ? AND first_ms < ? ORDER BY first_ms DESC, image_id DESC LIMIT 1',
      ),
      countSeen: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM image_tag_seen'),
      evictSeen: db.prepare('DELETE FROM image_tag_seen WHERE (tag_key, image_id) IN (SELECT tag_key, image_id FROM image_tag_seen ORDER BY last_ms ASC LIMIT ?)'),
      mergeImage: db.prepare(
        `UPDATE image_records SET registry = COALESCE(registry, @registry), repository = COALESCE(repository, @repository), digest = COALESCE(digest, @digest),
           created = COALESCE(created, @created), layers = COALESCE(layers, @layers), newest_layer_created = COALESCE(newest_layer_created, @newest_layer_created),
           newest_layer_cmd = COALESCE(newest_layer_cmd, @newest_layer_cmd), first_seen_ms = MIN(first_seen_ms, @first_seen_ms), updated_ms = MAX(updated_ms, @updated_ms)
         WHERE image_id = @image_id`,
      ),
      allImages: db.prepare<[], ImageRow & { updated_ms: number }>('SELECT * FROM image_records'),
      allTags: db.prepare<[], TagRow & { first_seen_ms: number; updated_ms: number }>('SELECT * FROM image_tags'),
      allSeen: db.prepare<[], SeenRow>('SELECT * FROM image_tag_seen'),
    };
    this.imageCount = this.st.countImages.get()?.n ?? 0;
    this.tagCount = this.st.countTags.get()?.n ?? 0;
    this.seenCount = this.st.countSeen.get()?.n ?? 0;
  }

  /**
   * Record what the runtime says about an image (and the tag it was used by). `pulledAtMs` is
   * set when a pull event named this reference. Returns the merged record.
   */
  observe(f: ImageFacts, opts: { pulledAtMs?: number | null; tagCurrent?: boolean } = {}): ImageRecord {
    const now = this.o.clock.now();
    const pulledAt = opts.pulledAtMs ?? null;
    this.version++;
    return this.db.transaction((): ImageRecord => {
      const old = this.st.getImage.get(f.imageId);
      const row: ImageRow & { updated_ms: number } = {
        image_id: f.imageId,
        registry: f.ref?.registry ?? old?.registry ?? null,
        repository: f.ref?.repository ?? old?.repository ?? null,
        tag: f.ref ? f.ref.tag : (old?.tag ?? null),
        digest: f.digest ?? old?.digest ?? null,
        created: f.created ?? old?.created ?? null,
        layers: f.layers ?? old?.layers ?? null,
        newest_layer_created: f.newestLayerCreated ?? old?.newest_layer_created ?? null,
        newest_layer_cmd: f.newestLayerCmd ?? old?.newest_layer_cmd ?? null,
        first_seen_ms: Math.min(old?.first_seen_ms ?? now, pulledAt ?? now),
        pulled_at_ms: pulledAt !== null ? Math.max(pulledAt, old?.pulled_at_ms ?? 0) : (old?.pulled_at_ms ?? null),
        updated_ms: now,
      };
      if (old) this.st.updateImage.run(row);
      else {
        this.st.insertImage.run(row);
        this.imageCount++;
        this.evictOver('images');
      }
      // Only move the tag when the runtime says it points to this image now (an old container
      // still running the previous image must not flip the tag back).
      const tag = opts.tagCurrent === false ? this.tagOf(f.ref) : this.observeTag(f, pulledAt, now);
      this.share(row, opts.tagCurrent === false ? null : f.ref, now);
      return this.toRecord(row, tag);
    })();
  }

  /** Hand an observation to the shared store, and keep this node's own tag observation. */
  private share(row: ImageRow & { updated_ms: number }, currentRef: ImageRef | null, now: number): void {
    const sink = this.o.cluster;
    if (!sink) return;
    const group = row.registry !== null && row.repository !== null ? `${row.registry}/${row.repository}` : NO_REPO_GROUP;
    sink.put(NS.images, group, `i|${row.image_id}`, IMAGE_RECORD_OPS, imageTuple(row));
    const key = currentRef ? tagKey(currentRef) : null;
    if (!currentRef || !key || currentRef.tag === null) return;
    this.upsertSeen({ tag_key: key, image_id: row.image_id, digest: row.digest, first_ms: now, last_ms: now });
    sink.put(NS.images, repoKey(currentRef), `t|${currentRef.tag}|${row.image_id}`, IMAGE_TAG_OPS, [now, now, row.digest]);
  }

  private upsertSeen(row: SeenRow): void {
    const known = this.st.getSeen.get(row.tag_key, row.image_id) !== undefined;
    this.st.upsertSeen.run(row);
    if (known) return;
    this.seenCount++;
    this.evictOver('seen');
  }

  /**
   * Merge other nodes' image and tag observations (one transaction): first seen becomes the
   * earliest, missing facts are filled in, tag observations are kept for the tag-mutation check.
   * Never handed back to the shared store.
   */
  mergeRemote(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    this.version++;
    this.db.transaction(() => {
      for (const e of entries) {
        if (e.field.startsWith('i|')) this.mergeImage(e.group, e.field.slice(2), e.tuple);
        else if (e.field.startsWith('t|')) {
          const rest = e.field.slice(2);
          const bar = rest.lastIndexOf('|');
          const repo = splitRepo(e.group);
          if (bar <= 0 || !repo) continue;
          const tag = rest.slice(0, bar);
          const imageId = rest.slice(bar + 1);
          const [first, last, digest] = e.tuple;
          const firstMs = intOrNull(first);
          const lastMs = intOrNull(last);
          if (firstMs === null || lastMs === null) continue;
          this.upsertSeen({ tag_key: `${e.group}:${tag}`, image_id: imageId, digest: str(digest), first_ms: firstMs, last_ms: lastMs });
        }
      }
    })();
  }

  private mergeImage(group: string, imageId: string, t: Tuple): void {
    const [first, updated, digest, created, layers, nlc, nlcmd] = t;
    const firstMs = intOrNull(first);
    if (firstMs === null || imageId === '') return;
    const repo = splitRepo(group);
    const row = {
      image_id: imageId,
      registry: repo?.registry ?? null,
      repository: repo?.repository ?? null,
      digest: str(digest),
      created: str(created),
      layers: intOrNull(layers),
      newest_layer_created: str(nlc),
      newest_layer_cmd: str(nlcmd),
      first_seen_ms: firstMs,
      updated_ms: intOrNull(updated) ?? firstMs,
    };
    if (this.st.mergeImage.run(row).changes > 0) return;
    this.st.insertImage.run({ ...row, tag: null, pulled_at_ms: null });
    this.imageCount++;
    this.evictOver('images');
  }

  /**
   * Everything this node knows as shared-store entries (a full push or `baseline export`): image
   * records, the tags' current and previous images (history kept before the cluster store was
   * on), and the tag observations.
   */
  *entries(): Generator<Entry> {
    for (const r of this.st.allImages.iterate()) {
      const group = r.registry !== null && r.repository !== null ? `${r.registry}/${r.repository}` : NO_REPO_GROUP;
      yield { group, field: `i|${r.image_id}`, tuple: imageTuple(r) };
    }
    const tagEntry = (key: string, imageId: string, digest: string | null, firstMs: number, lastMs: number): Entry | null => {
      const colon = key.lastIndexOf(':');
      if (colon <= 0 || imageId === '') return null;
      return { group: key.slice(0, colon), field: `t|${key.slice(colon + 1)}|${imageId}`, tuple: [firstMs, Math.max(firstMs, lastMs), digest] };
    };
    for (const t of this.st.allTags.iterate()) {
      const cur = tagEntry(t.tag_key, t.image_id, t.digest, t.changed_ms ?? t.first_seen_ms, t.updated_ms);
      if (cur) yield cur;
      if (t.previous_image_id !== null) {
        const prev = tagEntry(t.tag_key, t.previous_image_id, t.previous_digest, t.first_seen_ms, t.changed_ms ?? t.first_seen_ms);
        if (prev) yield prev;
      }
    }
    for (const s of this.st.allSeen.iterate()) {
      const e = tagEntry(s.tag_key, s.image_id, s.digest, s.first_ms, s.last_ms);
      if (e) yield e;
    }
  }

  /** The record for an image as used by `ref` (tag mutation and pull time come from the tag). */
  get(imageId: string, ref: ImageRef | null): ImageRecord | null {
    const row = this.st.getImage.get(imageId);
    if (!row) return null;
    return this.toRecord(row, this.tagOf(ref));
  }

  private tagOf(ref: ImageRef | null): TagRow | null {
    const key = ref ? tagKey(ref) : null;
    return key ? (this.st.getTag.get(key) ?? null) : null;
  }

  counts(): { images: number; tags: number; tagObservations: number } {
    return { images: this.imageCount, tags: this.tagCount, tagObservations: this.seenCount };
  }

  private observeTag(f: ImageFacts, pulledAt: number | null, now: number): TagRow | null {
    const key = f.ref ? tagKey(f.ref) : null;
    if (!key) return null;
    const old = this.st.getTag.get(key);
    if (!old) {
      const row = { tag_key: key, image_id: f.imageId, digest: f.digest, pulled_at_ms: pulledAt, now };
      this.st.insertTag.run(row);
      this.tagCount++;
      this.evictOver('tags');
      return { tag_key: key, image_id: f.imageId, digest: f.digest, previous_image_id: null, previous_digest: null, changed_ms: null, pulled_at_ms: pulledAt };
    }
    const moved = old.image_id !== f.imageId;
    if (moved) this.mutations.inc();
    const next: TagRow & { now: number } = {
      tag_key: key,
      image_id: f.imageId,
      digest: moved ? f.digest : (f.digest ?? old.digest),
      previous_image_id: moved ? old.image_id : old.previous_image_id,
      previous_digest: moved ? (old.digest ?? old.image_id) : old.previous_digest,
      changed_ms: moved ? now : old.changed_ms,
      pulled_at_ms: pulledAt ?? (moved ? null : old.pulled_at_ms),
      now,
    };
    this.st.updateTag.run(next);
    return next;
  }

  /**
   * With the cluster store: a tag that points here and never moved on this node, but that another
   * node saw point to an earlier image, has moved to this image (the previous one is that image).
   */
  private clusterTag(imageId: string, tag: TagRow | null): TagRow | null {
    if (tag === null || !this.o.cluster || tag.image_id !== imageId || tag.previous_image_id !== null) return tag;
    const mine = this.st.getSeen.get(tag.tag_key, imageId);
    const prev = mine ? this.st.previousSeen.get(tag.tag_key, imageId, mine.first_ms) : undefined;
    return prev ? { ...tag, previous_image_id: prev.image_id, previous_digest: prev.digest ?? prev.image_id } : tag;
  }

  private toRecord(row: ImageRow, localTag: TagRow | null): ImageRecord {
    const tag = this.clusterTag(row.image_id, localTag);
    const sameImage = tag !== null && tag.image_id === row.image_id;
    const ref: ImageRef | null =
      row.registry !== null && row.repository !== null ? { registry: row.registry, repository: row.repository, tag: row.tag, digest: null } : null;
    return {
      imageId: row.image_id,
      ref,
      digest: row.digest,
      created: row.created,
      layers: row.layers,
      newestLayerCreated: row.newest_layer_created,
      newestLayerCmd: row.newest_layer_cmd,
      firstSeenMs: row.first_seen_ms,
      pulledAtMs: sameImage && tag.pulled_at_ms !== null ? tag.pulled_at_ms : row.pulled_at_ms,
      tagMutated: sameImage && tag.previous_image_id !== null,
      previousDigest: sameImage ? tag.previous_digest : null,
    };
  }

  private evictOver(table: 'images' | 'tags' | 'seen'): void {
    const cap = table === 'images' ? this.o.maxImages : this.o.maxTags;
    const count = table === 'images' ? this.imageCount : table === 'tags' ? this.tagCount : this.seenCount;
    if (count <= cap) return;
    // Evict a little more than needed so a full table does not evict on every insert.
    const n = Math.max(count - cap, Math.ceil(cap / 100));
    const res = (table === 'images' ? this.st.evictImages : table === 'tags' ? this.st.evictTags : this.st.evictSeen).run(n);
    if (table === 'images') this.imageCount -= res.changes;
    else if (table === 'tags') this.tagCount -= res.changes;
    else this.seenCount -= res.changes;
    this.evicted.inc({ table }, res.changes);
  }
}

/** An image record as a shared-store tuple ({@link IMAGE_RECORD_OPS}). */
function imageTuple(r: ImageRow & { updated_ms: number }): Tuple {
  return [r.first_seen_ms, r.updated_ms, r.digest, r.created, r.layers, r.newest_layer_created, r.newest_layer_cmd];
}
