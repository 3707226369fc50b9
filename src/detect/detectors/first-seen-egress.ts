/**
 * First-seen egress (T1041, T1071): a `connect` whose destination the egress enricher marks as
 * never seen for this image (`dest.new_for_image === true`) once the image's baseline is out of
 * learning (`dest.learning !== true`) and, when `image.first_seen` is known, older than
 * `learning_period`. Escalates for intel-listed destinations (`dest.intel`) and ports outside
 * `standard_ports`. One finding per (image, destination, port) while the key is remembered (the
 * baseline says "new" only once anyway; the map guards against replays and baseline evictions).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): the
 * reported keys (LRU, evictions counted); what is new comes from the enricher's baseline.
 */
import { PRIORITIES, type Priority } from '../../alert.js';
import { bool, defaults, duration, int, list, obj, oneOf, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding } from '../types.js';
import { BoundedMap, cBool, cString, cTimeNs, compact, destOf, exeOf, imageOf, msToNs, raise, whereOf, RENOTIFY_DEPRECATED } from './kit.js';
import { DEST, IMAGE } from '../../enrich/keys.js';

export const FIRST_SEEN_EGRESS_DETECTOR_ID = 'first_seen_egress';
export const FIRST_SEEN_EGRESS_RULE = 'First-seen egress: new destination for this image';
export const FIRST_SEEN_EGRESS_MITRE = ['T1071', 'T1041', 'mitre_command_and_control', 'mitre_exfiltration'] as const;

export const firstSeenEgressSettingsSpec = obj('First-seen egress: a destination never seen for the image after its learning period.', {
  enabled: bool('Run this detector.', true),
  learning_period: duration('Ignore images first seen less than this long ago (needs `image.first_seen`).', 3_600_000, { min: 0 }),
  standard_ports: list('Ports that do not escalate.', int('Port.', 443, { min: 0, max: 65535 }), [53, 80, 123, 443]),
  priority: oneOf('Priority of a plain first-seen destination.', PRIORITIES, 'Notice', { caseInsensitive: true }),
  intel_priority: oneOf('Priority when the destination is on an intel list.', PRIORITIES, 'Critical', { caseInsensitive: true }),
  renotify: RENOTIFY_DEPRECATED,
  max_keys: int('Reported (image, destination, port) keys remembered (LRU, evictions counted).', 50_000, { min: 1 }),
});

export type FirstSeenEgressSettings = Infer<typeof firstSeenEgressSettingsSpec>;
export const FIRST_SEEN_EGRESS_DEFAULTS = defaults(firstSeenEgressSettingsSpec) as unknown as FirstSeenEgressSettings;

export interface FirstSeenEgressState {
  readonly reported: BoundedMap<string, bigint>;
  /** Skipped because the image was still learning (for metrics). */
  learning: number;
}

export function createFirstSeenEgressDetector(overrides: Partial<FirstSeenEgressSettings> = {}): Detector<FirstSeenEgressState> {
  const cfg = { ...FIRST_SEEN_EGRESS_DEFAULTS, ...overrides } as FirstSeenEgressSettings;
  const std = new Set(cfg.standard_ports);
  return {
    id: FIRST_SEEN_EGRESS_DETECTOR_ID,
    consumes: ['connect'],
    init: () => ({ reported: new BoundedMap<string, bigint>(cfg.max_keys), learning: 0 }),
    evictions: (st) => st.reported.evicted,
    step(st, sig) {
      const none = { state: st, findings: [] as Finding[] };
      if (sig.kind !== 'connect' || cBool(sig, DEST.newForImage) !== true) return none;
      if (cBool(sig, DEST.learning) === true) {
        st.learning++;
        return none;
      }
      const firstSeen = cTimeNs(sig, IMAGE.firstSeen);
      if (firstSeen !== null && sig.timeNs - firstSeen < msToNs(cfg.learning_period)) {
        st.learning++;
        return none;
      }
      const d = destOf(sig);
      if (!d.host) return none;
      const image = imageOf(sig) ?? sig.containerId ?? 'host';
      const key = `${FIRST_SEEN_EGRESS_DETECTOR_ID}|${image}|${d.host}|${d.port ?? ''}`;
      if (st.reported.touch(key) !== undefined) return none;
      st.reported.set(key, sig.timeNs);
      const intel = cString(sig, DEST.intel);
      const odd = d.port !== null && !std.has(d.port);
      let priority: Priority = cfg.priority;
      if (odd) priority = raise(priority, 1);
      if (intel) priority = cfg.intel_priority;
      const score = intel ? 1 : odd ? 0.6 : 0.4;
      const org = cString(sig, DEST.asOrg);
      const message =
        `${exeOf(sig)} in ${whereOf(sig)} (image ${image}) connected to ${d.host}${d.ip && d.ip !== d.host ? ` (${d.ip})` : ''}:${d.port ?? '?'}, ` +
        `a destination never seen for this image` +
        (org ? `, AS ${org}` : '') +
        (odd ? ', non-standard port' : '') +
        (intel ? `, on intel list ${intel}` : '');
      return {
        state: st,
        findings: [
          {
            detector: FIRST_SEEN_EGRESS_DETECTOR_ID,
            rule: FIRST_SEEN_EGRESS_RULE,
            priority,
            score,
            message,
            mitre: FIRST_SEEN_EGRESS_MITRE,
            key,
            evidence: [sig],
            fields: compact({
              'egress.dest': d.host,
              'egress.dest_ip': d.ip,
              'egress.dest_port': d.port,
              'egress.nonstandard_port': odd,
              'egress.exe': exeOf(sig),
              'egress.image': image,
              'dest.class': cString(sig, DEST.class),
              'dest.asn': cString(sig, DEST.asn),
              'dest.as_org': org,
              'dest.intel': intel,
            }),
            timeNs: sig.timeNs,
          },
        ],
      };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const firstSeenEgressModule = detectorModule({ id: FIRST_SEEN_EGRESS_DETECTOR_ID, settings: firstSeenEgressSettingsSpec, quietInCi: true, create: createFirstSeenEgressDetector });
