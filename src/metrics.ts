/**
 * Prometheus metrics, one registry per running app (no globals). Prefix `falco_companion_`.
 * Labels are bounded: component ids, reason/code enums, never pod/IP/image values.
 */
import client from 'prom-client';

export const PREFIX = 'falco_companion_';

function sameLabels(a: Readonly<Record<string, string | number>>, b: Readonly<Record<string, string | number>>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/**
 * One labelled child of a counter, counted in a plain number on the hot path and added to the
 * counter when the registry is collected (a scrape, `get()`): an increment costs an addition, no
 * label hashing. Readers see the same totals as with `counter.inc` (collection flushes first).
 */
export class BatchedCount {
  /** Counted since the last collection. */
  pending = 0;
  constructor(readonly labels: Readonly<Record<string, string | number>>) {}
  inc(n = 1): void {
    this.pending += n;
  }
}

export class Metrics {
  readonly registry: client.Registry;
  private readonly counters = new Map<string, client.Counter<string>>();
  private readonly gauges = new Map<string, client.Gauge<string>>();
  private readonly histograms = new Map<string, client.Histogram<string>>();
  /** Batched children per counter (full name), flushed by the counter's collect hook. */
  private readonly batches = new Map<string, BatchedCount[]>();
  /** Gauge children read when collected, per gauge (full name). */
  private readonly sources = new Map<string, { labels: Readonly<Record<string, string | number>>; read: () => number }[]>();

  /** Per-component flow counters every stage uses. */
  readonly received: client.Counter<'component'>;
  readonly sent: client.Counter<'component'>;
  readonly errors: client.Counter<'component' | 'code'>;
  readonly discarded: client.Counter<'component' | 'reason'>;
  readonly queueDepth: client.Gauge<'component'>;

  constructor(opts: { collectDefault?: boolean } = {}) {
    this.registry = new client.Registry();
    if (opts.collectDefault !== false) client.collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.received = this.counter('received_total', 'Alerts (or signals) a component took in', ['component']);
    this.sent = this.counter('sent_total', 'Alerts a component handed on or delivered', ['component']);
    this.errors = this.counter('errors_total', 'Errors by component and stable error code', ['component', 'code']);
    this.discarded = this.counter('discarded_total', 'Alerts a component discarded, by reason', ['component', 'reason']);
    this.queueDepth = this.gauge('queue_depth', 'Items waiting in a component queue', ['component']);
  }

  /** Get or create a counter; `name` without prefix, must end in `_total`. */
  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): client.Counter<L> {
    const full = PREFIX + name;
    let c = this.counters.get(full);
    if (!c) {
      const batches = this.batches;
      c = new client.Counter({
        name: full,
        help,
        labelNames: [...labelNames],
        registers: [this.registry],
        // Add what the batched children counted since the last collection.
        collect(this: client.Counter<string>) {
          const list = batches.get(full);
          if (list) for (const b of list) if (b.pending > 0) {
            this.inc(b.labels, b.pending);
            b.pending = 0;
          }
        },
      });
      this.counters.set(full, c);
    }
    return c as client.Counter<L>;
  }

  /**
   * A child of `counter` (made by this registry) counted locally and added at collection: for
   * counters incremented per alert. One child per label set: asking again returns the same one.
   */
  batched<L extends string>(counter: client.Counter<L>, labels: Readonly<Partial<Record<L, string | number>>>): BatchedCount {
    const full = (counter as unknown as { name: string }).name;
    if (this.counters.get(full) !== (counter as unknown as client.Counter<string>)) throw new Error(`metrics: ${full} is not a counter of this registry`);
    let list = this.batches.get(full);
    if (!list) this.batches.set(full, (list = []));
    const same = list.find((b) => sameLabels(b.labels, labels as Record<string, string | number>));
    if (same) return same;
    const b = new BatchedCount({ ...(labels as Record<string, string | number>) });
    list.push(b);
    return b;
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [], collect?: (this: client.Gauge<L>) => void): client.Gauge<L> {
    const full = PREFIX + name;
    let g = this.gauges.get(full);
    if (!g) {
      const sources = this.sources;
      g = new client.Gauge({
        name: full,
        help,
        labelNames: [...labelNames],
        registers: [this.registry],
        collect(this: client.Gauge<L>) {
          collect?.call(this);
          const list = sources.get(full);
          if (list) for (const s of list) this.set(s.labels as Partial<Record<L, string | number>>, s.read());
        },
      });
      this.gauges.set(full, g);
    }
    return g as client.Gauge<L>;
  }

  /**
   * A child of `gauge` (made by this registry) whose value is read when the registry is collected:
   * for values that change per alert (queue depths), so nothing is set on the hot path.
   */
  gaugeFrom<L extends string>(gauge: client.Gauge<L>, labels: Readonly<Partial<Record<L, string | number>>>, read: () => number): void {
    const full = (gauge as unknown as { name: string }).name;
    if (this.gauges.get(full) !== (gauge as unknown as client.Gauge<string>)) throw new Error(`metrics: ${full} is not a gauge of this registry`);
    let list = this.sources.get(full);
    if (!list) this.sources.set(full, (list = []));
    const l = labels as Record<string, string | number>;
    // The latest source of a label set replaces an earlier one (a component made again).
    const i = list.findIndex((s) => sameLabels(s.labels, l));
    const entry = { labels: { ...l }, read };
    if (i >= 0) list[i] = entry;
    else list.push(entry);
  }

  /** Histogram in seconds; `name` must end in `_seconds`. */
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): client.Histogram<L> {
    const full = PREFIX + name;
    let h = this.histograms.get(full);
    if (!h) {
      h = new client.Histogram({
        name: full,
        help,
        labelNames: [...labelNames],
        registers: [this.registry],
        buckets: buckets ?? [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      });
      this.histograms.set(full, h);
    }
    return h as client.Histogram<L>;
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
