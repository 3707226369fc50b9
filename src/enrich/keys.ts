/**
 * The enrichment keys (`companion.<key>` in forwarded alerts, `alert.companion[key]` inside): the
 * one list the enrichers write and the detection stage reads. Rename here and both sides follow.
 */

/** Written by the egress enricher (src/enrich/egress.ts). */
export const DEST = {
  /** The remote side's address, canonical text. */
  ip: 'dest.ip',
  port: 'dest.port',
  /** src/enrich/ip-class.ts IpClass. */
  class: 'dest.class',
  rdns: 'dest.rdns',
  asn: 'dest.asn',
  asOrg: 'dest.as_org',
  /** Comma-separated names of the intel lists that match. */
  intel: 'dest.intel',
  /** true: never seen for this image (once the image's baseline is out of learning). */
  newForImage: 'dest.new_for_image',
  /** true: the image's baseline is still learning. */
  learning: 'dest.learning',
} as const;

/** Written by the container enricher (src/enrich/container.ts). */
export const IMAGE = {
  registry: 'image.registry',
  repository: 'image.repository',
  tag: 'image.tag',
  digest: 'image.digest',
  created: 'image.created',
  firstSeen: 'image.first_seen',
  pulledAt: 'image.pulled_at',
  layers: 'image.layers',
  newestLayerCreated: 'image.newest_layer_created',
  newestLayerCmd: 'image.newest_layer_cmd',
  tagMutated: 'image.tag_mutated',
  previousDigest: 'image.previous_digest',
} as const;

/** Written by the container enricher: `docker` or `cri`. */
export const CONTAINER_RUNTIME = 'container.runtime';

/** Written by any enricher (and the pipeline on overrun): what failed, for the operator. */
export const ENRICH_ERROR = 'enrich_error';
