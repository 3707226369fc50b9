/**
 * First-seen baseline of egress destinations per image: (image, destination IP or domain, port).
 *
 * - Event time (the alert's `timeNs`) decides everything; the wall clock is not used.
 * - Learning period per image: from the first destination ever seen for that image, new
 *   destinations are learnt and reported with `learning: true`.
 * - Bounded per image, in total and in images; the least recently seen goes first (counted).
 * - An in-memory index answers on the hot path; changes are written to the state database
 *   (namespace `egress_baseline`) in one transaction per flush (timer, stop, and as soon as
 *   `maxPending` changes wait, so a flood between two timer ticks cannot grow the pending set).
 * - Memory: about 310 bytes per destination (one compact record, one per-image key, one set slot;
 *   the image name is shared), measured with bench/flood; see docs/operations.md (sizing).
 * - Cluster (optional `cluster` sink, docs/cluster-store.md): the changes written at a flush are
 *   also handed to the shared store (namespace `eg`: group = image key, field `~` = the image,
 *   `dest|port` = a destination; first seen min, last seen max, this node's new observations
 *   added); other nodes' entries come back through {@link EgressBaseline.mergeRemote} and are
 *   stored here like local ones, so `isNew` never asks the shared store.
 */
import type { Logger } from 'pino';
import type { Component, ComponentHealth } from '../component.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { NS, type ChangeSink, type Entry, type SnapshotReason } from '../cluster/types.js';

export const BASELINE_NAMESPACE = 'egress_baseline';

const MIGRATIONS = [
  `CREATE TABLE egress_baseline_images (
     image TEXT PRIMARY KEY,
     first_ns INTEGER NOT NULL,
     last_ns INTEGER NOT NULL
   );
   CREATE TABLE egress_baseline (
     image TEXT NOT NULL,
     dest TEXT NOT NULL,
     port INTEGER NOT NULL,
     first_ns INTEGER NOT NULL,
     last_ns INTEGER NOT NULL,
     PRIMARY KEY (image, dest, port)
   ) WITHOUT ROWID;
   CREATE INDEX egress_baseline_last ON egress_baseline(last_ns);`,
  // This node's observations of a destination, and how many of them the shared store has (cluster).
  `ALTER TABLE egress_baseline ADD COLUMN count INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE egress_baseline ADD COLUMN pushed INTEGER NOT NULL DEFAULT 0;`,
];

/** Shared-store layouts (src/cluster/tuple.ts): the image (first, last) and a destination (first, last, count). */
export const EGRESS_IMAGE_OPS = '<>';
export const EGRESS_DEST_OPS = '<>+';
export const EGRESS_IMAGE_FIELD = '~';

const NS_PER_MS = 1_000_000n;
const toMs = (ns: bigint): number => Number(ns / NS_PER_MS);

/** last_ns is rewritten at most this often per entry (it only orders evictions). */
const LAST_SEEN_GRANULARITY_NS = 60_000_000_000n;
/**
 * The shared store is told that a known entry was seen again at most this often (last seen
 * orders trims and expiry there): a tenth of the writes of busy destinations (bench:cluster).
 */
const SHARED_LAST_SEEN_GRANULARITY_MIN = 10;
/** Minutes since the epoch: a small integer (no heap number per entry). */
const toMin = (ms: number): number => Math.floor(ms / 60_000);

/** What the shared store has not been told yet: nothing, only a newer last seen, or more. */
const PUSH_NONE = 0;
const PUSH_LAST = 1;
const PUSH_ALL = 2;

export interface BaselineOptions {
  readonly db: Db;
  readonly learningPeriodMs: number;
  readonly maxPerImage: number;
  readonly maxTotal: number;
  readonly maxImages: number;
  readonly flushIntervalMs: number;
  /** Flush at once when this many changes wait (default 10 000); bounds memory between timer ticks. */
  readonly maxPending?: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Shared store (cluster): changes written at a flush go there too. Null or absent: this node only. */
  readonly cluster?: ChangeSink | null;
}

export interface BaselineVerdict {
  /** First time this (image, dest, port) is seen (or seen again after eviction). */
  readonly newForImage: boolean;
  /** The image is still inside its learning period at this event time. */
  readonly learning: boolean;
}

/** The four verdicts, shared (nothing allocated per alert). */
const NEW: BaselineVerdict = Object.freeze({ newForImage: true, learning: false });
const NEW_LEARNING: BaselineVerdict = Object.freeze({ newForImage: true, learning: true });
const KNOWN: BaselineVerdict = Object.freeze({ newForImage: false, learning: false });
const KNOWN_LEARNING: BaselineVerdict = Object.freeze({ newForImage: false, learning: true });

/** One destination; compact on purpose (no own key string: the image record is shared). */
interface Dest {
  readonly img: Image;
  readonly dest: string;
  readonly port: number;
  firstNs: bigint;
  lastNs: bigint;
  savedLastNs: bigint | null;
  /** This node's observations, and how many the shared store was told about. */
  count: number;
  pushed: number;
  /** Changed here (not by a merge from other nodes) since the last flush: PUSH_NONE, PUSH_LAST or PUSH_ALL. */
  push: number;
  /** Last seen the shared store was told about (minutes since the epoch). */
  pushedLastMin: number;
}

interface Image {
  readonly image: string;
  firstNs: bigint;
  lastNs: bigint;
  savedLastNs: bigint | null;
  push: number;
  pushedLastMin: number;
  readonly dests: Map<string, Dest>;
}

export class EgressBaseline implements Component {
  readonly id = 'enrich/egress-baseline';
  private readonly o: BaselineOptions;
  private readonly learningNs: bigint;
  /** Images in least-recently-seen-first order. */
  private readonly images = new Map<string, Image>();
  /** The most recently seen image and destination: already last in their maps (no reorder). */
  private lastImage: Image | null = null;
  private lastDest: Dest | null = null;
  private learnImg: Image | null = null;
  private learnFirstNs = 0n;
  private learnEndNs = 0n;
  /** All destinations in least-recently-seen-first order. */
  private readonly all = new Set<Dest>();
  /** Destinations to write: true = upsert, false = delete the row. */
  private readonly dirtyDests = new Map<Dest, boolean>();
  private readonly maxPending: number;
  private readonly dirtyImages = new Map<string, Image | null>();
  private timer: NodeJS.Timeout | null = null;
  private loaded = false;
  private lastFlushError: string | null = null;
  private readonly evictions;
  private readonly flushes;

  constructor(o: BaselineOptions) {
    this.o = o;
    this.learningNs = BigInt(Math.round(o.learningPeriodMs)) * 1_000_000n;
    this.maxPending = Math.max(1, o.maxPending ?? 10_000);
    this.evictions = o.metrics.counter<'reason'>('egress_baseline_evictions_total', 'Baseline entries evicted to stay within bounds (per_image, total: destinations; image: whole images)', ['reason']);
    this.flushes = o.metrics.counter<'result'>('egress_baseline_flushes_total', 'Baseline writes to the state database by result', ['result']);
    const all = this.all;
    const images = this.images;
    o.metrics.gauge('egress_baseline_entries', 'Destinations held in the egress baseline', [], function () {
      this.set(all.size);
    });
    o.metrics.gauge('egress_baseline_images', 'Images held in the egress baseline', [], function () {
      this.set(images.size);
    });
  }

  /** Create tables and load the persisted baseline (applying the current bounds). */
  load(): void {
    if (this.loaded) return;
    const { db } = this.o;
    migrate(db, BASELINE_NAMESPACE, MIGRATIONS);
    const imgs = db.prepare('SELECT image, first_ns, last_ns FROM egress_baseline_images ORDER BY last_ns ASC').safeIntegers(true).all() as { image: string; first_ns: bigint; last_ns: bigint }[];
    for (const r of imgs) {
      this.images.set(r.image, { image: r.image, firstNs: r.first_ns, lastNs: r.last_ns, savedLastNs: r.last_ns, push: PUSH_NONE, pushedLastMin: 0, dests: new Map() });
    }
    const rows = db.prepare('SELECT image, dest, port, first_ns, last_ns, count, pushed FROM egress_baseline ORDER BY last_ns ASC').safeIntegers(true).all() as {
      image: string;
      dest: string;
      port: bigint;
      first_ns: bigint;
      last_ns: bigint;
      count: bigint;
      pushed: bigint;
    }[];
    for (const r of rows) {
      let img = this.images.get(r.image);
      if (!img) {
        img = { image: r.image, firstNs: r.first_ns, lastNs: r.last_ns, savedLastNs: null, push: PUSH_NONE, pushedLastMin: 0, dests: new Map() };
        this.images.set(r.image, img);
        this.dirtyImages.set(r.image, img);
      }
      const port = Number(r.port);
      const d: Dest = { img, dest: r.dest, port, firstNs: r.first_ns, lastNs: r.last_ns, savedLastNs: r.last_ns, count: Number(r.count), pushed: Number(r.pushed), push: PUSH_NONE, pushedLastMin: 0 };
      img.dests.set(`${r.dest}\u0000${port}`, d);
      this.all.add(d);
    }
    // Bounds may have shrunk since the last run.
    for (const img of [...this.images.values()]) this.trimImage(img);
    this.trimTotal();
    this.trimImages();
    this.loaded = true;
    this.o.logger.info({ images: this.images.size, destinations: this.all.size }, 'egress baseline loaded');
  }

  /** Look up and record a destination at event time `timeNs`. */
  isNew(image: string, dest: string, port: number, timeNs: bigint): BaselineVerdict {
    if (!this.loaded) this.load();
    let img = this.images.get(image);
    if (!img) {
      img = { image, firstNs: timeNs, lastNs: timeNs, savedLastNs: null, push: PUSH_ALL, pushedLastMin: 0, dests: new Map() };
      this.images.set(image, img);
      this.dirtyImages.set(image, img);
      this.trimImages();
    } else {
      if (img !== this.lastImage) {
        this.images.delete(image);
        this.images.set(image, img);
      }
      if (timeNs < img.firstNs) {
        img.firstNs = timeNs; // an older event arrived late: the learning period starts earlier
        img.push = PUSH_ALL;
        this.dirtyImages.set(image, img);
      }
      if (timeNs > img.lastNs) {
        img.lastNs = timeNs;
        if (img.savedLastNs === null || img.lastNs - img.savedLastNs >= LAST_SEEN_GRANULARITY_NS) {
          img.push ||= PUSH_LAST;
          this.dirtyImages.set(image, img);
        }
      }
    }
    const learning = timeNs < this.learningEnd(img);
    const dk = `${dest}\u0000${port}`;
    const existing = img.dests.get(dk);
    this.lastImage = img;
    if (existing) {
      existing.count++;
      if (existing !== this.lastDest) {
        img.dests.delete(dk);
        img.dests.set(dk, existing);
        this.all.delete(existing);
        this.all.add(existing);
        this.lastDest = existing;
      }
      if (timeNs < existing.firstNs) {
        existing.firstNs = timeNs;
        existing.push = PUSH_ALL;
        this.dirtyDests.set(existing, true);
      }
      if (timeNs > existing.lastNs) {
        existing.lastNs = timeNs;
        if (existing.savedLastNs === null || existing.lastNs - existing.savedLastNs >= LAST_SEEN_GRANULARITY_NS) {
          existing.push ||= PUSH_LAST;
          this.dirtyDests.set(existing, true);
        }
      }
      this.flushIfFull();
      return learning ? KNOWN_LEARNING : KNOWN;
    }
    const d: Dest = { img, dest, port, firstNs: timeNs, lastNs: timeNs, savedLastNs: null, count: 1, pushed: 0, push: PUSH_ALL, pushedLastMin: 0 };
    img.dests.set(dk, d);
    this.all.add(d);
    this.lastDest = d;
    this.dirtyDests.set(d, true);
    this.trimImage(img);
    this.trimTotal();
    this.flushIfFull();
    return learning ? NEW_LEARNING : NEW;
  }

  /** End of an image's learning period (memoised for the last image: no BigInt sum per alert). */
  private learningEnd(img: Image): bigint {
    if (img !== this.learnImg || img.firstNs !== this.learnFirstNs) {
      this.learnImg = img;
      this.learnFirstNs = img.firstNs;
      this.learnEndNs = img.firstNs + this.learningNs;
    }
    return this.learnEndNs;
  }

  /** Destinations held (for tests and health). */
  get size(): number {
    return this.all.size;
  }

  get imageCount(): number {
    return this.images.size;
  }

  /** Changes waiting for the next flush. */
  get pendingWrites(): number {
    return this.dirtyDests.size + this.dirtyImages.size;
  }

  /** Write pending changes in one transaction. Returns rows written; never throws. */
  flush(): number {
    if (this.dirtyDests.size === 0 && this.dirtyImages.size === 0) return 0;
    this.pushChanges();
    const { db } = this.o;
    let n = 0;
    try {
      const upImg = db.prepare(
        'INSERT INTO egress_baseline_images(image, first_ns, last_ns) VALUES (?, ?, ?) ON CONFLICT(image) DO UPDATE SET first_ns = excluded.first_ns, last_ns = excluded.last_ns',
      );
      const delImg = db.prepare('DELETE FROM egress_baseline_images WHERE image = ?');
      const delImgDests = db.prepare('DELETE FROM egress_baseline WHERE image = ?');
      const upDest = db.prepare(
        'INSERT INTO egress_baseline(image, dest, port, first_ns, last_ns, count, pushed) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(image, dest, port) DO UPDATE SET first_ns = excluded.first_ns, last_ns = excluded.last_ns, count = excluded.count, pushed = excluded.pushed',
      );
      const delDest = db.prepare('DELETE FROM egress_baseline WHERE image = ? AND dest = ? AND port = ?');
      db.transaction(() => {
        for (const [name, img] of this.dirtyImages) {
          if (img) upImg.run(name, img.firstNs, img.lastNs);
          else {
            delImg.run(name);
            delImgDests.run(name);
          }
          n++;
        }
        for (const [d, live] of this.dirtyDests) {
          if (live) upDest.run(d.img.image, d.dest, d.port, d.firstNs, d.lastNs, d.count, d.pushed);
          else delDest.run(d.img.image, d.dest, d.port);
          n++;
        }
      })();
    } catch (err) {
      this.flushes.inc({ result: 'error' });
      this.o.metrics.errors.inc({ component: this.id, code: errorCode(err) });
      const msg = errorMessage(err);
      if (msg !== this.lastFlushError) this.o.logger.error({ error: msg }, 'egress baseline flush failed; will retry');
      this.lastFlushError = msg;
      this.capPending();
      return 0;
    }
    for (const img of this.dirtyImages.values()) if (img) img.savedLastNs = img.lastNs;
    for (const [d, live] of this.dirtyDests) if (live) d.savedLastNs = d.lastNs;
    this.dirtyImages.clear();
    this.dirtyDests.clear();
    this.lastFlushError = null;
    this.flushes.inc({ result: 'ok' });
    return n;
  }

  /** Hand what changed here since the last flush to the shared store (when there is one). */
  private pushChanges(): void {
    const sink = this.o.cluster;
    if (!sink) return;
    // A newer last seen alone waits until it moved SHARED_LAST_SEEN_GRANULARITY_MIN (the next
    // flush that finds it dirty again tells it).
    const due = (e: { push: number; pushedLastMin: number }, lastMs: number): boolean => e.push === PUSH_ALL || (e.push === PUSH_LAST && toMin(lastMs) - e.pushedLastMin >= SHARED_LAST_SEEN_GRANULARITY_MIN);
    for (const img of this.dirtyImages.values()) {
      if (!img || img.push === PUSH_NONE) continue;
      const lastMs = toMs(img.lastNs);
      if (due(img, lastMs)) {
        sink.put(NS.egress, img.image, EGRESS_IMAGE_FIELD, EGRESS_IMAGE_OPS, [toMs(img.firstNs), lastMs]);
        img.pushedLastMin = toMin(lastMs);
      }
      img.push = PUSH_NONE;
    }
    for (const [d, live] of this.dirtyDests) {
      if (!live || d.push === PUSH_NONE) continue;
      const lastMs = toMs(d.lastNs);
      if (due(d, lastMs)) {
        sink.put(NS.egress, d.img.image, `${d.dest}|${d.port}`, EGRESS_DEST_OPS, [toMs(d.firstNs), lastMs, d.count - d.pushed]);
        d.pushed = d.count;
        d.pushedLastMin = toMin(lastMs);
      }
      d.push = PUSH_NONE;
    }
  }

  /**
   * Merge what other nodes learned (first seen min, last seen max; their counts stay theirs).
   * `dest` null is the image itself. An entry older than everything a full bound would keep is
   * skipped; otherwise it is held like a local one (evictions counted), written at the next flush,
   * and never handed back to the shared store.
   */
  mergeRemote(image: string, dest: string | null, port: number, firstMs: number, lastMs: number): void {
    if (!this.loaded) this.load();
    const firstNs = BigInt(Math.trunc(firstMs)) * NS_PER_MS;
    const lastNs = BigInt(Math.trunc(lastMs)) * NS_PER_MS;
    let img = this.images.get(image);
    if (!img) {
      if (this.images.size >= this.o.maxImages && lastNs <= (this.images.values().next().value as Image).lastNs) return;
      img = { image, firstNs, lastNs, savedLastNs: null, push: PUSH_NONE, pushedLastMin: toMin(lastMs), dests: new Map() };
      this.images.set(image, img);
      this.dirtyImages.set(image, img);
      this.trimImages();
    } else {
      // Millisecond precision: the echo of this node's own entry changes nothing.
      if (firstMs < toMs(img.firstNs)) {
        img.firstNs = firstNs;
        this.dirtyImages.set(image, img);
      }
      if (lastNs > img.lastNs) img.lastNs = lastNs;
      img.pushedLastMin = Math.max(img.pushedLastMin, toMin(lastMs)); // the shared store knows it
    }
    this.lastImage = null;
    this.lastDest = null;
    if (dest === null) return;
    const dk = `${dest}\u0000${port}`;
    const d = img.dests.get(dk);
    if (d) {
      let changed = false;
      if (firstMs < toMs(d.firstNs)) {
        d.firstNs = firstNs;
        changed = true;
      }
      if (lastNs > d.lastNs) {
        d.lastNs = lastNs;
        changed ||= d.savedLastNs === null || d.lastNs - d.savedLastNs >= LAST_SEEN_GRANULARITY_NS;
      }
      d.pushedLastMin = Math.max(d.pushedLastMin, toMin(lastMs));
      if (changed && this.dirtyDests.get(d) !== true) this.dirtyDests.set(d, true);
      return;
    }
    if (img.dests.size >= this.o.maxPerImage && lastNs <= (img.dests.values().next().value as Dest).lastNs) return;
    if (this.all.size >= this.o.maxTotal && lastNs <= (this.all.values().next().value as Dest).lastNs) return;
    const nd: Dest = { img, dest, port, firstNs, lastNs, savedLastNs: null, count: 0, pushed: 0, push: PUSH_NONE, pushedLastMin: toMin(lastMs) };
    img.dests.set(dk, nd);
    this.all.add(nd);
    this.dirtyDests.set(nd, true);
    this.trimImage(img);
    this.trimTotal();
    this.flushIfFull();
  }

  /**
   * The whole baseline as shared-store entries (a full push or `baseline export`). Counts: all of
   * this node's observations for a new store (`epoch`) or an export, the ones not yet sent after
   * an overflow; the shared store is then told about them.
   */
  *entries(reason: SnapshotReason): Generator<Entry> {
    if (!this.loaded) this.load();
    for (const img of [...this.images.values()]) {
      yield { group: img.image, field: EGRESS_IMAGE_FIELD, tuple: [toMs(img.firstNs), toMs(img.lastNs)] };
      for (const d of [...img.dests.values()]) {
        const count = reason === 'overflow' ? d.count - d.pushed : d.count;
        if (reason !== 'export' && d.pushed !== d.count) {
          d.pushed = d.count;
          if (this.dirtyDests.get(d) !== false) this.dirtyDests.set(d, true);
        }
        yield { group: img.image, field: `${d.dest}|${d.port}`, tuple: [toMs(d.firstNs), toMs(d.lastNs), count] };
      }
    }
  }

  async start(): Promise<void> {
    this.load();
    if (this.timer) return;
    this.timer = setInterval(() => this.flush(), this.o.flushIntervalMs);
    this.timer.unref();
  }

  async stop(_deadlineMs: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.loaded) this.flush();
  }

  health(): ComponentHealth {
    return this.lastFlushError ? { ready: true, detail: `flush failing: ${this.lastFlushError}` } : { ready: true, detail: `${this.all.size} destinations, ${this.images.size} images` };
  }

  /** Flush now when too many changes wait (not while the database is failing: the timer retries). */
  private flushIfFull(): void {
    if (this.pendingWrites < this.maxPending) return;
    if (this.lastFlushError === null) this.flush();
    else this.capPending();
  }

  private removeDest(d: Dest, reason: 'per_image' | 'total' | null): void {
    if (d === this.lastDest) this.lastDest = null;
    this.all.delete(d);
    d.img.dests.delete(`${d.dest}\u0000${d.port}`);
    // The row may exist from an earlier flush or the load; a never-written entry needs no delete.
    if (d.savedLastNs === null && this.dirtyDests.get(d) === true) this.dirtyDests.delete(d);
    else this.dirtyDests.set(d, false);
    if (reason) this.evictions.inc({ reason });
  }

  private trimImage(img: Image): void {
    while (img.dests.size > this.o.maxPerImage) {
      const oldest = img.dests.values().next().value as Dest;
      this.removeDest(oldest, 'per_image');
    }
  }

  private trimTotal(): void {
    while (this.all.size > this.o.maxTotal) {
      const oldest = this.all.values().next().value as Dest;
      this.removeDest(oldest, 'total');
    }
  }

  private trimImages(): void {
    while (this.images.size > this.o.maxImages) {
      const oldest = this.images.values().next().value as Image;
      // Per-row deletes too, so an image that comes back before the next flush starts empty.
      for (const d of [...oldest.dests.values()]) this.removeDest(d, null);
      this.images.delete(oldest.image);
      if (oldest === this.lastImage) this.lastImage = null;
      this.dirtyImages.set(oldest.image, null); // deletes the image row and its destinations
      this.evictions.inc({ reason: 'image' });
    }
  }

  /** While the database refuses writes, keep pending changes bounded (deletes go first). */
  private capPending(): void {
    const limit = this.o.maxTotal + this.o.maxImages + 10_000;
    if (this.pendingWrites <= limit) return;
    let dropped = 0;
    for (const [k, live] of this.dirtyDests) {
      if (this.pendingWrites <= limit) break;
      if (!live) {
        this.dirtyDests.delete(k);
        dropped++;
      }
    }
    if (dropped > 0) this.o.metrics.discarded.inc({ component: this.id, reason: 'pending_deletes' }, dropped);
  }
}
