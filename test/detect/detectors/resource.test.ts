/**
 * The resource_deviation detector through the real engine with the built-in rules: the deviation
 * signal alert the metrics source submits (src/resource/signal.ts) is mapped by the default
 * mapping, suppressed like any signal (CI workloads), correlated with the container's other
 * signals, dedup'd per container.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { withEnrichment, type Alert, type FieldValue } from '../../../src/alert.js';
import { ManualClock } from '../../../src/clock.js';
import { DetectionEngine } from '../../../src/detect/engine.js';
import { buildDetectors } from '../../../src/detect/registry.js';
import { loadRulesFile } from '../../../src/detect/rules/load.js';
import { RESOURCE_RULES } from '../../../src/detect/detectors/resource.js';
import { silentLogger } from '../../../src/logger.js';
import { Metrics } from '../../../src/metrics.js';
import { deviationAlert, RESOURCE_SIGNAL_RULE } from '../../../src/resource/signal.js';
import { emptyMeta, type MetricDeviation, type ResourceMetric, type Verdict } from '../../../src/resource/types.js';
import { alertAt, T0 } from '../helpers.js';

const CID = 'abc123def456';
const S = 1_000_000_000n;

function engine(yaml?: string): { engine: DetectionEngine; metrics: Metrics } {
  const rules = loadRulesFile(null);
  const r = yaml === undefined ? rules : loadRulesFile(writeTmp(yaml));
  const metrics = new Metrics({ collectDefault: false });
  return { engine: new DetectionEngine({ rules: r, detectors: buildDetectors(r), logger: silentLogger(), metrics, clock: new ManualClock(0) }), metrics };
}

function writeTmp(text: string): string {
  const p = join(mkdtempSync(join(tmpdir(), 'fc-res-rules-')), 'rules.yaml');
  writeFileSync(p, text);
  return p;
}

interface Dev {
  t: number;
  metric?: ResourceMetric;
  ratio?: number;
  value?: number;
  baseline?: number;
  verdict?: Verdict;
  siblings?: number;
  showing?: number;
  /** Seconds the deviation has lasted at t. */
  held?: number;
  container?: string;
  namespace?: string;
  pod?: string;
  extra?: MetricDeviation[];
}

function dev(d: Dev): Alert {
  const timeNs = T0 + BigInt(Math.round(d.t * 1e9));
  const metric = d.metric ?? 'cpu';
  const m: MetricDeviation = {
    metric,
    value: d.value ?? 1.6,
    baseline: d.baseline ?? 0.2,
    peak: 0.3,
    ratio: d.ratio ?? 8,
    z: 40,
    sinceNs: timeNs - BigInt(d.held ?? 30) * S,
    siblings: d.siblings ?? 2,
    siblingsShowing: d.showing ?? 0,
    siblingValues: ['api-6b8f9d7c5-aaaaa=0.21', 'api-6b8f9d7c5-bbbbb=0.19'].slice(0, d.siblings ?? 2),
    verdict: d.verdict ?? 'lone',
  };
  return deviationAlert(
    {
      timeNs,
      meta: { ...emptyMeta((d.container ?? CID).padEnd(64, '0')), image: 'registry.example.com/shop/api', tag: '3.1', namespace: d.namespace ?? 'shop', pod: d.pod ?? 'api-6b8f9d7c5-q9zt2', containerName: 'api' },
      group: 'workload:shop/api/api',
      metrics: [m, ...(d.extra ?? [])],
      source: 'cgroup_v2',
    },
    { hostname: 'node-1', origin: { kind: 'metrics', component: 'source/metrics' } },
  );
}

const TMPFS = 'Companion signal: execution from tmpfs';
const TOKEN = 'Companion signal: service account token read';
const CONNECT = 'Companion signal: outbound connection from container';
const proc = (exe: string): Record<string, FieldValue> => ({ 'proc.pid': 4242, 'proc.ppid': 1, 'proc.name': exe.split('/').pop() ?? exe, 'proc.exepath': exe, 'k8s.ns.name': 'shop', 'k8s.pod.name': 'api-6b8f9d7c5-q9zt2' });

function run(e: DetectionEngine, alerts: Alert[]): Alert[] {
  return alerts.flatMap((a) => [...e.process(a).detections]);
}

async function metric(m: Metrics, re: RegExp): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => re.test(l));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('resource_deviation detector', () => {
  it('the default mapping turns the metrics source alert into a resource_deviation signal', () => {
    const a = dev({ t: 0 });
    expect(a.rule).toBe(RESOURCE_SIGNAL_RULE);
    const { engine: e, metrics } = engine();
    run(e, [a]);
    return expect(metric(metrics, /^falco_companion_signals_total\{kind="resource_deviation"\}/)).resolves.toBe(1);
  });

  it('CPU ×8 within a minute of an execution from /dev/shm: Critical, T1496, both signals as evidence, whatever the siblings do', () => {
    const { engine: e } = engine();
    const out = run(e, [alertAt(0, TMPFS, proc('/dev/shm/kworkerds')), dev({ t: 75, held: 30, verdict: 'load', showing: 2 })]);
    expect(out).toHaveLength(1);
    const d = out[0] as Alert;
    expect(d.rule).toBe(RESOURCE_RULES.precursor);
    expect(d.priority).toBe('Critical');
    expect(d.tags).toEqual(expect.arrayContaining(['T1496', 'mitre_impact']));
    expect(d.output).toContain('CPU ×8 (1.60 vs baseline 0.20)');
    expect(d.output).toContain('45 s after an execution from /dev/shm/kworkerds');
    expect(d.companion['resource.precursor']).toBe('tmpfs_exec');
    expect(d.companion['resource.sibling_values']).toContain('api-6b8f9d7c5-aaaaa=0.21');
    expect(String(d.companion['evidence'])).toMatch(/execution from tmpfs; .* resource usage deviation$/);
    expect(d.outputFields?.['container.id']).toBe(CID);
    expect(d.outputFields?.['k8s.pod.name']).toBe('api-6b8f9d7c5-q9zt2');
    expect(String(d.companion['resource.response'])).toMatch(/miners/);
  });

  it('outbound bytes ×20 after a service-account token read: exfiltration tags and the token technique', () => {
    const { engine: e } = engine();
    const out = run(e, [alertAt(0, TOKEN, proc('/usr/bin/cat')), dev({ t: 200, metric: 'net_tx_bytes', ratio: 20, value: 10_485_760, baseline: 524_288 })]);
    expect(out).toHaveLength(1);
    expect(out[0]?.priority).toBe('Error');
    expect(out[0]?.tags).toEqual(expect.arrayContaining(['T1041', 'T1048', 'T1528', 'mitre_exfiltration']));
    expect(out[0]?.output).toContain('outbound bytes ×20');
    expect(out[0]?.output).toContain('after a service-account token read by /usr/bin/cat');
  });

  it('a lone replica without a precursor: Warning, with the siblings in the message', () => {
    const { engine: e } = engine();
    const out = run(e, [dev({ t: 0 })]);
    expect(out.map((a) => [a.rule, a.priority])).toEqual([[RESOURCE_RULES.lone, 'Warning']]);
    expect(out[0]?.output).toContain('0 of 2 sibling replica(s) show it (api-6b8f9d7c5-aaaaa=0.21, api-6b8f9d7c5-bbbbb=0.19)');
  });

  it('without a precursor only CPU and outbound traffic count, from lone_min_ratio (5) up: a leaking replica or a sticky client is no page', () => {
    const { engine: e } = engine();
    const mem = (t: number, ratio: number, extra: MetricDeviation[] = []): Alert => dev({ t, metric: 'memory', ratio, value: 900_000_000, baseline: 200_000_000, extra, container: `m${t}`.padEnd(12, '0') });
    const cpu = (ratio: number): MetricDeviation => ({ metric: 'cpu', value: 0.6, baseline: 0.2, peak: 0.3, ratio, z: 9, sinceNs: T0, siblings: 2, siblingsShowing: 0, siblingValues: [], verdict: 'lone' });
    expect(run(e, [mem(0, 4.5)])).toEqual([]); // memory alone
    expect(run(e, [dev({ t: 1, ratio: 4, container: 'c00000000001' })])).toEqual([]); // CPU ×4 < 5
    const out = run(e, [mem(2, 4.5, [cpu(6)])]);
    expect(out).toHaveLength(1);
    expect(out[0]?.companion['resource.metric']).toBe('cpu');
    expect(out[0]?.companion['resource.ratio']).toBe(6);
    expect(out[0]?.output).toContain('CPU ×6 (0.60 vs baseline 0.20)');
    expect(out[0]?.output).toContain('0 of 2 sibling replica(s) show it;');
    // With a precursor every metric counts.
    const p = engine();
    expect(run(p.engine, [alertAt(0, TMPFS, { ...proc('/dev/shm/x'), 'container.id': 'm50000000000' }), mem(50, 4.5)]).map((a) => a.rule)).toEqual([RESOURCE_RULES.precursor]);
  });

  it('load (most siblings show it) without a precursor: no detection', () => {
    const { engine: e } = engine();
    expect(run(e, [dev({ t: 0, verdict: 'load', showing: 2 }), dev({ t: 1, verdict: 'load', showing: 2, container: 'fedcba987654' })])).toEqual([]);
  });

  it('a single instance: only from single_min_ratio up, at Notice', () => {
    const { engine: e } = engine();
    expect(run(e, [dev({ t: 0, verdict: 'single', siblings: 0, ratio: 5 })])).toEqual([]);
    const out = run(e, [dev({ t: 1, verdict: 'single', siblings: 0, ratio: 12, container: 'fedcba987654' })]);
    expect(out.map((a) => [a.rule, a.priority])).toEqual([[RESOURCE_RULES.single, 'Notice']]);
    expect(out[0]?.output).toContain('no sibling replica on this node');
  });

  it('a precursor arriving during the deviation escalates the lone detection at once', () => {
    const { engine: e } = engine();
    const out = run(e, [dev({ t: 0, held: 30 }), alertAt(20, TMPFS, proc('/tmp/.x/xmrig'))]);
    expect(out.map((a) => a.priority)).toEqual(['Warning', 'Critical']);
    expect(out[1]?.output).toContain('50 s into it: an execution from /tmp/.x/xmrig');
  });

  it('a precursor processed late (event time before the deviation) counts; one long after the signalled deviation does not', () => {
    const late = engine();
    const out = run(late.engine, [dev({ t: 60, held: 30 }), alertAt(10, TMPFS, proc('/dev/shm/late'))]);
    expect(out.map((a) => [a.rule, a.priority])).toEqual([
      [RESOURCE_RULES.lone, 'Warning'],
      [RESOURCE_RULES.precursor, 'Critical'],
    ]);
    expect(out[1]?.output).toContain('20 s after an execution from /dev/shm/late');
    const old = engine();
    expect(run(old.engine, [dev({ t: 0, held: 30, verdict: 'load', showing: 2 }), alertAt(300, TMPFS, proc('/dev/shm/x'))])).toEqual([]);
  });

  it('a precursor older than follow_window, or in another container, does not count', () => {
    const { engine: e } = engine();
    const out = run(e, [alertAt(0, TMPFS, proc('/dev/shm/x')), alertAt(700, TMPFS, { ...proc('/dev/shm/y'), 'container.id': 'fedcba987654' }), dev({ t: 800, held: 60, verdict: 'load', showing: 2 })]);
    expect(out).toEqual([]);
  });

  it('a connection to a never-seen destination is a precursor (first-seen egress), a known one is not', () => {
    const conn = (t: number, fresh: boolean): Alert =>
      withEnrichment(alertAt(t, CONNECT, { ...proc('/usr/bin/app'), 'fd.sip': '203.0.113.9', 'fd.sport': 3333, 'fd.cip': '10.0.0.5', 'fd.cport': 40000, 'fd.l4proto': 'tcp' }), { 'dest.new_for_image': fresh, 'dest.learning': false });
    const known = engine();
    expect(run(known.engine, [conn(0, false), dev({ t: 60, verdict: 'load', showing: 2 })])).toEqual([]);
    const fresh = engine();
    const out = run(fresh.engine, [conn(0, true), dev({ t: 60, verdict: 'load', showing: 2 })]).filter((a) => a.rule === RESOURCE_RULES.precursor);
    expect(out).toHaveLength(1);
    expect(out[0]?.output).toContain('after a connection to never-seen 203.0.113.9:3333');
  });

  it('CI/CD workloads are exempt by default (counted as ci_workload)', async () => {
    const { engine: e, metrics } = engine();
    expect(run(e, [alertAt(0, TMPFS, { ...proc('/tmp/build/a.out'), 'k8s.ns.name': 'gitlab-runner' }), dev({ t: 30, namespace: 'gitlab-runner', pod: 'runner-abc-project-1-concurrent-0' })])).toEqual([]);
    expect(await metric(metrics, /^falco_companion_suppressed_total\{detector="resource_deviation",reason="ci_workload"\}/)).toBeGreaterThanOrEqual(1);
  });

  it('one detection per container incident (repeats folded), several metrics in one', async () => {
    const { engine: e, metrics } = engine();
    const tx: MetricDeviation = { metric: 'net_tx_bytes', value: 9e6, baseline: 1e5, peak: 2e5, ratio: 90, z: 99, sinceNs: T0, siblings: 2, siblingsShowing: 0, siblingValues: [], verdict: 'lone' };
    const out = run(e, [dev({ t: 0, extra: [tx] }), dev({ t: 200 })]);
    expect(out).toHaveLength(1);
    expect(out[0]?.tags).toEqual(expect.arrayContaining(['T1496', 'T1041']));
    expect(String(out[0]?.companion['resource.metrics'])).toMatch(/^cpu ×8 .*; net_tx_bytes ×90/);
    expect(await metric(metrics, /^falco_companion_detections_folded_total\{detector="resource_deviation"\}/)).toBe(1);
  });

  it('settings: lone off and a narrower precursor list', () => {
    const { engine: e } = engine('version: 1\nextends: builtin\ndetectors:\n  resource_deviation:\n    lone: false\n    precursors: [sa_token_read]\n');
    expect(run(e, [alertAt(0, TMPFS, proc('/dev/shm/x')), dev({ t: 60 })])).toEqual([]);
  });
});
