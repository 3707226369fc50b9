/**
 * Prometheus metrics, one registry per running app (no globals). Prefix `falco_companion_`.
 * Labels are bounded: component ids, reason/code enums, never pod/IP/image values.
 */
import client from 'prom-client';

export const PREFIX = 'falco_companion_';

export class Metrics {
  readonly registry: client.Registry;
  private readonly counters = new Map<string, client.Counter<string>>();
  private readonly gauges = new Map<string, client.Gauge<string>>();
  private readonly histograms = new Map<string, client.Histogram<string>>();

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
      c = new client.Counter({ name: full, help, labelNames: [...labelNames], registers: [this.registry] });
      this.counters.set(full, c);
    }
    return c as client.Counter<L>;
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = [], collect?: (this: client.Gauge<L>) => void): client.Gauge<L> {
    const full = PREFIX + name;
    let g = this.gauges.get(full);
    if (!g) {
      g = new client.Gauge({ name: full, help, labelNames: [...labelNames], registers: [this.registry], ...(collect ? { collect } : {}) });
      this.gauges.set(full, g);
    }
    return g as client.Gauge<L>;
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
