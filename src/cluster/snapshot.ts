/**
 * One-time seeding of a shared store from a node's state database (`falco-companion baseline
 * export | import`): the learned state as JSON lines, one entry per line
 * (`{"ns":"eg","group":"nginx","field":"93.184.216.34|443","tuple":[first_ms,last_ms,count]}`),
 * and the import of such lines (or of a state database directly) into Redis, merged like any
 * write (min / max / counts add: importing the same file twice counts its observations twice).
 */
import type { Config } from '../config/schema.js';
import { EgressBaseline } from '../enrich/baseline.js';
import { ImageStore } from '../enrich/image-store.js';
import type { Logger } from '../logger.js';
import { Metrics } from '../metrics.js';
import type { Db } from '../store/db.js';
import { ResourceBaselines } from '../resource/baseline.js';
import { egressReplica, imageReplica, resourceReplica } from './replicas.js';
import { encodeTuple, type Cell, type Tuple } from './tuple.js';
import { NS, type Entry, type NamespaceName, type NamespaceSpec, type Replica, type SharedStore } from './types.js';
import { namespaceSpecs } from './wiring.js';
import { systemClock } from '../clock.js';

export interface SnapshotLine {
  readonly ns: NamespaceName;
  readonly group: string;
  readonly field: string;
  readonly tuple: Tuple;
}

/** The replicas of a state database, built as the daemon builds them (same bounds). */
export function localReplicas(db: Db, config: Config, logger: Logger): Replica[] {
  const metrics = new Metrics({ collectDefault: false });
  const specs = namespaceSpecs(config.store);
  const b = config.enrich.egress.baseline;
  const baseline = new EgressBaseline({
    db,
    learningPeriodMs: b.learning_period,
    maxPerImage: b.max_per_image,
    maxTotal: b.max_total,
    maxImages: b.max_images,
    flushIntervalMs: b.flush_interval,
    logger,
    metrics,
  });
  const c = config.enrich.container;
  const images = new ImageStore({ db, maxImages: c.max_images, maxTags: c.max_tags, metrics, clock: systemClock });
  const r = config.metrics.baseline;
  const resources = new ResourceBaselines({
    settings: { windowMs: r.window, slots: r.slots, learningPeriodMs: r.learning_period, minSamples: r.min_samples, maxKeys: r.max_keys },
    db,
    logger,
    metrics,
  });
  resources.load();
  return [egressReplica(baseline, specs.egress), imageReplica(images, specs.images), resourceReplica(resources, specs.resources)];
}

export function* exportLines(replicas: readonly Replica[]): Generator<string> {
  for (const r of replicas) for (const e of r.snapshot('export')) yield JSON.stringify({ ns: r.spec.name, group: e.group, field: e.field, tuple: e.tuple } satisfies SnapshotLine);
}

const NAMES: ReadonlySet<string> = new Set(Object.values(NS));
const isCell = (v: unknown): v is Cell => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

/** Parse one line; a reason string when it is not an entry. */
export function parseLine(line: string): SnapshotLine | string {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null) return 'not an object';
  const o = v as Record<string, unknown>;
  if (typeof o['ns'] !== 'string' || !NAMES.has(o['ns'])) return `unknown namespace ${JSON.stringify(o['ns'])}`;
  if (typeof o['group'] !== 'string' || o['group'] === '' || typeof o['field'] !== 'string' || o['field'] === '') return 'group and field must be non-empty strings';
  if (!Array.isArray(o['tuple']) || !o['tuple'].every(isCell)) return 'tuple must be an array of numbers, strings or nulls';
  return { ns: o['ns'] as NamespaceName, group: o['group'], field: o['field'], tuple: o['tuple'] as Cell[] };
}

export interface ImportResult {
  readonly entries: number;
  readonly announced: number;
  readonly skipped: number;
}

/** Write entries to the shared store in batches of `batchSize` fields per namespace. */
export async function importEntries(
  store: SharedStore,
  replicas: readonly Replica[],
  config: Config,
  lines: Iterable<SnapshotLine | string>,
  batchSize: number,
): Promise<ImportResult> {
  const specs = namespaceSpecs(config.store);
  const specOf: Record<string, NamespaceSpec> = { [NS.egress]: specs.egress, [NS.images]: specs.images, [NS.series]: specs.series, [NS.resources]: specs.resources };
  const byNs = new Map(replicas.map((r) => [r.spec.name as string, r]));
  const batches = new Map<string, Map<string, Map<string, string>>>();
  const sizes = new Map<string, number>();
  let entries = 0;
  let announced = 0;
  let skipped = 0;
  const send = async (ns: string): Promise<void> => {
    const b = batches.get(ns);
    const spec = specOf[ns];
    if (!b || b.size === 0 || !spec) return;
    announced += await store.push(spec, b, Date.now());
    batches.set(ns, new Map());
    sizes.set(ns, 0);
  };
  for (const l of lines) {
    if (typeof l === 'string') {
      skipped++;
      continue;
    }
    const ops = byNs.get(l.ns)?.opsOf(l.field) ?? null;
    if (!ops || l.tuple.length !== ops.length) {
      skipped++;
      continue;
    }
    let b = batches.get(l.ns);
    if (!b) batches.set(l.ns, (b = new Map()));
    let g = b.get(l.group);
    if (!g) b.set(l.group, (g = new Map()));
    g.set(l.field, encodeTuple(ops, l.tuple));
    entries++;
    const n = (sizes.get(l.ns) ?? 0) + 1;
    sizes.set(l.ns, n);
    if (n >= batchSize) await send(l.ns);
  }
  for (const ns of batches.keys()) await send(ns);
  return { entries, announced, skipped };
}

/** Entries of replicas as snapshot lines (import straight from a state database). */
export function* replicaLines(replicas: readonly Replica[]): Generator<SnapshotLine> {
  for (const r of replicas) for (const e of r.snapshot('export') as Iterable<Entry>) yield { ns: r.spec.name, group: e.group, field: e.field, tuple: e.tuple };
}
