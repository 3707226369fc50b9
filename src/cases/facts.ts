/**
 * Enrichment for a test case without a container runtime, DNS or prior state: the case's facts
 * (src/cases/spec.ts) become the companion keys the enrichers would add.
 *
 * - Destinations: the real egress enricher (src/enrich/egress.ts) classifies the remote side of
 *   every network alert and, when the case gives a `baseline`, runs the real first-seen baseline
 *   on an in-memory state database seeded with the known destinations (`dest.new_for_image`,
 *   `dest.learning`). Reverse DNS, ASN and intel come from the facts (no DNS server or MMDB here).
 * - Containers: `image.*` keys by container id.
 * Only cases with facts get this; the rest keep exactly the keys their enrichment file gives.
 */
import type { Alert, EnrichValue } from '../alert.js';
import { fieldString, withEnrichment } from '../alert.js';
import type { Clock } from '../clock.js';
import { configSchema, type Config } from '../config/schema.js';
import { loadConfig } from '../config/validate.js';
import { EgressEnricher } from '../enrich/egress.js';
import { DEST, IMAGE } from '../enrich/keys.js';
import { silentLogger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { openStateDb, type Db } from '../store/db.js';
import type { ContainerFact, DestinationFact, Facts } from './spec.js';

/** Container fact → the container enricher's key. */
const IMAGE_FACTS: readonly (readonly [Exclude<keyof ContainerFact, 'id'>, string])[] = [
  ['registry', IMAGE.registry],
  ['repository', IMAGE.repository],
  ['tag', IMAGE.tag],
  ['digest', IMAGE.digest],
  ['created', IMAGE.created],
  ['pulled_at', IMAGE.pulledAt],
  ['first_seen', IMAGE.firstSeen],
  ['layers', IMAGE.layers],
  ['newest_layer_created', IMAGE.newestLayerCreated],
  ['newest_layer_cmd', IMAGE.newestLayerCmd],
  ['tag_mutated', IMAGE.tagMutated],
  ['previous_digest', IMAGE.previousDigest],
];

/** Destination fact → the egress enricher's key (intel lists joined as the enricher does). */
const DEST_FACTS: readonly (readonly [Exclude<keyof DestinationFact, 'ip'>, string])[] = [
  ['rdns', DEST.rdns],
  ['asn', DEST.asn],
  ['as_org', DEST.asOrg],
  ['intel', DEST.intel],
  ['class', DEST.class],
];

/** The given facts as companion keys. */
function keysOf<F extends object>(fact: F, table: readonly (readonly [keyof F, string])[]): Record<string, EnrichValue> {
  const out: Record<string, EnrichValue> = {};
  for (const [field, key] of table) {
    const v = fact[field] as EnrichValue | readonly string[] | undefined;
    if (v === null || v === undefined || (Array.isArray(v) && v.length === 0)) continue;
    out[key] = Array.isArray(v) ? v.join(',') : (v as EnrichValue);
  }
  return out;
}

export class FactsEnricher {
  private readonly containers: { id: string; keys: Record<string, EnrichValue> }[];
  private readonly destinations = new Map<string, Record<string, EnrichValue>>();
  private readonly egress: EgressEnricher | null;
  private readonly db: Db | null;
  private seeded = false;

  constructor(
    private readonly facts: Facts,
    deps: { readonly metrics: Metrics; readonly clock: Clock },
  ) {
    this.containers = facts.containers.map((c) => ({ id: c.id.toLowerCase(), keys: keysOf(c, IMAGE_FACTS) }));
    for (const d of facts.destinations) this.destinations.set(d.ip, keysOf(d, DEST_FACTS));
    const useEgress = facts.destinations.length > 0 || facts.baseline !== null;
    if (!useEgress) {
      this.egress = null;
      this.db = null;
      return;
    }
    const defaults = loadConfig<Config>(configSchema, { file: null, env: {} });
    const eg = defaults.enrich.egress;
    const b = facts.baseline;
    const config: Config['enrich']['egress'] = {
      ...eg,
      rdns: { ...eg.rdns, enabled: false },
      asn_mmdb: null,
      intel: { ...eg.intel, lists: [] },
      baseline: { ...eg.baseline, enabled: b !== null, learning_period: b?.learning_period ?? eg.baseline.learning_period },
    };
    this.db = b !== null ? openStateDb(':memory:') : null;
    this.egress = new EgressEnricher({ config, db: this.db, logger: silentLogger(), metrics: deps.metrics, clock: deps.clock });
  }

  /** True when the case has facts to add. */
  get active(): boolean {
    return this.egress !== null || this.containers.length > 0;
  }

  /** Seed the baseline just before the first alert: the known destinations, learnt out of (or still in) the learning period. */
  private seed(firstNs: bigint): void {
    this.seeded = true;
    const b = this.facts.baseline;
    const base = this.egress?.baseline;
    if (!b || !base) return;
    const learningNs = BigInt(Math.round(b.learning_period)) * 1_000_000n;
    const at = b.learning ? firstNs - 1n : firstNs - learningNs - 1n;
    for (const k of b.known) base.isNew(k.image, k.dest, k.port, at);
  }

  enrich(a: Alert): Alert {
    if (!this.seeded) this.seed(a.timeNs);
    const add: Record<string, EnrichValue> = {};
    const cid = fieldString(a, 'container.id')?.toLowerCase() ?? null;
    if (cid !== null && cid !== 'host') {
      const c = this.containers.find((x) => x.id === cid || (cid.length >= 12 && (x.id.startsWith(cid) || cid.startsWith(x.id))));
      if (c) Object.assign(add, c.keys);
    }
    if (this.egress) {
      const keys = this.egress.enrichSync(a) ?? {};
      Object.assign(add, keys);
      const ip = keys[DEST.ip];
      const fact = typeof ip === 'string' ? this.destinations.get(ip) : undefined;
      if (fact) Object.assign(add, fact);
    }
    return withEnrichment(a, add);
  }

  close(): void {
    this.db?.close();
  }
}
