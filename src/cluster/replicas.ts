/**
 * The local stores as replicas of the shared store: the egress baseline (`eg`), the image
 * history (`img`) and the resource baselines (`rb`). Each adapter maps fields to the store's layout and back; the stores keep their
 * own SQLite copies (src/enrich/baseline.ts, src/enrich/image-store.ts).
 */
import { EGRESS_DEST_OPS, EGRESS_IMAGE_FIELD, EGRESS_IMAGE_OPS, type EgressBaseline } from '../enrich/baseline.js';
import { IMAGE_RECORD_OPS, IMAGE_TAG_OPS, type ImageStore } from '../enrich/image-store.js';
import type { ResourceBaselines } from '../resource/baseline.js';
import { NS, RESOURCE_OPS, type Entry, type NamespaceSpec, type Replica, type ResourceBaselineReplica, type SnapshotReason } from './types.js';

export interface StoreLimits {
  readonly egress_ttl: number;
  readonly egress_max_images: number;
  readonly egress_max_per_image: number;
  readonly image_ttl: number;
  readonly image_max_repositories: number;
  readonly image_max_per_repository: number;
  readonly series_ttl: number;
  readonly series_max: number;
  readonly series_max_points: number;
  readonly resource_ttl: number;
  readonly resource_max_groups: number;
  readonly resource_max_per_group: number;
}

const HOUR = 3_600_000;

export function egressSpec(l: StoreLimits): NamespaceSpec {
  // Last seen is re-announced at most hourly: enough to order evictions on other nodes.
  return { name: NS.egress, recency: 1, maxFields: l.egress_max_per_image + 1, maxGroups: l.egress_max_images, ttlMs: l.egress_ttl, recencyUnitMs: 1, announceEvery: HOUR };
}

export function imagesSpec(l: StoreLimits): NamespaceSpec {
  return { name: NS.images, recency: 1, maxFields: l.image_max_per_repository, maxGroups: l.image_max_repositories, ttlMs: l.image_ttl, recencyUnitMs: 1, announceEvery: 24 * HOUR };
}

export function seriesSpec(l: StoreLimits): NamespaceSpec {
  return { name: NS.series, recency: 0, maxFields: l.series_max_points, maxGroups: l.series_max, ttlMs: l.series_ttl, recencyUnitMs: 1000, announceEvery: 0 };
}

export function resourcesSpec(l: StoreLimits): NamespaceSpec & { readonly name: typeof NS.resources } {
  // Last seen (and with it the counts and sums) re-announced hourly, like the egress baseline.
  return { name: NS.resources, recency: 1, maxFields: l.resource_max_per_group, maxGroups: l.resource_max_groups, ttlMs: l.resource_ttl, recencyUnitMs: 1, announceEvery: HOUR };
}

/** `dest|port` → [dest, port]; null for another shape. */
export function splitDestField(field: string): [string, number] | null {
  const bar = field.lastIndexOf('|');
  if (bar <= 0) return null;
  const port = Number(field.slice(bar + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65535 ? [field.slice(0, bar), port] : null;
}

export function egressReplica(b: EgressBaseline, spec: NamespaceSpec): Replica {
  return {
    spec,
    opsOf: (field) => (field === EGRESS_IMAGE_FIELD ? EGRESS_IMAGE_OPS : field.includes('|') ? EGRESS_DEST_OPS : null),
    applyRemote(entries: readonly Entry[]) {
      // The image record first, so its first-seen time is in place before its destinations.
      for (const e of entries) {
        if (e.field !== EGRESS_IMAGE_FIELD) continue;
        const [first, last] = e.tuple;
        if (typeof first === 'number' && typeof last === 'number') b.mergeRemote(e.group, null, 0, first, last);
      }
      for (const e of entries) {
        if (e.field === EGRESS_IMAGE_FIELD) continue;
        const dp = splitDestField(e.field);
        const [first, last] = e.tuple;
        if (dp && typeof first === 'number' && typeof last === 'number') b.mergeRemote(e.group, dp[0], dp[1], first, last);
      }
    },
    snapshot: (reason: SnapshotReason) => b.entries(reason),
  };
}

export function imageReplica(s: ImageStore, spec: NamespaceSpec): Replica {
  return {
    spec,
    opsOf: (field) => (field.startsWith('i|') ? IMAGE_RECORD_OPS : field.startsWith('t|') ? IMAGE_TAG_OPS : null),
    applyRemote: (entries) => s.mergeRemote(entries),
    snapshot: () => s.entries(),
  };
}

export function resourceReplica(b: ResourceBaselines, spec: ResourceBaselineReplica['spec']): ResourceBaselineReplica {
  return {
    spec,
    opsOf: (field) => (field.length > 0 ? RESOURCE_OPS : null),
    applyRemote: (entries) => b.mergeRemote(entries),
    snapshot: () => b.snapshot(),
  };
}
