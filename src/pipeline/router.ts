/** Routing filters between detection and the sinks. Every drop is counted by reason. */
import { atLeast, type Alert, type Priority } from '../alert.js';
import type { Metrics } from '../metrics.js';

export interface RouteConfig {
  readonly min_priority: Priority;
  readonly include_rules: readonly string[];
  readonly exclude_rules: readonly string[];
  readonly include_tags: readonly string[];
  readonly exclude_tags: readonly string[];
  readonly forward_internal: boolean;
}

export type DropReason = 'priority' | 'rule_excluded' | 'rule_not_included' | 'tag_excluded' | 'tag_not_included' | 'internal';

export class Router {
  readonly id = 'route';
  private readonly includeRules: Set<string>;
  private readonly excludeRules: Set<string>;
  private readonly includeTags: Set<string>;
  private readonly excludeTags: Set<string>;

  constructor(
    private readonly cfg: RouteConfig,
    private readonly metrics: Metrics,
  ) {
    this.includeRules = new Set(cfg.include_rules);
    this.excludeRules = new Set(cfg.exclude_rules);
    this.includeTags = new Set(cfg.include_tags);
    this.excludeTags = new Set(cfg.exclude_tags);
  }

  /** Why the alert is dropped, or null to forward it. */
  verdict(a: Alert): DropReason | null {
    if (a.source === 'internal' && !this.cfg.forward_internal) return 'internal';
    if (!atLeast(a.priority, this.cfg.min_priority)) return 'priority';
    if (this.excludeRules.has(a.rule)) return 'rule_excluded';
    if (this.includeRules.size > 0 && !this.includeRules.has(a.rule)) return 'rule_not_included';
    const tags = a.tags ?? [];
    if (this.excludeTags.size > 0 && tags.some((t) => this.excludeTags.has(t))) return 'tag_excluded';
    if (this.includeTags.size > 0 && !tags.some((t) => this.includeTags.has(t))) return 'tag_not_included';
    return null;
  }

  /** True when the alert is forwarded; counts the drop otherwise. */
  pass(a: Alert): boolean {
    const r = this.verdict(a);
    if (r === null) return true;
    this.metrics.discarded.inc({ component: this.id, reason: r });
    return false;
  }
}
