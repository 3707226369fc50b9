/**
 * The store interface for what the companion learns and shares cluster-wide (docs/cluster-store.md).
 *
 * Two halves:
 * - a {@link Replica} is a local store that owns its SQLite copy (the embedded default: without a
 *   shared store nothing else exists): the egress baseline, the image history, the beacon series
 *   contribution. It answers every read on the alert path from local state, reports its changes to a
 *   {@link ChangeSink} (write-behind) and merges what other nodes learned ({@link Replica.applyRemote}).
 * - a {@link SharedStore} is where nodes meet (Redis: ./redis-store.ts). Writes merge on the server
 *   by the rules of ./tuple.ts; pulls return what changed since a cursor.
 *
 * ./sync.ts connects them: it batches the sink's changes to the shared store, pulls other nodes'
 * changes, and never lets the alert path wait for the shared store.
 */
import type { Tuple } from './tuple.js';

/** Names of the shared namespaces (part of the key layout: never rename a released one). */
export const NS = {
  /** Egress baseline: group = image key; fields `~` (the image) and `dest|port`. */
  egress: 'eg',
  /** Image history: group = `registry/repository` (`~` without a reference); fields `i|<image id>`, `t|<tag>|<image id>`. */
  images: 'img',
  /** Beacon series pooled by image: group = series key; fields `<second>|<node>`. */
  series: 'bs',
  /** Resource baselines per workload or image: group = baseline group; fields `<metric>[|tod<b>/<n>]`. */
  resources: 'rb',
} as const;
export type NamespaceName = (typeof NS)[keyof typeof NS];

/** How one namespace is shaped and bounded in the shared store. */
export interface NamespaceSpec {
  readonly name: NamespaceName;
  /** Index of the recency cell (a `>` cell of every tuple of the namespace): trims and expiry go by it. */
  readonly recency: number;
  /** Fields kept per group (the least recent are trimmed; a field named `~` is never trimmed). */
  readonly maxFields: number;
  /** Groups kept per namespace (the least recently announced are dropped whole). */
  readonly maxGroups: number;
  /** A group nobody wrote for this long expires; fields whose recency is older are trimmed. */
  readonly ttlMs: number;
  /** Unit of the recency cell, to turn the TTL into a trim threshold: 1 (ms) or 1000 (seconds). */
  readonly recencyUnitMs: number;
  /**
   * Other nodes are told about a field again when its recency advanced by at least this much
   * (in recency units) since it was last announced; new fields and changes of the other cells are
   * always announced. Bounds the pull traffic of busy entries.
   */
  readonly announceEvery: number;
}

/** One learned fact: a field of a group in a namespace. */
export interface Entry {
  readonly group: string;
  readonly field: string;
  readonly tuple: Tuple;
}

/** Where a local store reports what it learned (synchronous, never blocks, never throws). */
export interface ChangeSink {
  put(ns: NamespaceName, group: string, field: string, ops: string, tuple: Tuple): void;
}

/** Why a full copy of the local state is offered again. */
export type SnapshotReason = 'epoch' | 'overflow' | 'export';

/** A local store whose state is shared. */
export interface Replica {
  readonly spec: NamespaceSpec;
  /** The cell operators of a field (all fields of a namespace share a layout per field kind). */
  opsOf(field: string): string | null;
  /** Merge other nodes' entries into the local copy (never reported back to the sink). */
  applyRemote(entries: readonly Entry[]): void;
  /**
   * Everything the local copy holds, for a full push: after the shared store lost its data (a new
   * epoch), after the outbox overflowed, and for `baseline export`.
   */
  snapshot(reason: SnapshotReason): Iterable<Entry>;
}

/** The shared store's side of a connection. */
export interface SharedStore {
  readonly kind: string;
  /** Start connecting (with backoff, forever); `onState` is told about every change. */
  connect(onState: (connected: boolean, error: string | null) => void): void;
  close(): Promise<void>;
  /**
   * Register this node (heartbeat) and read the store's epoch (created when missing) and version
   * counter; `nodes` is how many nodes sent a heartbeat within `liveMs`.
   */
  hello(node: string, nowMs: number, liveMs: number): Promise<{ readonly epoch: string; readonly seq: number; readonly nodes: number }>;
  /** Merge a batch of one namespace (encoded tuples); returns how many fields were announced. */
  push(spec: NamespaceSpec, groups: ReadonlyMap<string, ReadonlyMap<string, string>>, nowMs: number): Promise<number>;
  /**
   * One page of a pull pass: the groups announced after `from` (in version order), each with its
   * fields announced after `since` (the version up to which this node has everything), at most
   * about `maxFields` entries (whole groups). A pass starts with `from = since` and goes on from
   * the returned `next` while `more`; then `since` becomes the last `next`. (Filtering the fields
   * by `since` and not by `from` matters: a group re-announced later still holds fields announced
   * earlier than the groups read before it.)
   */
  pull(spec: NamespaceSpec, from: number, since: number, maxFields: number): Promise<PullResult>;
}

export interface PullResult {
  /** Where the next page starts (the version of the last group returned). */
  readonly next: number;
  readonly entries: readonly { readonly group: string; readonly field: string; readonly value: string }[];
  /** More groups wait after `next`. */
  readonly more: boolean;
}

/**
 * Beacon series pooled by image across nodes (issue #15). The beacon detector stays a
 * deterministic state machine on event time: it only *records* its own connection seconds here
 * (write-behind, no effect on its output); the remote points reach it as input, drained by the
 * engine between steps ({@link ClusterSeries.drain}) and replayable like any signal.
 */
export interface ClusterSeries {
  /** This node saw a connection of the pooled series `key` in second `sec` (event time). */
  record(key: string, sec: number): void;
  /** Points other nodes contributed since the last drain (bounded, oldest series first). */
  drain(max: number): RemoteSeries[];
  /** This node's name (the detector compares it with {@link seriesOwner}). */
  readonly node: string;
}

export interface RemoteSeries {
  readonly key: string;
  /** Seconds with connections on other nodes, ascending, counts summed over those nodes. */
  readonly points: readonly { readonly sec: number; readonly count: number }[];
  /** Nodes that contributed (sorted). */
  readonly nodes: readonly string[];
  /** The latest second each of those nodes contributed (which nodes still see the series). */
  readonly last: ReadonlyMap<string, number>;
}

/**
 * Resource baselines (src/resource/baseline.ts) shared across nodes: group = the baseline's group
 * (`workload:<ns>/<owner>/<container>` or `image:<ref>`; per-container baselines stay local);
 * field = metric (`cpu`, `memory`, `pids`, `net_*`), with `|tod<b>/<n>` for a time-of-day bucket;
 * tuple `<>>++` = first seen ms, last seen ms, peak, sample count, sum of samples (values in
 * thousandths; mean = sum / count; peaks max, counts and sums add).
 */
export interface ResourceBaselineReplica extends Replica {
  readonly spec: NamespaceSpec & { readonly name: typeof NS.resources };
}
export const RESOURCE_OPS = '<>>++';
