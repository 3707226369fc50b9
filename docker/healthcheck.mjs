/* global process, URL */
// Container health check: GET /healthz (or the path given as the first argument, e.g. /readyz) on
// the companion's operations endpoints; exit 0 on 200, else 1 with the reason on stderr. Used by
// the image HEALTHCHECK and as the exec probe of the Kubernetes sidecar pattern.
//
//   node /app/healthcheck.mjs [/healthz|/readyz] [CONFIG]
//
// Where the endpoints listen is decided exactly as the companion decides it (opsPlacement in
// src/server/ops.ts): from CONFIG (default /etc/falco-companion/config.yaml, where the image and the
// manifests put it; absent: defaults) and the FALCO_COMPANION_* variables, e.g. the loopback-only
// 127.0.0.1:2805 when http.listen is 0.0.0.0:2804 and ops.listen is empty. A wildcard address
// (0.0.0.0, ::) is reached on the loopback.
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const path = process.argv[2] ?? '/healthz';
const configFile = process.argv[3] ?? '/etc/falco-companion/config.yaml';

function fail(why) {
  process.stderr.write(`healthcheck: ${why}\n`);
  process.exit(1);
}

// The compiled companion: /app/dist/src in the image, dist/src of a checkout (docker/ is one level down).
const app = [new URL('./dist/src/', import.meta.url), new URL('../dist/src/', import.meta.url)].find((u) => existsSync(new URL('server/ops.js', u)));
if (!app) fail('the compiled companion (dist/src) was not found next to this script');

let target;
try {
  const { loadConfig } = await import(new URL('config/validate.js', app).href);
  const { configSchema } = await import(new URL('config/schema.js', app).href);
  const { opsPlacement } = await import(new URL('server/ops.js', app).href);
  const config = loadConfig(configSchema, { file: existsSync(configFile) ? configFile : null });
  if (!config.ops.enabled) fail('ops.enabled is false: no endpoint to check');
  const p = opsPlacement(config, config.http.enabled);
  const tls = p.shared && config.http.tls.cert !== null;
  if (tls && config.http.tls.client_ca !== null) fail('the endpoints share the mTLS receiver (http.tls.client_ca): set ops.listen to give them a plain listener');
  const i = p.listen.lastIndexOf(':');
  let host = p.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::') host = '::1';
  target = { host, port: Number(p.listen.slice(i + 1)), tls };
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}

const get = target.tls ? https.get : http.get;
const req = get({ host: target.host, port: target.port, path, timeout: 4000, rejectUnauthorized: false }, (res) => {
  res.resume();
  if (res.statusCode === 200) process.exit(0);
  fail(`GET ${path} on ${target.host}:${target.port}: ${res.statusCode}`);
});
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (err) => fail(`GET ${path} on ${target.host}:${target.port}: ${err.message}`));
