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

/** A container fact as the container enricher's keys. */
function imageKeys(c: ContainerFact): Record<string, EnrichValue> {
  const out: Record<string, EnrichValue> = {};
  const put = (k: string, v: EnrichValue | null): void => {
    if (v !== null) out[k] = v;
  };
  put(IMAGE.registry, c.registry);
  put(IMAGE.repository, c.repository);
  put(IMAGE.tag, c.tag);
  put(IMAGE.digest, c.digest);
  put(IMAGE.created, c.created);
  put(IMAGE.pulledAt, c.pulled_at);
  put(IMAGE.firstSeen, c.first_seen);
  put(IMAGE.layers, c.layers);
  put(IMAGE.newestLayerCreated, c.newest_layer_created);
  put(IMAGE.newestLayerCmd, c.newest_layer_cmd);
  put(IMAGE.tagMutated, c.tag_mutated);
  put(IMAGE.previousDigest, c.previous_digest);
  return out;
}

function destinationKeys(d: DestinationFact): Record<string, EnrichValue> {
  const out: Record<string, EnrichValue> = {};
  if (d.rdns !== null) out[DEST.rdns] = d.rdns;
  if (d.asn !== null) out[DEST.asn] = d.asn;
  if (d.as_org !== null) out[DEST.asOrg] = d.as_org;
  if (d.intel !== null && d.intel.length > 0) out[DEST.intel] = d.intel.join(',');
  if (d.class !== null) out[DEST.class] = d.class;
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
    this.containers = facts.containers.map((c) => ({ id: c.id.toLowerCase(), keys: imageKeys(c) }));
    for (const d of facts.destinations) this.destinations.set(d.ip, destinationKeys(d));
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
