/**
 * Unexpected image (T1204.003, T1610, T1525), from image provenance enrichment:
 * - the image's registry is not in `allowed_registries` (empty list: check off);
 * - the tag now points to a new digest (`image.tag_mutated === true`);
 * - the image was pulled, created or got a new layer at most `fresh_age` before the container
 *   started (first signal seen from it), and within `window` of that start the container runs a
 *   shell (`shell_spawn`, `shell_socket`), a network tool (`network_tool`) or makes new egress
 *   (`connect` with `dest.new_for_image === true`; while the image's baseline is learning, only to a
 *   public or intel-listed destination).
 * Missing enrichment keys switch the matching check off for that signal (never a finding).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the start
 * of each container and the keys already reported (LRU, evictions counted).
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, obj, oneOf, str, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { BoundedMap, cBool, cString, cTimeNs, compact, exeOf, imageOf, msToNs, onceIn, retain, whereOf, RENOTIFY_DEPRECATED } from './kit.js';
import { DEST, IMAGE } from '../../enrich/keys.js';

export const UNEXPECTED_IMAGE_DETECTOR_ID = 'unexpected_image';
export const UNEXPECTED_IMAGE_RULES = {
  registry: 'Unexpected image: registry not allowed',
  tag: 'Unexpected image: tag now points to a new digest',
  fresh: 'Unexpected image: freshly pulled image ran a shell, network tool or new egress',
} as const;
export const UNEXPECTED_IMAGE_MITRE = ['T1204.003', 'T1610', 'T1525', 'mitre_execution', 'mitre_persistence'] as const;

export const unexpectedImageSettingsSpec = obj('Unexpected image: untrusted registry, mutated tag, or a fresh image that acts at once.', {
  enabled: bool('Run this detector.', true),
  allowed_registries: list('Registries images may come from (e.g. `registry.example.com`, `docker.io`). Empty: check off.', str('Registry host.', '')),
  fresh_age: duration('An image pulled, created or re-layered at most this long before the container started is fresh.', 600_000, { min: 0 }),
  window: duration('A fresh image must run a shell, network tool or new egress within this long after the container started.', 900_000, { min: 1000 }),
  priority: oneOf('Priority of registry and tag findings.', PRIORITIES, 'Warning', { caseInsensitive: true }),
  fresh_priority: oneOf('Priority of the fresh-image-then-activity finding.', PRIORITIES, 'Error', { caseInsensitive: true }),
  renotify: RENOTIFY_DEPRECATED,
  max_containers: int('Containers tracked at once (LRU, evictions counted).', 10_000, { min: 1 }),
});

export type UnexpectedImageSettings = Infer<typeof unexpectedImageSettingsSpec>;
export const UNEXPECTED_IMAGE_DEFAULTS = defaults(unexpectedImageSettingsSpec) as unknown as UnexpectedImageSettings;

interface Box {
  readonly startNs: bigint;
  readonly start: Signal;
  freshReported: boolean;
}

export interface UnexpectedImageState {
  readonly containers: BoundedMap<string, Box>;
  readonly reported: BoundedMap<string, bigint>;
}

const ACTIVITY = new Set(['shell_spawn', 'shell_socket', 'network_tool']);

/**
 * A connect that counts as a fresh image's activity: a destination new for the image. While the
 * image's egress baseline is still learning (a repository never seen before: every destination is
 * new), only public or intel-listed destinations count: the first deployment of any new
 * application connects to its database and services inside the cluster within minutes, and that is
 * what a learning period is for; a new image that phones out (a miner's pool, a C2) still counts.
 */
function newEgress(sig: Signal): boolean {
  if (cBool(sig, DEST.newForImage) !== true) return false;
  if (cBool(sig, DEST.learning) !== true) return true;
  return cString(sig, DEST.class) === 'public' || cString(sig, DEST.intel) !== null;
}

/** Registry of an image: enrichment `image.registry`, else from the repository (Docker's rules). */
export function registryOf(s: Signal): string | null {
  const r = cString(s, IMAGE.registry);
  if (r) return r;
  const repo = s.imageRepository ?? cString(s, IMAGE.repository);
  if (!repo) return null;
  const first = repo.split('/')[0] ?? '';
  if (repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return first;
  return 'docker.io';
}

function freshRef(s: Signal): { ns: bigint; what: string } | null {
  let best: { ns: bigint; what: string } | null = null;
  for (const [key, what] of [
    [IMAGE.pulledAt, 'pulled'],
    [IMAGE.created, 'created'],
    [IMAGE.newestLayerCreated, 'new layer'],
  ] as const) {
    const ns = cTimeNs(s, key);
    if (ns !== null && (best === null || ns > best.ns)) best = { ns, what };
  }
  return best;
}

const FOREVER = 1n << 62n;
const mins = (ns: bigint): string => `${Math.round(Number(ns / 1_000_000_000n) / 60)} min`;

export function createUnexpectedImageDetector(overrides: Partial<UnexpectedImageSettings> = {}): Detector<UnexpectedImageState> {
  const cfg = { ...UNEXPECTED_IMAGE_DEFAULTS, ...overrides } as UnexpectedImageSettings;
  const allowed = new Set(cfg.allowed_registries.map((r) => r.toLowerCase()));
  const windowNs = msToNs(cfg.window);
  const freshNs = msToNs(cfg.fresh_age);
  const skewNs = 60_000_000_000n; // tolerate a minute of clock skew between registry/runtime and Falco

  // Once per container for the registry, once per digest for the tag (the engine's notify policy
  // decides what reaches the sinks).
  const once = (st: UnexpectedImageState, key: string, t: bigint): boolean => onceIn(st.reported, key, t, FOREVER);

  function mk(rule: string, priority: Priority, score: number, message: string, key: string, evidence: Signal[], sig: Signal, extra: Record<string, string | number | boolean | null>): Finding {
    return {
      detector: UNEXPECTED_IMAGE_DETECTOR_ID,
      rule,
      priority,
      score,
      message,
      mitre: UNEXPECTED_IMAGE_MITRE,
      key,
      evidence,
      fields: compact({
        'image.ref': imageOf(sig),
        'image.registry': registryOf(sig),
        'image.digest': sig.imageDigest ?? cString(sig, IMAGE.digest),
        'image.previous_digest': cString(sig, IMAGE.previousDigest),
        'image.newest_layer_cmd': cString(sig, IMAGE.newestLayerCmd),
        ...extra,
      }),
      timeNs: sig.timeNs,
    };
  }

  return {
    id: UNEXPECTED_IMAGE_DETECTOR_ID,
    consumes: ['container_start', 'shell_spawn', 'shell_socket', 'network_tool', 'connect'],
    init: () => ({ containers: new BoundedMap<string, Box>(cfg.max_containers), reported: new BoundedMap<string, bigint>(cfg.max_containers) }),
    evictions: (st) => st.containers.evicted + st.reported.evicted,
    step(st, sig) {
      const findings: Finding[] = [];
      if (sig.containerId === null) return { state: st, findings };
      let box = st.containers.touch(sig.containerId);
      const created = !box || (sig.kind === 'container_start' && sig.timeNs < box.startNs);
      if (!box || created) {
        box = { startNs: sig.timeNs, start: retain(sig), freshReported: false };
        st.containers.set(sig.containerId, box);
      }
      const image = imageOf(sig) ?? sig.containerId;
      const reg = registryOf(sig);
      if (allowed.size > 0 && reg !== null && !allowed.has(reg.toLowerCase()) && once(st, `registry|${image}|${sig.containerId}`, sig.timeNs)) {
        findings.push(
          mk(UNEXPECTED_IMAGE_RULES.registry, cfg.priority, 0.6, `image ${image} in ${whereOf(sig)} comes from registry ${reg}, which is not allowed`, `${UNEXPECTED_IMAGE_DETECTOR_ID}|registry|${image}`, [sig], sig, {
            'unexpected_image.reason': 'registry_not_allowed',
          }),
        );
      }
      const digest = sig.imageDigest ?? cString(sig, IMAGE.digest) ?? '';
      if (cBool(sig, IMAGE.tagMutated) === true && once(st, `tag|${image}|${digest}`, sig.timeNs)) {
        const prev = cString(sig, IMAGE.previousDigest);
        findings.push(
          mk(UNEXPECTED_IMAGE_RULES.tag, cfg.priority, 0.6, `tag ${image} in ${whereOf(sig)} now points to digest ${digest || '?'}${prev ? ` (was ${prev})` : ''}`, `${UNEXPECTED_IMAGE_DETECTOR_ID}|tag|${image}|${digest}`, [sig], sig, {
            'unexpected_image.reason': 'tag_mutated',
          }),
        );
      }
      const active = ACTIVITY.has(sig.kind) || (sig.kind === 'connect' && newEgress(sig));
      if (active && !box.freshReported) {
        const ref = freshRef(sig) ?? freshRef(box.start);
        const sinceStart = sig.timeNs - box.startNs;
        if (ref && sinceStart >= 0n && sinceStart <= windowNs && box.startNs - ref.ns <= freshNs && box.startNs - ref.ns >= -skewNs) {
          box.freshReported = true;
          const what = sig.kind === 'connect' ? `new egress to ${sig.net.remoteDomain ?? sig.net.remoteIp ?? cString(sig, DEST.ip) ?? '?'}:${sig.net.remotePort ?? cString(sig, DEST.port) ?? '?'}` : `${sig.kind.replace('_', ' ')} ${exeOf(sig)}`;
          const priority: Priority = sig.kind === 'shell_socket' || cString(sig, DEST.intel) ? 'Critical' : cfg.fresh_priority;
          const age = box.startNs - ref.ns > 0n ? box.startNs - ref.ns : 0n;
          const evidence = created ? [sig] : [box.start, sig];
          findings.push(
            mk(
              UNEXPECTED_IMAGE_RULES.fresh,
              priority,
              0.8,
              `image ${image} ${ref.what} ${mins(age)} before its container started in ${whereOf(sig)}; ${mins(sinceStart)} later: ${what}`,
              `${UNEXPECTED_IMAGE_DETECTOR_ID}|fresh|${sig.containerId}`,
              evidence,
              sig,
              { 'unexpected_image.reason': 'fresh_image_activity', 'unexpected_image.activity': sig.kind, 'unexpected_image.image_age_s': Number(age / 1_000_000_000n), 'unexpected_image.after_start_s': Number(sinceStart / 1_000_000_000n) },
            ),
          );
        }
      }
      return { state: st, findings };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const unexpectedImageModule = detectorModule({ id: UNEXPECTED_IMAGE_DETECTOR_ID, settings: unexpectedImageSettingsSpec, quietInCi: true, create: createUnexpectedImageDetector });
