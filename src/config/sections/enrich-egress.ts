/** Egress destination enricher settings (src/enrich/egress.ts). */
import { bool, duration, int, list, obj, oneOf, str } from '../dsl.js';
import { parseCidr } from '../../net/cidr.js';

const cidr = (v: string): string | null => (parseCidr(v) ? null : `must be an IP or CIDR such as 10.42.0.0/16 or fd00:10::/56; got ${JSON.stringify(v)}`);
const server = (v: string): string | null =>
  /^(\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?|\[[0-9a-fA-F:.]+\](:\d{1,5})?|[0-9a-fA-F:]+)$/.test(v) ? null : `must be an IP address with an optional port (1.2.3.4, 1.2.3.4:5353, [::1]:53); got ${JSON.stringify(v)}`;
const listName = (v: string): string | null => (/^[A-Za-z0-9_.:-]{1,64}$/.test(v) ? null : `must be 1-64 characters of A-Z a-z 0-9 _ . : -; got ${JSON.stringify(v)}`);

export const IP_CLASSES = [
  'cluster_pod',
  'cluster_service',
  'loopback',
  'private',
  'cgnat',
  'cloud_metadata',
  'link_local',
  'multicast',
  'unique_local',
  'reserved',
  'public',
] as const;

export const egressEnrichSection = obj('Egress destination classification, reverse DNS, ASN, threat intel, baseline.', {
  enabled: bool('Classify destinations.', true),
  cluster_pod_cidrs: list('Pod network CIDRs of the cluster (class cluster_pod, checked before anything else).', str('CIDR', '', { check: cidr })),
  cluster_service_cidrs: list('Service network CIDRs of the cluster (class cluster_service).', str('CIDR', '', { check: cidr })),
  rdns: obj('Reverse DNS (PTR) of the destination.', {
    enabled: bool('Look up reverse DNS names.', true),
    servers: list('DNS servers (IP or IP:port). Empty: the system resolvers.', str('server', '', { check: server })),
    timeout: duration('Hard timeout of one lookup (the query is cancelled).', 1000, { min: 1, max: 30_000 }),
    wait: duration('How long one alert waits for an uncached lookup (keep below enrich.budget); the lookup goes on in the background to warm the cache.', 20, { min: 0, max: 10_000 }),
    classes: list('Destination classes that get a lookup (never loopback).', oneOf('class', IP_CLASSES, 'public'), ['public']),
    cache_size: int('Cached answers (LRU, evictions counted).', 10_000, { min: 1 }),
    positive_ttl: duration('How long a found name is cached.', 3_600_000, { min: 1 }),
    negative_ttl: duration('How long "no name" (NXDOMAIN, no PTR) is cached.', 300_000, { min: 1 }),
    error_ttl: duration('How long a failed lookup (timeout, SERVFAIL) is cached.', 30_000, { min: 0 }),
    max_inflight: int('Concurrent lookups; more are refused and counted.', 256, { min: 1 }),
  }),
  asn_mmdb: str('MMDB file with ASN data (GeoLite2-ASN or ipinfo-style); reloaded when it changes. Empty: off.', null),
  intel: obj('Threat-intel lists: text files of IPs, CIDRs and domains, reloaded when they change.', {
    lists: list(
      'Lists, each {name, path}; a match adds companion.dest.intel: <name>.',
      obj('An intel list.', {
        name: str('Name reported on a match.', '', { check: listName }),
        path: str('Text file: one IP, CIDR, domain or *.domain per line; # and ; start comments.', ''),
      }),
    ),
    max_entries: int('Largest number of entries read from one list; the rest is skipped and counted.', 1_000_000, { min: 1 }),
  }),
  reload_interval: duration('How often the MMDB and intel files are checked for changes (mtime, size).', 10_000, { min: 10 }),
  baseline: obj('First-seen destinations per image (persisted in the state database).', {
    enabled: bool('Track destinations per image and report dest.new_for_image.', true),
    image_key: oneOf('What identifies an image: repository, repository:tag, or digest (falls back to repository:tag, then repository).', ['repository', 'repository_tag', 'digest'], 'repository'),
    learning_period: duration('From the first destination seen for an image (event time), new destinations are learnt (dest.learning: true).', 3_600_000, { min: 0 }),
    max_per_image: int('Destinations kept per image; the least recently seen is evicted (counted).', 1000, { min: 1 }),
    max_total: int('Destinations kept in total; the least recently seen is evicted (counted).', 100_000, { min: 1 }),
    max_images: int('Images kept; the least recently seen image is evicted with its destinations (counted).', 10_000, { min: 1 }),
    flush_interval: duration('How often changes are written to the state database (in one transaction).', 5000, { min: 10 }),
  }),
});
