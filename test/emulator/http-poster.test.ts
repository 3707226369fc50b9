import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { falcoJsonLine, postLikeFalco } from '../../src/emulator/http-poster.js';
import { LosslessNumber, parse } from '../../src/json/lossless.js';

describe('postLikeFalco', () => {
  let server: http.Server;
  let url: string;
  let connections = 0;
  const seen: { method: string; path: string; type: string | undefined; body: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', path: req.url ?? '', type: req.headers['content-type'], body: Buffer.concat(chunks).toString('utf8') });
        res.statusCode = req.url === '/busy' ? 503 : 200;
        res.end('ignored');
      });
    });
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('one POST per alert, application/json, no trailing newline; status returned, not acted on', async () => {
    const line = '{"output":"x","priority":"Debug","rule":"r","time":"2023-05-25T13:44:05.478445995Z"}\n';
    expect(await postLikeFalco(`${url}/falco`, line)).toEqual({ status: 200, error: null });
    expect(await postLikeFalco(`${url}/busy`, line)).toEqual({ status: 503, error: null });
    expect(seen.at(-2)).toEqual({ method: 'POST', path: '/falco', type: 'application/json', body: line.trimEnd() });
  });

  it('keep_alive reuses one connection; without it every alert opens one', async () => {
    const before = connections;
    for (let i = 0; i < 3; i++) await postLikeFalco(url + '/', '{}', { agent: new http.Agent({ keepAlive: false }) });
    expect(connections - before).toBe(3);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const mid = connections;
    for (let i = 0; i < 3; i++) await postLikeFalco(url + '/', '{}', { keepAlive: true, agent });
    expect(connections - mid).toBe(1);
    agent.destroy();
  });

  it('a refused connection loses the alert: an error value, no throw', async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const r = await postLikeFalco(`http://127.0.0.1:${port}/`, '{}', { timeoutMs: 2000 });
    expect(r.status).toBeNull();
    expect(r.error).toMatch(/ECONNREFUSED/);
    expect((await postLikeFalco('not a url', '{}')).error).toMatch(/invalid URL/);
  });
});

describe('falcoJsonLine', () => {
  it('writes keys alphabetically with exact big integers', () => {
    const line = falcoJsonLine({ rule: 'r', priority: 'Notice', output_fields: { 'evt.time': new LosslessNumber('1685022245478445995') }, time: '2023-05-25T13:44:05.478445995Z' });
    expect(line).toBe('{"output_fields":{"evt.time":1685022245478445995},"priority":"Notice","rule":"r","time":"2023-05-25T13:44:05.478445995Z"}');
    const withNow = parse(falcoJsonLine({ rule: 'r', priority: 'Debug' })) as Record<string, string>;
    expect(withNow['time']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);
  });
});
