/** Container and image enricher settings (src/enrich/container.ts). */
import { bool, duration, int, obj, oneOf, str } from '../dsl.js';

const apiVersion = (v: string): string | null => (/^1\.\d{1,3}$/.test(v) ? null : `must look like 1.41; got ${JSON.stringify(v)}`);

export const containerEnrichSection = obj('Container and image history from the container runtime.', {
  enabled: bool('Look up containers and images.', true),
  runtime: oneOf(
    'Which runtime to ask. auto: Docker when its socket exists, else CRI when its socket exists, else none.',
    ['auto', 'docker', 'cri', 'none'],
    'auto',
    { caseInsensitive: true },
  ),
  docker_socket: str('Docker Engine API unix socket (mount it read-only).', '/var/run/docker.sock'),
  docker_api_version: str('Pin the Docker Engine API version (e.g. 1.41). Empty: negotiate with GET /version.', null, { check: apiVersion }),
  cri_socket: str('CRI (containerd, CRI-O) unix socket (mount it read-only).', '/run/containerd/containerd.sock'),
  request_timeout: duration('Hard timeout of one runtime request. Lookups outliving the alert budget finish in the background and warm the cache.', 2000, { min: 10, max: 60_000 }),
  cache_ttl: duration('How long a container lookup result is reused.', 300_000, { min: 0 }),
  negative_ttl: duration('How long "container not found" is remembered.', 30_000, { min: 0 }),
  error_ttl: duration('After the runtime failed (down, timeout), skip lookups for this long and answer enrich_error at once.', 5000, { min: 0 }),
  cache_size: int('Containers kept in the lookup cache (least recently used evicted, counted).', 4096, { min: 1, max: 1_000_000 }),
  events: bool('Follow the Docker event stream (pulls, tags, container starts) to record pull times and tag changes.', true),
  events_reconnect_max: duration('Largest delay between event stream reconnects (exponential backoff with jitter).', 30_000, { min: 100 }),
  max_images: int('Image records kept in the state database (oldest evicted, counted).', 10_000, { min: 10, max: 10_000_000 }),
  max_tags: int('Tag records (reference -> digest history) kept in the state database (oldest evicted, counted).', 10_000, { min: 10, max: 10_000_000 }),
});
