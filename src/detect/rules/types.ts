/**
 * The companion rules file once loaded (validated, converted, frozen): what the mapping, the
 * suppression and the detectors are built from. The file format is src/detect/rules/schema.ts;
 * loading src/detect/rules/load.ts; reloading src/detect/rules/watch.ts.
 */
import type { ObjectSpec } from '../../config/dsl.js';
import type { Cidr } from '../../net/cidr.js';
import type { SignalKind } from '../types.js';

export type PredicateOp = 'equals' | 'in' | 'startswith' | 'contains' | 'cidr' | 'gt' | 'gte' | 'lt' | 'lte' | 'exists';
export const PREDICATE_OPS: readonly PredicateOp[] = ['equals', 'in', 'startswith', 'contains', 'cidr', 'gt', 'gte', 'lt', 'lte', 'exists'];

export type Scalar = string | number | boolean;

export type Predicate =
  | { readonly field: string; readonly op: 'equals'; readonly value: Scalar }
  | { readonly field: string; readonly op: 'in' | 'startswith' | 'contains'; readonly values: readonly string[] }
  | { readonly field: string; readonly op: 'cidr'; readonly cidrs: readonly Cidr[] }
  | { readonly field: string; readonly op: 'gt' | 'gte' | 'lt' | 'lte'; readonly number: number }
  | { readonly field: string; readonly op: 'exists'; readonly exists: boolean };

export interface SubtypeFrom {
  readonly field: string;
  /** Field value → subtype; values not listed use `default` (null: the raw value). */
  readonly map: Readonly<Record<string, string>>;
  readonly default: string | null;
}

export interface SignalRule {
  /** Label for logs and docs (defaults to the first rule name or `signals[i]`). */
  readonly name: string;
  /** Exact Falco rule names (null: any). */
  readonly rules: readonly string[] | null;
  readonly rulePrefix: string | null;
  /** The alert must carry at least one of these tags (null: any). */
  readonly tags: readonly string[] | null;
  /** All must hold. */
  readonly where: readonly Predicate[];
  readonly kind: SignalKind;
  readonly subtype: string | null;
  readonly subtypeFrom: SubtypeFrom | null;
  /** Signal key → output field (or `companion.<key>`). */
  readonly extract: Readonly<Record<string, string>>;
}

/** Which workloads: every non-empty selector must hold (globs; pod label key → value glob). */
export interface WorkloadSelector {
  readonly images: readonly string[];
  readonly namespaces: readonly string[];
  readonly podLabels: Readonly<Record<string, string>>;
}

export interface AllowEntry extends WorkloadSelector {
  readonly name: string;
  /** Detectors this applies to (null: all). */
  readonly detectors: readonly string[] | null;
  /** Signal kinds this applies to (null: all). */
  readonly kinds: readonly SignalKind[] | null;
  readonly exes: readonly string[];
  /** Globs on ancestor names / executables (proc.pname, proc.aname[n], proc.pexepath, proc.aexepath[n]). */
  readonly ancestors: readonly string[];
  readonly destCidrs: readonly Cidr[];
  readonly destDomains: readonly string[];
}

export interface CiWindow {
  /** Days of week the window starts on, 0 = Sunday ... 6 = Saturday. */
  readonly days: readonly number[];
  /** Minutes after 00:00 UTC; `toMin <= fromMin` wraps past midnight. */
  readonly fromMin: number;
  readonly toMin: number;
}

export type CiWorkload = WorkloadSelector;

export interface CiSettings {
  readonly windows: readonly CiWindow[];
  readonly workloads: readonly CiWorkload[];
  /** Detectors CI windows/workloads silence. */
  readonly detectors: readonly string[];
}

export interface SuppressSettings {
  readonly allow: readonly AllowEntry[];
  readonly ci: CiSettings;
  /** Detector id → learning period in ms (findings suppressed until it has passed in event time; 0: none). */
  readonly learning: Readonly<Record<string, number>>;
}

export interface OutputSettings {
  /** Forward alerts that only served as signals (companion signal rules). */
  readonly forwardSignalAlerts: boolean;
  /** An open incident is sent again at most once per this period unless it gets worse (ms). */
  readonly renotifyMs: number;
  /** An incident without a finding for this long is closed (ms, event time). */
  readonly incidentIdleMs: number;
  readonly maxIncidents: number;
}

export interface DetectorSettingsBase {
  readonly enabled: boolean;
}

export interface LoadedRules {
  /** Where it came from (the built-in defaults' path when loaded with no file). */
  readonly file: string;
  readonly signals: readonly SignalRule[];
  /** Detector id → validated settings (defaults filled in) for every known detector. */
  readonly detectors: Readonly<Record<string, DetectorSettingsBase & Readonly<Record<string, unknown>>>>;
  readonly suppress: SuppressSettings;
  readonly output: OutputSettings;
  /** Deprecations (`file:line:col: path: deprecated: why`) and other non-fatal remarks, logged when the rules come into force; never fatal. */
  readonly warnings: readonly string[];
}

/** A detector's settings schema; `enabled` is added to every one. */
export interface DetectorSettingsSpec {
  readonly id: string;
  readonly settings: ObjectSpec;
}
