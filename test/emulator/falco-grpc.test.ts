import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator, timeOfDay } from '../../src/emulator/falco-grpc.js';
import { loadFalcoProtos } from '../../src/proto-path.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';
import { shellAlertJson } from '../support/falco-alerts.js';
import { until, wait } from '../support/wait.js';

const protos = loadFalcoProtos();
type Resp = Record<string, unknown> & { output_fields: Record<string, string> };

const alert = shellAlertJson;


function client(address: string, creds = grpc.credentials.createInsecure(), opts: grpc.ChannelOptions = {}): grpc.Client {
  return new grpc.Client(address, creds, opts);
}

function version(c: grpc.Client): Promise<Record<string, unknown>> {
  const m = protos.version;
  return new Promise((resolve, reject) =>
    c.makeUnaryRequest(m.path, m.requestSerialize, (b: Buffer) => m.responseDeserialize(b) as Record<string, unknown>, {}, { deadline: Date.now() + 3000 }, (err, v) =>
      err ? reject(err) : resolve(v as Record<string, unknown>),
    ),
  );
}

interface SubHandle {
  readonly got: Resp[];
  request(): void;
  status: Promise<grpc.StatusObject>;
  call: grpc.ClientDuplexStream<object, Resp>;
}
function sub(c: grpc.Client, serialize: (v: object) => Buffer = protos.sub.requestSerialize): SubHandle {
  const m = protos.sub;
  const call = c.makeBidiStreamRequest(m.path, serialize, (b: Buffer) => m.responseDeserialize(b) as Resp, {}) as grpc.ClientDuplexStream<object, Resp>;
  const got: Resp[] = [];
  call.on('data', (r: Resp) => got.push(r));
  call.on('error', () => undefined);
  const status = new Promise<grpc.StatusObject>((r) => call.on('status', r));
  return { got, request: () => call.write({}), status, call };
}

function get(c: grpc.Client, serialize: (v: object) => Buffer = protos.get.requestSerialize): Promise<{ got: Resp[]; status: grpc.StatusObject }> {
  const m = protos.get;
  const call = c.makeServerStreamRequest(m.path, serialize, (b: Buffer) => m.responseDeserialize(b) as Resp, {}, {});
  const got: Resp[] = [];
  call.on('data', (r: Resp) => got.push(r));
  call.on('error', () => undefined);
  return new Promise((resolve) => call.on('status', (status) => resolve({ got, status })));
}

describe('FalcoGrpcEmulator over a unix socket', () => {
  let dir: string;
  let emu: FalcoGrpcEmulator;
  let address: string;
  const clients: grpc.Client[] = [];
  const mk = (): grpc.Client => {
    const c = client(address);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-emu-'));
    emu = new FalcoGrpcEmulator({ address: `unix://${join(dir, 'falco.sock')}`, version: '0.40.3' });
    ({ address } = await emu.start());
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await emu.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers falco.version.service/version with all 11 fields', async () => {
    const v = await version(mk());
    expect(v).toMatchObject({ version: '0.40.3', major: 0, minor: 40, patch: 3, prerelease: '', build: '', engine_major: 0 });
    expect(Object.keys(v).sort()).toEqual(
      ['build', 'engine_fields_checksum', 'engine_major', 'engine_minor', 'engine_patch', 'engine_version', 'major', 'minor', 'patch', 'prerelease', 'version'].sort(),
    );
    expect(v['engine_version']).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('sub writes only after a client request, everything queued, then waits for the next one', async () => {
    const s = sub(mk());
    for (let i = 0; i < 3; i++) emu.push(alert(i));
    await wait(150);
    expect(s.got).toHaveLength(0);
    expect(emu.queued()).toBe(3);
    s.request();
    await until(() => s.got.length === 3);
    expect(emu.queued()).toBe(0);
    emu.push(alert(3));
    emu.push(alert(4));
    await wait(150);
    expect(s.got).toHaveLength(3); // no request, no write
    expect(emu.queued()).toBe(2);
    s.request();
    await until(() => s.got.length === 5);
    expect(s.got.map((r) => r.output_fields['test.id'])).toEqual(['0', '1', '2', '3', '4']);
    s.call.end();
    expect((await s.status).code).toBe(grpc.status.OK);
  });

  it('sends output_fields as strings: <NA> for null, decimal numbers, evt.time as time of day; output is the whole JSON', async () => {
    const s = sub(mk());
    emu.push(alert(7, ',"big":12345678901234567890123,"ok":true'));
    s.request();
    await until(() => s.got.length === 1);
    const r = s.got[0] as Resp;
    expect(r.output_fields).toMatchObject({
      'evt.time': '13:44:05.478445995',
      'k8s.ns.name': '<NA>',
      'proc.pid': '1007',
      big: '12345678901234567890123',
      ok: 'true',
    });
    expect(r.output).toBe(alert(7, ',"big":12345678901234567890123,"ok":true'));
    expect(r['priority']).toBe(2);
    expect(r['source']).toBe('syscall');
    expect(r['source_deprecated']).toBe(0);
    expect(r['time']).toEqual({ seconds: '1685022245', nanos: 478445995 });
    expect(r['tags']).toEqual(['shell']);
    expect(r['hostname']).toBe('node-a');
    s.call.cancel();
  });

  it('get drains the shared queue and ends with OK', async () => {
    for (let i = 0; i < 5; i++) emu.push(alert(i));
    const r = await get(mk());
    expect(r.status.code).toBe(grpc.status.OK);
    expect(r.got).toHaveLength(5);
    expect(emu.queued()).toBe(0);
    const again = await get(mk());
    expect(again.got).toHaveLength(0);
  });

  it('two subscribers share one queue: each alert reaches exactly one', async () => {
    const a = sub(mk());
    const b = sub(mk());
    const ids = new Set<string>();
    for (let i = 0; i < 40; i++) {
      emu.push(alert(i));
      if (i % 2 === 0) a.request();
      else b.request();
      await wait(2);
    }
    a.request();
    b.request();
    await until(() => a.got.length + b.got.length === 40);
    for (const r of [...a.got, ...b.got]) ids.add(r.output_fields['test.id'] as string);
    expect(ids.size).toBe(40);
    expect(a.got.length).toBeGreaterThan(0);
    expect(b.got.length).toBeGreaterThan(0);
    a.call.cancel();
    b.call.cancel();
  });

  it('rejects malformed requests with INVALID_ARGUMENT', async () => {
    const garbage = (): Buffer => Buffer.from([0x0a, 0xff, 0xff]); // truncated length-delimited field
    const s = sub(mk(), garbage);
    s.request();
    expect((await s.status).code).toBe(grpc.status.INVALID_ARGUMENT);
    const g = await get(mk(), garbage);
    expect(g.status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(emu.stats().malformed).toBe(2);
  });

  it('abortStreams ends open streams with the given status and keeps the queue', async () => {
    const s = sub(mk());
    const before = emu.stats().requests;
    s.request();
    await until(() => emu.stats().requests > before); // the stream is open on the server
    emu.push(alert(1));
    expect(emu.abortStreams(grpc.status.UNAVAILABLE)).toBeGreaterThanOrEqual(1);
    expect((await s.status).code).toBe(grpc.status.UNAVAILABLE);
    expect(emu.queued()).toBe(1);
    const r = await get(mk());
    expect(r.got).toHaveLength(1);
  });

  it('passes pre-encoded bytes through (invalid UTF-8 reaches the client)', async () => {
    const bad = Buffer.from([0xff, 0xc3, 0x28]);
    emu.pushResponse(Buffer.concat([Buffer.from([0x10, 0x03, 0x22, 0x01, 0x72, 0x2a, bad.length]), bad]));
    const r = await get(mk());
    expect(r.got).toHaveLength(1);
    expect(r.got[0]?.['rule']).toBe('r');
  });

  it('a restart on the same socket path works and loses the queue, like Falco', async () => {
    emu.push(alert(1));
    await emu.stop();
    ({ address } = await emu.start());
    expect(emu.queued()).toBe(0);
    expect((await version(mk()))['version']).toBe('0.40.3');
  });
});

describe('FalcoGrpcEmulator over TCP with mandatory mTLS', () => {
  let certs: TestCerts;
  let emu: FalcoGrpcEmulator;
  let address: string;

  beforeAll(async () => {
    certs = makeTestCerts();
    emu = new FalcoGrpcEmulator({ address: '127.0.0.1:0', tls: { ca: certs.caCert, cert: certs.serverCert, key: certs.serverKey }, version: '0.39.2', jsonOutput: false });
    ({ address } = await emu.start());
  }, 30_000);
  afterAll(async () => {
    await emu?.stop();
    certs?.cleanup();
  });

  it('refuses to serve TCP without TLS', async () => {
    await expect(new FalcoGrpcEmulator({ address: '127.0.0.1:0' }).start()).rejects.toThrow(/mTLS/);
  });

  it('serves a client with a certificate signed by the CA', async () => {
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const creds = grpc.credentials.createSsl(readFileSync(certs.caCert), readFileSync(certs.clientKey), readFileSync(certs.clientCert));
    const c = client(address, creds, { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
    try {
      expect((await version(c))['version']).toBe('0.39.2');
      emu.push(alert(1));
      const r = await get(c);
      expect(r.got).toHaveLength(1);
      expect(r.got[0]?.output).toBe('13:44:05.478445995: Critical shell 1'); // jsonOutput: false → text line
    } finally {
      c.close();
    }
  });

  it('refuses a client without a certificate', async () => {
    const c = client(address, grpc.credentials.createSsl(readFileSync(certs.caCert)), { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' });
    try {
      await expect(version(c)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    } finally {
      c.close();
    }
  });
});

describe('timeOfDay', () => {
  it('formats ns as HH:MM:SS.nnnnnnnnn', () => {
    expect(timeOfDay(1685022245478445995n)).toBe('13:44:05.478445995');
    expect(timeOfDay(5n)).toBe('00:00:00.000000005');
  });
});
