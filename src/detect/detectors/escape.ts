/**
 * Escape chain (T1611): two or more DISTINCT escape indicators in one container within `window`.
 * Indicators: `escape` signals (subtype from ESCAPE_SUBTYPES) and `container_start` signals whose
 * subtype or keys say privileged / host namespaces / sensitive mounts (keys `privileged`,
 * `host_pid`, `host_network`, `host_ipc`, `sensitive_mount`, or the `container.privileged`,
 * `container.host_*` output fields). Priority rises with the number of distinct indicators.
 * One finding per container per `renotify`, re-emitted early when a new indicator joins.
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the latest
 * signal per indicator per container (LRU, evictions counted).
 */
import type { FieldValue } from '../../alert.js';
import { PRIORITIES } from '../../alert.js';
import { bool, defaults, duration, int, obj, oneOf, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, ESCAPE_SUBTYPES, type EscapeSubtype, type Finding, type Signal } from '../types.js';
import { BoundedMap, byTime, compact, imageOf, laterNs, msToNs, retain, whereOf } from './kit.js';

export const ESCAPE_DETECTOR_ID = 'escape_chain';
export const ESCAPE_RULE = 'Container escape: multiple escape indicators in one container';
export const ESCAPE_MITRE = ['T1611', 'mitre_privilege_escalation'] as const;

export const escapeSettingsSpec = obj('Escape chain: distinct escape indicators in one container within a window.', {
  enabled: bool('Run this detector.', true),
  window: duration('Indicators must fall within this span (event time).', 60_000, { min: 1000 }),
  min_indicators: int('Distinct indicators needed.', 2, { min: 2, max: 12 }),
  priority: oneOf('Priority with `min_indicators` distinct indicators.', PRIORITIES, 'Error', { caseInsensitive: true }),
  priority_high: oneOf('Priority with one more distinct indicator than `min_indicators`.', PRIORITIES, 'Critical', { caseInsensitive: true }),
  renotify: duration('At most one finding per container per this period unless a new indicator joins.', 600_000, { min: 0 }),
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 5_000, { min: 1 }),
});

export type EscapeSettings = Infer<typeof escapeSettingsSpec>;
export const ESCAPE_DEFAULTS = defaults(escapeSettingsSpec) as unknown as EscapeSettings;

interface Box {
  /** Latest signal per indicator. */
  readonly ind: Map<EscapeSubtype, Signal>;
  lastNs: bigint;
  lastFindingNs: bigint | null;
  reportedCount: number;
}

export interface EscapeState {
  readonly boxes: BoundedMap<string, Box>;
}

const SUBTYPES = new Set<string>(ESCAPE_SUBTYPES);

function truthy(v: FieldValue | undefined): boolean {
  return v === true || v === 'true' || v === 1 || v === '1';
}

/** The escape indicators a signal carries. */
export function indicatorsOf(s: Signal): EscapeSubtype[] {
  // Common case: one escape signal, one indicator (no set needed).
  if (s.kind !== 'container_start') {
    if (!s.subtype) return [];
    if (s.subtype === 'notify_on_release') return ['release_agent'];
    return SUBTYPES.has(s.subtype) ? [s.subtype as EscapeSubtype] : [];
  }
  const out = new Set<EscapeSubtype>();
  if (s.subtype && SUBTYPES.has(s.subtype)) out.add(s.subtype as EscapeSubtype);
  if (s.kind === 'container_start') {
    const f = s.alert.outputFields ?? {};
    if (truthy(s.keys['privileged']) || truthy(f['container.privileged'])) out.add('privileged');
    if (['host_pid', 'host_network', 'host_ipc'].some((k) => truthy(s.keys[k]) || truthy(f[`container.${k}`]))) out.add('host_namespace');
    if (truthy(s.keys['sensitive_mount'])) out.add('sensitive_mount');
  }
  if (s.subtype === 'notify_on_release') out.add('release_agent'); // one cgroup trick, one indicator
  out.delete('notify_on_release');
  return [...out];
}

export function createEscapeDetector(overrides: Partial<EscapeSettings> = {}): Detector<EscapeState> {
  const cfg = { ...ESCAPE_DEFAULTS, ...overrides } as EscapeSettings;
  const windowNs = msToNs(cfg.window);
  return {
    id: ESCAPE_DETECTOR_ID,
    consumes: ['escape', 'container_start'],
    init: () => ({ boxes: new BoundedMap<string, Box>(cfg.max_containers) }),
    evictions: (st) => st.boxes.evicted,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      if (sig.containerId === null) return none;
      const inds = indicatorsOf(sig);
      if (inds.length === 0) return none;
      const now = laterNs(nowNs, sig.timeNs);
      if (sig.timeNs < now - windowNs) return none;
      let box = st.boxes.touch(sig.containerId);
      if (!box) {
        box = { ind: new Map(), lastNs: sig.timeNs, lastFindingNs: null, reportedCount: 0 };
        st.boxes.set(sig.containerId, box);
      }
      for (const [k, v] of box.ind) if (v.timeNs < sig.timeNs - windowNs || v.timeNs > sig.timeNs + windowNs) box.ind.delete(k);
      let kept: Signal | null = null; // evidence only: one slim copy shared by its indicators
      for (const i of inds) {
        const prev = box.ind.get(i);
        if (!prev || prev.timeNs <= sig.timeNs) box.ind.set(i, (kept ??= retain(sig)));
      }
      if (sig.timeNs > box.lastNs) box.lastNs = sig.timeNs;
      const n = box.ind.size;
      if (n < cfg.min_indicators) return none;
      const fresh = box.lastFindingNs === null || sig.timeNs - box.lastFindingNs >= msToNs(cfg.renotify) || n > box.reportedCount;
      if (!fresh) return none;
      box.lastFindingNs = sig.timeNs;
      box.reportedCount = n;
      const evidence = [...new Set(box.ind.values())].sort(byTime);
      const names = [...box.ind.keys()].sort();
      const priority = n > cfg.min_indicators ? cfg.priority_high : cfg.priority;
      return {
        state: st,
        findings: [
          {
            detector: ESCAPE_DETECTOR_ID,
            rule: ESCAPE_RULE,
            priority,
            score: Math.min(1, n / 4),
            message: `${n} distinct escape indicators in ${whereOf(sig)}${imageOf(sig) ? ` (image ${imageOf(sig)})` : ''} within ${cfg.window / 1000}s: ${names.join(', ')}`,
            mitre: ESCAPE_MITRE,
            key: `${ESCAPE_DETECTOR_ID}|${sig.containerId}`,
            evidence,
            fields: compact({ 'escape.indicators': names.join(','), 'escape.count': n, 'escape.window_s': cfg.window / 1000 }),
            timeNs: sig.timeNs,
          },
        ],
      };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const escapeModule = detectorModule({ id: ESCAPE_DETECTOR_ID, settings: escapeSettingsSpec, quietInCi: false, create: createEscapeDetector });
