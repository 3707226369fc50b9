/** Where learned state lives: the state database only, or shared through Redis (src/cluster/). */
import { bool, duration, int, list, obj, oneOf, str } from '../dsl.js';

const redisAddress = (v: string): string | null =>
  v.startsWith('/') || (/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]/]+):\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) >= 1 && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535)
    ? null
    : `must be HOST:PORT, [IPv6]:PORT or an absolute unix socket path; got ${JSON.stringify(v)}`;
const keyPrefix = (v: string): string | null => (/^[A-Za-z0-9_.:-]{1,64}$/.test(v) ? null : `must be 1-64 characters of A-Z a-z 0-9 _ . : -; got ${JSON.stringify(v)}`);

export const storeSection = obj(
  'Learned state (image history, egress baselines, pooled beacon series). `sqlite`: every node learns alone in its state database. `redis`: nodes share what they learn through Redis 7 or Valkey, local first (docs/cluster-store.md): each node keeps answering from its state database, writes go to Redis in batches, other nodes\' changes are pulled; when Redis is away nothing waits and the node converges after.',
  {
    backend: oneOf('`sqlite` (the embedded default) or `redis` (SQLite plus the shared store).', ['sqlite', 'redis'], 'sqlite'),
    redis: obj('The shared Redis (with `backend: redis`).', {
      mode: oneOf('`standalone`, `sentinel` (addresses are the sentinels) or `cluster` (addresses are seed nodes).', ['standalone', 'sentinel', 'cluster'], 'standalone'),
      addresses: list('Redis addresses: HOST:PORT, [IPv6]:PORT, or a unix socket path (standalone).', str('address', '', { check: redisAddress }), ['127.0.0.1:6379']),
      sentinel_master: str('Sentinel: name of the monitored master.', 'mymaster'),
      db: int('Database number (standalone and sentinel; a Redis Cluster has only 0).', 0, { min: 0, max: 15 }),
      username: str('ACL user (Redis 6+). Empty: the default user.', null),
      password: str('Password of the ACL user (or `requirepass`). Prefer password_file or the environment variable.', null),
      password_file: str('File holding the password (a mounted Secret); read at start, surrounding blanks ignored.', null),
      sentinel_username: str('Sentinel: ACL user on the sentinels.', null),
      sentinel_password: str('Sentinel: password on the sentinels.', null),
      tls: obj('TLS to Redis (and the sentinels).', {
        enabled: bool('Connect with TLS.', false),
        ca: str('CA certificate (PEM file) that verifies the server. Empty: the system CAs.', null),
        cert: str('Client certificate (PEM file) for mutual TLS.', null),
        key: str('Client private key (PEM file).', null),
        server_name: str('Override the TLS server name (SNI / certificate check).', null),
        insecure: bool('Skip the certificate check (testing only).', false),
      }),
      key_prefix: str('Prefix of every key, one per cluster of companions sharing this Redis (keys are `{prefix}:...`, one hash slot).', 'falco-companion', { check: keyPrefix }),
      node_name: str('This node\'s name in the store (heartbeats, beacon series). Empty: $NODE_NAME, then $HOSTNAME, then the host name.', null),
      connect_timeout: duration('Time allowed to connect.', 5000, { min: 100 }),
      command_timeout: duration('Time allowed for one command (a slow Redis fails the batch, which is retried; alerts never wait).', 2000, { min: 50 }),
      reconnect_initial: duration('First reconnect delay (exponential backoff with jitter).', 500, { min: 10 }),
      reconnect_max: duration('Largest reconnect delay.', 30_000, { min: 100 }),
    }),
    sync: obj('Write-behind and pull.', {
      flush_interval: duration('How often local changes are written to Redis (in batches).', 2000, { min: 10 }),
      pull_interval: duration('How often the changes other nodes made are pulled (also the heartbeat).', 5000, { min: 10 }),
      batch_size: int('Changes per write (one script call, one round trip); up to 10 batches per flush.', 500, { min: 1, max: 10_000 }),
      max_pending: int('Changes waiting for Redis (e.g. during an outage); beyond it they are dropped (counted) and the whole local copy is written again once Redis is back.', 100_000, { min: 100 }),
      max_pull: int('Entries merged per pull page (up to 5 pages per round).', 5000, { min: 10, max: 100_000 }),
    }),
    limits: obj('Bounds of the shared state in Redis (per key prefix); each node also keeps its own local bounds (enrich.*).', {
      egress_ttl: duration('A destination (and an image\'s whole baseline) that no node saw for this long expires.', 30 * 86_400_000, { min: 60_000 }),
      egress_max_images: int('Images with a shared baseline; the least recently changed are dropped.', 10_000, { min: 1 }),
      egress_max_per_image: int('Destinations per image; the least recently seen are trimmed.', 1000, { min: 1, max: 5000 }),
      image_ttl: duration('Image history of a repository that no node saw for this long expires.', 90 * 86_400_000, { min: 60_000 }),
      image_max_repositories: int('Repositories with shared image history; the least recently changed are dropped.', 10_000, { min: 1 }),
      image_max_per_repository: int('Image and tag observations per repository; the least recently seen are trimmed.', 256, { min: 4, max: 5000 }),
      series_ttl: duration('Pooled beacon series points older than this expire (keep it ≥ detect beacon window).', 86_400_000, { min: 60_000 }),
      series_max: int('Pooled beacon series; the least recently changed are dropped.', 10_000, { min: 1 }),
      series_max_points: int('Connection seconds (per node) kept per pooled series; the oldest are trimmed.', 4096, { min: 16, max: 5000 }),
      resource_ttl: duration('A resource baseline (and a workload\'s whole set) that no node sampled for this long expires.', 30 * 86_400_000, { min: 60_000 }),
      resource_max_groups: int('Workloads and images with shared resource baselines; the least recently changed are dropped.', 10_000, { min: 1 }),
      resource_max_per_group: int('Resource baselines per workload or image (metrics × time-of-day buckets); the least recently sampled are trimmed.', 256, { min: 8, max: 5000 }),
    }),
  },
);
