/** Core settings: logging, receiver, sources, queue, routing, sinks, shutdown. */
import { bool, duration, int, list, obj, oneOf, size, str } from '../dsl.js';
import { PRIORITIES } from '../../alert.js';

const hostPort = (v: string): string | null =>
  /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/.test(v) && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535
    ? null
    : `must be HOST:PORT (e.g. 0.0.0.0:2804, 127.0.0.1:0, [::1]:2804); got ${JSON.stringify(v)}`;

export const logSection = obj('Logging (pino JSON on stderr).', {
  level: oneOf('Log level.', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
});

export const httpSection = obj('HTTP input: the Falco http_output receiver (POST any path). Its listener also serves the operations endpoints when it is on a loopback address or ops.listen equals it.', {
  enabled: bool('Receive Falco alerts over HTTP (off: gRPC- or file-only; the operations endpoints stay on, see ops).', true),
  listen: str('Address to listen on, HOST:PORT. Port 0 picks a free port (logged).', '0.0.0.0:2804', { check: hostPort }),
  max_body_bytes: size('Largest accepted request body; larger bodies get 413.', 1024 * 1024, { min: 1024 }),
  header_timeout: duration('Time allowed to receive request headers (also on the ops listener).', 10_000, { min: 100 }),
  request_timeout: duration('Time allowed to receive a whole request.', 30_000, { min: 100 }),
  keep_alive_timeout: duration('Idle keep-alive connection timeout.', 65_000, { min: 0 }),
  retry_after: duration('Retry-After sent with 503 when the intake is full (rounded up to seconds).', 1000, { min: 1000 }),
  tls: obj('TLS for the receiver (Falco http_output supports mTLS: set client_ca to require client certs).', {
    cert: str('Server certificate (PEM file). Empty: plain HTTP.', null),
    key: str('Server private key (PEM file).', null),
    client_ca: str('CA that must have signed client certificates (enables mTLS).', null),
  }),
});

export const opsSection = obj(
  'Operations endpoints: GET /healthz, /readyz, /metrics, /ping, /detections (and the report pages), POST /test. They do not depend on the HTTP input and are not reachable from other hosts unless ops.listen says so (docs/security.md).',
  {
    enabled: bool('Serve the operations endpoints (off only for a companion that must not open a port).', true),
    listen: str(
      'HOST:PORT for the operations endpoints. Empty: on the HTTP input listener when http.listen is a loopback address (one port), else on 127.0.0.1:2805 (loopback only). Equal to http.listen: on the HTTP input listener (one port, its TLS). Another address, e.g. 0.0.0.0:2805 for Prometheus and kubelet probes: a listener of their own there (plain HTTP).',
      null,
      { check: hostPort },
    ),
    test_token: str(
      'Bearer token POST /test requires (Authorization: Bearer <token>; it injects an alert). Empty: POST /test is off (403). Set it from a secret: FALCO_COMPANION_OPS_TEST_TOKEN.',
      null,
      { check: (v) => (/^[\x21-\x7e]{16,512}$/.test(v) ? null : 'must be 16 to 512 printable characters without spaces (e.g. openssl rand -hex 16)') },
    ),
  },
);

export const grpcSection = obj('gRPC client for falco.outputs.service (Falco 0.24–0.43; removed in 0.44).', {
  enabled: bool('Consume Falco alerts over gRPC.', false),
  address: str('unix:///path or HOST:PORT (TCP requires mTLS, as Falco does).', 'unix:///run/falco/falco.sock'),
  mode: oneOf('sub: bidirectional stream (default). get: poll with server streams.', ['sub', 'get'], 'sub'),
  request_interval: duration(
    'sub: send an empty request this often (Falco writes only after each client request; bounds the added latency). get: poll interval.',
    100,
    { min: 10, max: 60_000 },
  ),
  reconnect_initial: duration('First reconnect delay (exponential backoff with jitter).', 250, { min: 10 }),
  reconnect_max: duration('Largest reconnect delay.', 30_000, { min: 100 }),
  tls: obj('mTLS for TCP addresses.', {
    ca: str('CA certificate (PEM file) that verifies Falco’s server certificate.', null),
    cert: str('Client certificate (PEM file).', null),
    key: str('Client private key (PEM file).', null),
    server_name: str('Override the TLS server name (SNI / certificate check).', null),
  }),
});

export const inputSection = obj('JSON-lines input (Falco stdout or file_output). With the spool, the read position of a file is kept in the state directory (docs/input-file.md).', {
  path: str('File to follow like tail -F, or "-" for stdin. Empty: off.', null),
  from_start: bool('A file never read before (no checkpoint): read it from its start (true) or only new lines (false). A file with a checkpoint resumes there.', false),
  poll_interval: duration('How often to check the file for growth, truncation and re-creation.', 250, { min: 10 }),
  rotated_names: list(
    'Where a file rotated while the companion was stopped is looked for: glob patterns for names next to the file ({name} is its base name; a directory part is relative to its directory). Gzip files are read; other compressions are not.',
    str('glob pattern', ''),
    ['{name}.[0-9]*', '{name}-[0-9]*'],
  ),
  checkpoint_retention: duration('Read positions of other input paths (an earlier input.path) not updated for this long are forgotten (at most 1000 are kept).', 30 * 86_400_000, { min: 60_000 }),
  max_line_bytes: size('Longest line accepted; longer lines are skipped and counted.', 1024 * 1024, { min: 1024 }),
  drain_timeout: duration(
    'When a finite input ends (stdin EOF, replay): how long to wait for the sinks to deliver everything accepted before exiting; what is left stays in the spool (spool off: lost, exit code 1).',
    60_000,
    { min: 0 },
  ),
});

export const queueSection = obj('In-memory intake queue between sources and the pipeline.', {
  max_alerts: int('Alerts held before sources are pushed back (HTTP 503, gRPC stops requesting, file stops reading).', 10_000, { min: 1 }),
  concurrency: int('Alerts enriched in parallel (order is kept for detection and delivery).', 64, { min: 1, max: 4096 }),
});

const priorityNames = PRIORITIES;
export const routeSection = obj('Which alerts reach the sinks. Everything dropped is counted by reason.', {
  min_priority: oneOf('Minimum priority forwarded (compared by name).', priorityNames, 'Debug', { caseInsensitive: true }),
  include_rules: list('Forward only these rule names (empty: all).', str('rule name', '')),
  exclude_rules: list('Never forward these rule names.', str('rule name', '')),
  include_tags: list('Forward only alerts with at least one of these tags (empty: all).', str('tag', '')),
  exclude_tags: list('Never forward alerts with any of these tags.', str('tag', '')),
  forward_internal: bool('Forward Falco internal messages (source: internal).', true),
});

export const sinksSection = obj('Where alerts go.', {
  falcosidekick: obj('Falcosidekick (POST /, one alert per request).', {
    url: str('Falcosidekick URL, e.g. http://falcosidekick:2801/. Empty: off.', null, {
      check: (v) => (/^https?:\/\/[^\s]+$/.test(v) ? null : `must be an http(s) URL; got ${JSON.stringify(v)}`),
    }),
    timeout: duration('Per-attempt timeout.', 5000, { min: 50 }),
    concurrency: int('Requests in flight at once (keep-alive pool size).', 8, { min: 1, max: 256 }),
    max_queue: int('Spool off: alerts waiting in memory for delivery before the pipeline is pushed back (with the spool, its limits apply).', 10_000, { min: 1 }),
    retry_initial: duration('First retry delay (exponential backoff with jitter).', 250, { min: 1 }),
    retry_max: duration('Largest retry delay.', 30_000, { min: 1 }),
    max_elapsed: duration('Spool off: give up on an alert retried for this long since its first attempt (0: never). With the spool, retry until delivered (within the spool limits).', 0, { min: 0 }),
    ca: str('CA file for an https sidekick.', null),
    client_cert: str('Client certificate (PEM) for sidekick mTLS.', null),
    client_key: str('Client key (PEM) for sidekick mTLS.', null),
    insecure: bool('Skip TLS verification (testing only).', false),
  }),
  stdout: obj('JSON lines on stdout.', {
    enabled: bool('Write every forwarded alert to stdout.', false),
  }),
  file: obj('JSON lines appended to a file.', {
    path: str('File path. Empty: off.', null),
  }),
});

export const shutdownSection = obj('Graceful shutdown.', {
  deadline: duration('On SIGTERM/SIGINT: stop intake, then drain and flush for at most this long.', 10_000, { min: 0 }),
});

export { hostPort };
