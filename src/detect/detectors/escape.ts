/**
 * Escape chain (T1611): two or more DISTINCT escape indicators in one container within `window`.
 * Indicators: `escape` signals (subtype from ESCAPE_SUBTYPES) and `container_start` signals whose
 * subtype or keys say privileged / host namespaces / sensitive mounts (keys `privileged`,
 * `host_pid`, `host_network`, `host_ipc`, `sensitive_mount` (the mapping parses
 * `container.mounts`), or the `container.privileged`, `container.host_*` output fields).
 *
 * A `mount` counts only when it can reach the host ({@link escapeMount}): dind, buildah and node
 * agents mount tmpfs, overlay, bpffs and cgroup2 for themselves all day.
 *
 * Failed attempts count. An unprivileged attacker's attempts fail (core_pattern on a read-only
 * /proc/sys, mount and unshare refused), and trying several escape vectors in a row is what an
 * attacker does and legitimate software does not: distinct vectors count whether or not they
 * succeeded (key `result`, Falco's evt.res: `SUCCESS` or an errno name). When every indicator
 * failed the priority is one step lower (nothing escaped yet); one success restores it. A lone
 * vector retried (a sandbox probing unshare) never reaches two distinct indicators.
 *
 * Priority: `priority` with `min_indicators` distinct indicators, `priority_high` with more. A
 * finding whenever a new indicator joins the chain or its priority rises; the engine's notify
 * policy decides what reaches the sinks. The container runtime's own start-up never reaches this
 * detector (the mapping drops it).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the latest
 * signal per indicator per container (LRU, evictions counted).
 */
import type { FieldValue, Priority } from '../../alert.js';
import { PRIORITIES } from '../../alert.js';
import { bool, defaults, duration, int, obj, oneOf, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, ESCAPE_SUBTYPES, type EscapeSubtype, type Finding, type Signal } from '../types.js';
import { BoundedMap, byTime, compact, imageOf, keyString, laterNs, lower, msToNs, retain, whereOf, RENOTIFY_DEPRECATED } from './kit.js';

export const ESCAPE_DETECTOR_ID = 'escape_chain';
export const ESCAPE_RULE = 'Container escape: multiple escape indicators in one container';
export const ESCAPE_MITRE = ['T1611', 'mitre_privilege_escalation'] as const;

export const escapeSettingsSpec = obj('Escape chain: distinct escape indicators (attempts that failed included) in one container within a window.', {
  enabled: bool('Run this detector.', true),
  window: duration('Indicators must fall within this span (event time).', 60_000, { min: 1000 }),
  min_indicators: int('Distinct indicators needed.', 2, { min: 2, max: 12 }),
  priority: oneOf('Priority with `min_indicators` distinct indicators (one step lower when every attempt failed).', PRIORITIES, 'Error', { caseInsensitive: true }),
  priority_high: oneOf('Priority with one more distinct indicator than `min_indicators` (one step lower when every attempt failed).', PRIORITIES, 'Critical', { caseInsensitive: true }),
  renotify: RENOTIFY_DEPRECATED,
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 5_000, { min: 1 }),
});

export type EscapeSettings = Infer<typeof escapeSettingsSpec>;
export const ESCAPE_DEFAULTS = defaults(escapeSettingsSpec) as unknown as EscapeSettings;

interface Seen {
  /** The latest signal of the indicator. */
  sig: Signal;
  /** At least one attempt of this indicator succeeded (in the window). */
  ok: boolean;
}

interface Box {
  readonly ind: Map<EscapeSubtype, Seen>;
  lastNs: bigint;
  /** Indicators already reported for the current chain, and its highest priority rank reported. */
  reported: Set<EscapeSubtype>;
  reportedRank: number;
}

export interface EscapeState {
  readonly boxes: BoundedMap<string, Box>;
}

const SUBTYPES = new Set<string>(ESCAPE_SUBTYPES);

function truthy(v: FieldValue | undefined): boolean {
  return v === true || v === 'true' || v === 1 || v === '1';
}

/** True when the signal says the syscall failed (`result`: an errno name or a negative number). */
export function failedAttempt(s: Signal): boolean {
  if (s.kind !== 'escape') return false;
  const r = keyString(s, 'result');
  if (r === null || r === 'SUCCESS' || r === 'EINPROGRESS') return false;
  return !/^\d+$/.test(r);
}

/**
 * File systems a container mounts for its own use (dind, buildah, Cilium's bpffs, FUSE clients):
 * none of them reaches the host. cgroup v1 (the release_agent trick), proc, sysfs, debugfs, block
 * devices and network file systems do.
 */
const OWN_MOUNT_TYPES = /^(tmpfs|ramfs|mqueue|devpts|securityfs|overlay|fuse(\..+)?|bpf|cgroup2|tracefs|binfmt_misc|configfs|squashfs|nsfs|autofs)$/;
/** MS_BIND (4096) by name or number. */
const isBind = (flags: string | null): boolean => flags !== null && (/MS_BIND/.test(flags) || (/^\d+$/.test(flags) && (Number(flags) & 4096) !== 0));

/**
 * True when a `mount` signal is an escape vector: a failed attempt (nothing legitimate tries and
 * fails), a file system that reaches the host, or a bind of /proc, /sys, /dev or /. A mount of the
 * container's own tmpfs / overlay / bpffs / cgroup2, a remount or a propagation change is not.
 * Signals without mount arguments (official rules) count.
 */
export function escapeMount(s: Signal): boolean {
  if (failedAttempt(s)) return true;
  const type = keyString(s, 'type');
  const dev = keyString(s, 'dev');
  const flags = keyString(s, 'flags');
  if (type === null && dev === null && flags === null) return true;
  if (type !== null && type !== 'none' && !isBind(flags)) return !OWN_MOUNT_TYPES.test(type);
  // bind, remount or propagation change: only host pseudo-files or the root are vectors
  return dev !== null && /^\/(proc|sys|dev)(\/|$)|^\/$/.test(dev);
}

/** The escape indicators a signal carries. */
export function indicatorsOf(s: Signal): EscapeSubtype[] {
  // Common case: one escape signal, one indicator (no set needed).
  if (s.kind !== 'container_start') {
    if (!s.subtype) return [];
    if (s.subtype === 'notify_on_release') return ['release_agent'];
    if (s.subtype === 'mount' && !escapeMount(s)) return [];
    return SUBTYPES.has(s.subtype) ? [s.subtype as EscapeSubtype] : [];
  }
  const out = new Set<EscapeSubtype>();
  if (s.subtype && SUBTYPES.has(s.subtype)) out.add(s.subtype as EscapeSubtype);
  const f = s.alert.outputFields ?? {};
  if (truthy(s.keys['privileged']) || truthy(f['container.privileged'])) out.add('privileged');
  if (['host_pid', 'host_network', 'host_ipc'].some((k) => truthy(s.keys[k]) || truthy(f[`container.${k}`]))) out.add('host_namespace');
  if (truthy(s.keys['sensitive_mount'])) out.add('sensitive_mount');
  out.delete('notify_on_release'); // one cgroup trick, one indicator
  if (s.subtype === 'notify_on_release') out.add('release_agent');
  return [...out];
}

const RANK: Readonly<Record<string, number>> = Object.fromEntries(PRIORITIES.map((p, i) => [p, PRIORITIES.length - i]));

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
        box = { ind: new Map(), lastNs: sig.timeNs, reported: new Set(), reportedRank: 0 };
        st.boxes.set(sig.containerId, box);
      }
      for (const [k, v] of box.ind) if (v.sig.timeNs < sig.timeNs - windowNs || v.sig.timeNs > sig.timeNs + windowNs) box.ind.delete(k);
      if (box.ind.size < cfg.min_indicators) {
        // The chain reported before has fallen apart: a new one starts from scratch.
        box.reported.clear();
        box.reportedRank = 0;
      }
      const ok = !failedAttempt(sig);
      let kept: Signal | null = null; // evidence only: one slim copy shared by its indicators
      for (const i of inds) {
        const prev = box.ind.get(i);
        if (!prev) box.ind.set(i, { sig: (kept ??= retain(sig)), ok });
        else {
          if (prev.sig.timeNs <= sig.timeNs) prev.sig = kept ??= retain(sig);
          prev.ok ||= ok;
        }
      }
      if (sig.timeNs > box.lastNs) box.lastNs = sig.timeNs;
      const n = box.ind.size;
      if (n < cfg.min_indicators) return none;
      let allFailed = true;
      let unreported = false;
      for (const [k, x] of box.ind) {
        if (x.ok) allFailed = false;
        if (!box.reported.has(k)) unreported = true;
      }
      const base: Priority = n > cfg.min_indicators ? cfg.priority_high : cfg.priority;
      const priority = allFailed ? lower(base, 1) : base;
      const rank = RANK[priority] ?? 0;
      if (!unreported && rank <= box.reportedRank) return none;
      for (const k of box.ind.keys()) box.reported.add(k);
      box.reportedRank = Math.max(box.reportedRank, rank);
      const evidence = [...new Set([...box.ind.values()].map((x) => x.sig))].sort(byTime);
      const names = [...box.ind.keys()].sort();
      const failed = names.filter((k) => !(box.ind.get(k) as Seen).ok);
      return {
        state: st,
        findings: [
          {
            detector: ESCAPE_DETECTOR_ID,
            rule: ESCAPE_RULE,
            priority,
            score: Math.min(1, n / 4) * (allFailed ? 0.75 : 1),
            message:
              `${n} distinct escape indicators in ${whereOf(sig)}${imageOf(sig) ? ` (image ${imageOf(sig)})` : ''} within ${cfg.window / 1000}s: ${names.join(', ')}` +
              (failed.length === 0 ? '' : allFailed ? '; every attempt failed' : `; failed: ${failed.join(', ')}`),
            mitre: ESCAPE_MITRE,
            key: `${ESCAPE_DETECTOR_ID}|${sig.containerId}`,
            evidence,
            fields: compact({ 'escape.indicators': names.join(','), 'escape.count': n, 'escape.failed': failed.join(',') || null, 'escape.all_failed': allFailed, 'escape.window_s': cfg.window / 1000 }),
            timeNs: sig.timeNs,
          },
        ],
      };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const escapeModule = detectorModule({ id: ESCAPE_DETECTOR_ID, settings: escapeSettingsSpec, quietInCi: false, create: createEscapeDetector });
