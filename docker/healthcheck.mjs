/* global process, fetch, AbortSignal */
// Container health check: GET /healthz (or the path given as the first argument, e.g. /readyz)
// on the companion's own port; exit 0 on 200. Used by the image HEALTHCHECK and as an exec probe
// when the companion listens on 127.0.0.1 only (the Kubernetes sidecar pattern).
// The port comes from FALCO_COMPANION_OPS_LISTEN, else FALCO_COMPANION_HTTP_LISTEN (HOST:PORT: the
// operations endpoints share the HTTP input's port unless ops.listen is set), else 2804
// (docker/config.yaml); a wildcard listen address is reached on the loopback.
const path = process.argv[2] ?? '/healthz';
const listen = process.env.FALCO_COMPANION_OPS_LISTEN || process.env.FALCO_COMPANION_HTTP_LISTEN || '0.0.0.0:2804';
const i = listen.lastIndexOf(':');
let host = listen.slice(0, i);
const port = listen.slice(i + 1);
if (host === '0.0.0.0' || host === '' || host === '[::]' || host === '::') host = '127.0.0.1';
try {
  const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(4000) });
  process.exit(res.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
