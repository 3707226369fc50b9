/**
 * Per-image history on this node, in the state database (namespace `images`): first seen, pulled
 * at, registry/repository/tag, digest, created, layer count, newest layer, and tag mutation (a
 * tag that pointed to another image before). Both tables are capped; the least recently updated
 * rows are evicted and counted.
 */
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { tagKey, type ImageRef } from './image-ref.js';

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
];

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
}

export class ImageStore {
  private readonly db: Db;
  private imageCount: number;
  private tagCount: number;
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
    };
    this.imageCount = this.st.countImages.get()?.n ?? 0;
    this.tagCount = this.st.countTags.get()?.n ?? 0;
  }

  /**
   * Record what the runtime says about an image (and the tag it was used by). `pulledAtMs` is
   * set when a pull event named this reference. Returns the merged record.
   */
  observe(f: ImageFacts, opts: { pulledAtMs?: number | null; tagCurrent?: boolean } = {}): ImageRecord {
    const now = this.o.clock.now();
    const pulledAt = opts.pulledAtMs ?? null;
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
      return this.toRecord(row, tag);
    })();
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

  counts(): { images: number; tags: number } {
    return { images: this.imageCount, tags: this.tagCount };
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

  private toRecord(row: ImageRow, tag: TagRow | null): ImageRecord {
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

  private evictOver(table: 'images' | 'tags'): void {
    const cap = table === 'images' ? this.o.maxImages : this.o.maxTags;
    const count = table === 'images' ? this.imageCount : this.tagCount;
    if (count <= cap) return;
    // Evict a little more than needed so a full table does not evict on every insert.
    const n = Math.max(count - cap, Math.ceil(cap / 100));
    const res = (table === 'images' ? this.st.evictImages : this.st.evictTags).run(n);
    if (table === 'images') this.imageCount -= res.changes;
    else this.tagCount -= res.changes;
    this.evicted.inc({ table }, res.changes);
  }
}
