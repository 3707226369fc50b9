/**
 * The Falco http_output receiver (source/http) on a real socket: acks, every rejection with its
 * reason, limits, timeouts, fuzzed bodies, graceful stop, mTLS.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { LosslessNumber } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { HttpServer } from '../../src/server/http.js';
import { ALERT, counter, dirs, harness, httpConfig, post } from './harness.js';

describe('HttpServer: Falco receiver', () => {
  it('accepts a Falco alert on any POST path, losslessly, and acks with 200', async () => {
    const h = await harness();
    for (const p of ['/', '/falco', '/some/deep/path?x=1']) {
      const r = await post(h.base + p, ALERT);
      expect(r.status).toBe(200);
    }
    expect(h.intake.depth).toBe(3);
    const a = (await h.intake.take()) as Alert;
    expect(a.rule).toBe('Terminal shell in container');
    expect(a.origin).toEqual({ kind: 'http', component: 'source/http' });
    expect(a.outputFields?.['evt.time']).toBeInstanceOf(LosslessNumber);
    expect(String(a.outputFields?.['evt.time'])).toBe('1700000000123456789');
    expect(await counter(h.metrics, 'falco_companion_received_total', { component: 'source/http' })).toBe(3);
  });

  it('acks before delivery: the alert is only queued when 200 is answered', async () => {
    const h = await harness();
    const r = await post(h.base + '/', ALERT);
    expect(r.status).toBe(200);
    // Nobody has taken from the intake: the alert is kept, not delivered.
    expect(h.intake.depth).toBe(1);
  });

  it('accepts text/plain, missing and form content types when the body is JSON (curl -d)', async () => {
    const h = await harness();
    expect((await post(h.base, ALERT, { 'content-type': 'text/plain' })).status).toBe(200);
    expect((await post(h.base, ALERT, { 'content-type': 'application/x-www-form-urlencoded' })).status).toBe(200);
    expect((await post(h.base, Buffer.from(ALERT), {})).status).toBe(200);
    expect(h.intake.depth).toBe(3);
  });

  const bad: [string, string | Buffer, string, RegExp, RegExp | null, Record<string, string>?][] = [
    ['empty body', '', 'empty_body', /empty/, /json_output/],
    ['whitespace body', '  \n', 'empty_body', /empty/, null],
    ['not JSON', '{"rule": "x",', 'invalid_json', /position \d+/, null],
    ['not UTF-8', Buffer.from([0xff, 0xfe, 0x00, 0x41]), 'invalid_encoding', /UTF-8/, null],
    ['a string', '"hello"', 'not_object', /string, not an object/, null],
    ['a number', '42', 'not_object', /number, not an object/, null],
    ['null', 'null', 'not_object', /null/, null],
    ['a batch', `[${ALERT},${ALERT}]`, 'batch', /array/, /one alert per request/],
    ['missing rule', '{"priority":"Warning","time":"2023-11-14T22:13:20.1Z","output":"x","output_fields":{"a":1}}', 'missing_field', /"rule"/, null],
    ['missing all', '{"foo":1}', 'missing_field', /"rule", "priority", "time"/, /json_output/],
    ['empty rule', '{"rule":" ","priority":"Warning","time":"2023-11-14T22:13:20.1Z","output_fields":{"a":1}}', 'missing_field', /non-empty/, null],
    ['bad priority name', '{"rule":"r","priority":"Severe","time":"2023-11-14T22:13:20.1Z","output_fields":{"a":1}}', 'bad_priority', /Severe.*not a Falco priority/, null],
    ['priority not a string', '{"rule":"r","priority":3,"time":"2023-11-14T22:13:20.1Z","output_fields":{"a":1}}', 'wrong_type', /priority/, null],
    ['bad time', '{"rule":"r","priority":"Warning","time":"yesterday","output_fields":{"a":1}}', 'bad_time', /RFC 3339/, null],
    ['time not a string', '{"rule":"r","priority":"Warning","time":1700000000,"output_fields":{"a":1}}', 'wrong_type', /time/, null],
    ['rule not a string', '{"rule":5,"priority":"Warning","time":"2023-11-14T22:13:20.1Z"}', 'wrong_type', /rule/, null],
    ['tags not strings', '{"rule":"r","priority":"Warning","time":"2023-11-14T22:13:20.1Z","tags":[1]}', 'wrong_type', /tags/, null],
    ['output_fields not an object', '{"rule":"r","priority":"Warning","time":"2023-11-14T22:13:20.1Z","output_fields":[1]}', 'wrong_type', /output_fields/, null],
    ['text output (json_output false)', '09:20:49.259268899: Warning Shell spawned in a container (user=root)', 'text_output', /text alert/, /json_output: true/],
    ['ISO text output', '2023-11-14T22:13:20.123456789+0000: Critical Something', 'text_output', /text alert/, /json_output: true/],
    ['form-encoded body', 'rule=x&priority=Warning', 'form_encoded', /form-encoded/, /application\/json/],
    ['form content type, non-JSON', 'hello world', 'form_encoded', /form-encoded/, /Content-Type/, { 'content-type': 'application/x-www-form-urlencoded' }],
  ];
  for (const [name, body, code, reason, hint, headers] of bad) {
    it(`400 ${code}: ${name}`, async () => {
      const h = await harness();
      const r = await post(h.base + '/', body, headers ?? { 'content-type': 'application/json' });
      expect(r.status).toBe(400);
      expect(r.headers.get('content-type')).toMatch(/application\/json/);
      const j = r.json();
      expect(j['error']).toBe(code);
      expect(String(j['reason'])).toMatch(reason);
      if (hint) expect(String(j['hint'])).toMatch(hint);
      expect(h.intake.depth).toBe(0);
      expect(await counter(h.metrics, 'falco_companion_errors_total', { component: 'source/http', code })).toBe(1);
    });
  }

  it('accepts an alert without output_fields but answers a hint and counts it', async () => {
    const h = await harness();
    const r = await post(h.base, '{"output":"x","priority":"Informational","rule":"r","time":"2023-11-14T22:13:20.1Z"}');
    expect(r.status).toBe(200);
    expect(String(r.json()['warning'])).toMatch(/output_fields/);
    expect(h.intake.depth).toBe(1);
    expect(await counter(h.metrics, 'falco_companion_http_warnings_total', { code: 'no_output_fields' })).toBe(1);
  });

  it('413 on a declared Content-Length over the cap, without reading the body', async () => {
    const h = await harness({ max_body_bytes: 2048 });
    const { port } = h.server.address();
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"a":');
      });
      let buf = '';
      s.on('data', (d) => (buf += d.toString()));
      s.on('close', () => resolve(buf));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 5000).unref();
    });
    expect(reply).toMatch(/^HTTP\/1\.1 413/);
    expect(reply).toMatch(/"error":"too_large"/);
  });

  it('413 on a chunked body that grows over the cap', async () => {
    const h = await harness({ max_body_bytes: 2048 });
    const { port } = h.server.address();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{"rule":"' + 'x'.repeat(1500));
      setTimeout(() => req.write('x'.repeat(1500)), 20);
    });
    expect(status).toBe(413);
    expect(await counter(h.metrics, 'falco_companion_errors_total', { code: 'too_large' })).toBe(1);
  });

  it('503 with Retry-After (rounded up to seconds) when the intake is full', async () => {
    const h = await harness({ retry_after: 2500 }, 1);
    expect((await post(h.base, ALERT)).status).toBe(200);
    const r = await post(h.base, ALERT);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('3');
    expect(r.json()['error']).toBe('queue_full');
    expect(await counter(h.metrics, 'falco_companion_discarded_total', { component: 'source/http', reason: 'queue_full' })).toBe(1);
    await h.intake.take();
    expect((await post(h.base, ALERT)).status).toBe(200);
  });

  it('503 when the intake is stopped', async () => {
    const h = await harness();
    h.intake.close();
    const r = await post(h.base, ALERT);
    expect(r.status).toBe(503);
    expect(r.json()['error']).toBe('stopping');
  });

  it('415 for a compressed body', async () => {
    const h = await harness();
    const r = await post(h.base, 'xx', { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(r.status).toBe(415);
  });

  it('bounds slow headers (slowloris) by header_timeout', async () => {
    const h = await harness({ header_timeout: 300, request_timeout: 600 });
    const { port } = h.server.address();
    const started = Date.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('POST / HTTP/1.1\r\nHost: x\r\n'));
      const drip = setInterval(() => s.writable && s.write('X-Slow: 1\r\n'), 100);
      s.on('data', () => undefined);
      s.on('close', () => {
        clearInterval(drip);
        resolve(Date.now() - started);
      });
      s.on('error', () => undefined);
      setTimeout(() => s.destroy(), 10_000).unref();
    });
    expect(closedAfter).toBeLessThan(8000);
  });

  it('survives random bytes and random JSON: always 200, 400 or 413', async () => {
    const h = await harness({ max_body_bytes: 4096 }, 100_000);
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)),
      fc.json().map((s) => Buffer.from(s)),
      fc.string({ maxLength: 300 }).map((s) => Buffer.from(s)),
      fc
        .record({
          rule: fc.oneof(fc.string(), fc.integer()),
          priority: fc.oneof(fc.constantFrom('Warning', 'info', 'DEBUG', 'x'), fc.integer()),
          time: fc.oneof(fc.constant('2023-11-14T22:13:20.123456789Z'), fc.string()),
          output_fields: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.bigInt().map((b) => b.toString()), fc.boolean())),
        })
        .map((o) => Buffer.from(JSON.stringify(o))),
      fc.uint8Array({ minLength: 4097, maxLength: 6000 }).map((u) => Buffer.from(u)),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const r = await post(h.base + '/', b, { 'content-type': 'application/json' });
        expect([200, 400, 413]).toContain(r.status);
        if (r.status !== 200 && r.text) expect(typeof JSON.parse(r.text)).toBe('object');
      }),
      { numRuns: 150 },
    );
    expect((await fetch(h.base + '/healthz')).status).toBe(200);
  });
});

describe('HttpServer: lifecycle', () => {
  it('stop lets an in-flight request finish, then refuses connections; idempotent', async () => {
    const h = await harness();
    const { port } = h.server.address();
    // Start a request whose body is not finished yet.
    const pending = new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ALERT) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(ALERT.slice(0, 10));
      setTimeout(() => req.end(ALERT.slice(10)), 200);
    });
    await new Promise((r) => setTimeout(r, 50));
    const stopped = h.server.stop(Date.now() + 5000);
    const again = h.server.stop(Date.now() + 5000);
    expect(await pending).toBe(200);
    await Promise.all([stopped, again]);
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    expect(h.intake.depth).toBe(1);
  });

  it('stop before start is a no-op; binding a taken port fails with a clear error', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const s = new HttpServer({ config: httpConfig(), intake: new MemoryIntake(1, metrics), logger: silentLogger(), metrics });
    await s.stop(Date.now() + 100);
    const h = await harness();
    const taken = new HttpServer({
      config: httpConfig({ listen: `127.0.0.1:${h.server.address().port}` }),
      intake: h.intake,
      logger: silentLogger(),
      metrics,
    });
    await expect(taken.start()).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+/);
  });
});

describe('HttpServer: mTLS', () => {
  function openssl(args: string[], cwd: string): void {
    execFileSync('openssl', args, { cwd, stdio: 'pipe' });
  }

  it('requires a client certificate signed by client_ca', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-mtls-'));
    dirs.push(dir);
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=test-ca'], dir);
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    for (const n of ['server', 'client']) {
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${n}.key`, '-out', `${n}.csr`, '-subj', `/CN=${n}`], dir);
      openssl(['x509', '-req', '-in', `${n}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${n}.crt`, '-days', '2', '-extfile', 'san.ext'], dir);
    }
    const h = await harness({ tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), client_ca: join(dir, 'ca.crt') } });
    const { port } = h.server.address();
    const ca = readFileSync(join(dir, 'ca.crt'));
    const request = (withCert: boolean) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: '/falco',
            ca,
            headers: { 'content-type': 'application/json' },
            ...(withCert ? { cert: readFileSync(join(dir, 'client.crt')), key: readFileSync(join(dir, 'client.key')) } : {}),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(ALERT);
      });
    expect(await request(true)).toBe(200);
    await expect(request(false)).rejects.toThrow();
    expect(h.intake.depth).toBe(1);
  });
});
