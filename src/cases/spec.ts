/**
 * The detection test case format (`falco-companion test`), in the config DSL (src/config/dsl.ts):
 * one YAML file per case, checked by the same validator as the config and rules files (every
 * problem at once as `file:line:col: path: message`). docs/testing-detections.md documents it.
 *
 *   name: socket-filter-bind-shell          # default: the file's (or folder's) name
 *   description: ...
 *   alerts: alerts.jsonl                     # Falco JSON lines, relative to this file
 *   enrichment: enrichment.json              # optional: companion keys per 1-based line
 *   facts: { containers, destinations, baseline }   # optional enrichment facts
 *   rules_file: ../rules.yaml                # optional: default the built-in rules
 *   cluster: cluster.json                    # optional: the node's cluster facts for the detectors
 *   settings: { detectors: ..., suppress: ... }     # optional: merged over the rules file
 *   expect:
 *     detections: [{ detector, rule, mitre, min_priority, min_score, count }]
 *     other_detections: fail                 # fail | ignore | a priority (others must be below it)
 */
import { bool, duration, int, list, num, obj, opt, req, str, strings, text, type Infer, type ObjectSpec } from '../config/dsl.js';
import { PRIORITIES, parsePriority } from '../alert.js';
import { CI_QUIET_DETECTOR_IDS, DETECTOR_MODULES } from '../detect/registry.js';
import { rulesFileSpec } from '../detect/rules/schema.js';
import type { DetectorSettingsSpec } from '../detect/rules/types.js';
import { parseTime } from '../alert.js';

const priorityName = (v: string): string | null => (parsePriority(v) ? null : `must be a Falco priority (${PRIORITIES.join(', ')})`);
const rfc3339 = (v: string): string | null => (parseTime(v) ? null : 'must be an RFC 3339 time, e.g. 2025-06-10T13:59:55Z');

export const containerFactSpec = obj('What the container enricher would know about one container (companion `image.*` keys on its alerts).', {
  id: req(text('container.id as Falco prints it (12 characters) or the full id.')),
  registry: opt(text('Image registry.')),
  repository: opt(text('Image repository.')),
  tag: opt(text('Image tag.')),
  digest: opt(text('Image digest (sha256:...).')),
  created: opt(str('When the image was built (RFC 3339).', null, { check: rfc3339 })),
  pulled_at: opt(str('When this node pulled it (RFC 3339).', null, { check: rfc3339 })),
  first_seen: opt(str('When this node first saw the image (RFC 3339).', null, { check: rfc3339 })),
  layers: opt(int('Number of layers.', 0, { min: 0 })),
  newest_layer_created: opt(str('When the newest layer was built (RFC 3339).', null, { check: rfc3339 })),
  newest_layer_cmd: opt(text('The command that built the newest layer.')),
  tag_mutated: opt(bool('The tag now points at another digest than before.', false)),
  previous_digest: opt(text('The digest the tag pointed at before.')),
});

export const destinationFactSpec = obj('What the egress enricher would know about one remote address (companion `dest.*` keys).', {
  ip: req(text('The remote address.')),
  rdns: opt(text('Reverse DNS name.')),
  asn: opt(int('Autonomous system number.', 0, { min: 0 })),
  as_org: opt(text('Autonomous system organisation.')),
  intel: opt(strings('Names of the threat-intel lists the address is on.')),
  class: opt(text('Destination class instead of the classifier\'s (public, private, cluster_pod, cluster_service, loopback, link_local, ...).')),
});

export const baselineEntrySpec = obj('A destination the image is already known to talk to.', {
  image: req(text('The image key (the repository, as the baseline keys images by default).')),
  dest: req(text('Destination IP or domain.')),
  port: int('Destination port (0: any port was not recorded).', 0, { min: 0, max: 65535 }),
});

export const factsSpec = obj('Enrichment facts, so no container runtime, DNS or baseline state is needed.', {
  containers: list('Image facts by container.', containerFactSpec),
  destinations: list('Facts by remote address (class, reverse DNS, ASN, intel).', destinationFactSpec),
  baseline: opt(
    obj('First-seen egress baseline state: the real baseline runs over the stream, seeded with these destinations.', {
      known: list('Destinations each image is known to talk to before the stream starts.', baselineEntrySpec),
      learning_period: duration('Learning period of the baseline (a new image learns for this long).', 86_400_000, { min: 0 }),
      learning: bool('The images of `known` are still in their learning period when the stream starts.', false),
    }),
  ),
});

export const expectedDetectionSpec = obj('One expected detection (all given selectors must hold).', {
  detector: opt(text('Detector id (socket_filter, knock, beacon, ...).')),
  rule: opt(text('Detection rule name, exact.')),
  mitre: opt(strings('MITRE technique ids the detection must carry (e.g. T1205.002).')),
  min_priority: opt(str('Lowest acceptable priority.', null, { check: priorityName })),
  min_score: opt(num('Lowest acceptable score (0..1).', 0, { min: 0, max: 1 })),
  count: opt(int('Exactly this many (absent: at least one).', 1, { min: 0 })),
});

const otherDetections = (v: string): string | null =>
  v === 'fail' || v === 'ignore' || parsePriority(v) ? null : 'must be fail, ignore or a Falco priority (unlisted detections must be below it)';

export const expectSpec = obj('The expected outcome.', {
  detections: list('Expected detections; an empty list (with other_detections: fail) means "no detection".', expectedDetectionSpec),
  other_detections: str('Detections no entry matches: fail, ignore, or a priority (e.g. Warning: allowed only below it).', 'fail', { check: otherDetections }),
});

/** The case file for these detectors (settings are checked against the rules file's schema). */
export function caseSpec(detectors: readonly DetectorSettingsSpec[] = DETECTOR_MODULES): ObjectSpec {
  return obj('A detection test case.', {
    name: opt(text('Case name (default: the file name, or the folder name for case.yaml).')),
    description: opt(str('What the stream shows.', null)),
    alerts: req(text('Falco alerts as JSON lines (json_output, as Falco writes them to a file or http_output), relative to this file.')),
    enrichment: opt(text('JSON file: 1-based line number → companion keys (without `companion.`) added to that alert (what --record writes).')),
    facts: factsSpec,
    rules_file: opt(text('Companion rules file (relative to this file). Absent: the built-in rules.')),
    cluster: opt(text('JSON file with the node\'s cluster facts for the detectors (relative to this file): `config` (the detect.cluster section), `env` (the DaemonSet pod\'s environment, e.g. KUBERNETES_SERVICE_HOST), `interfaces` (the node\'s addresses).')),
    settings: rulesFileSpec(detectors, CI_QUIET_DETECTOR_IDS),
    flush: bool('Also count the summaries the engine sends when the input ends (pending "repeated N times").', false),
    expect: req(expectSpec),
  });
}

export type ContainerFact = Infer<typeof containerFactSpec>;
export type DestinationFact = Infer<typeof destinationFactSpec>;
export type Facts = Infer<typeof factsSpec>;
export type ExpectedDetection = Infer<typeof expectedDetectionSpec>;
export type Expectation = Infer<typeof expectSpec>;
