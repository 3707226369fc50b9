/**
 * Beacon scope and priority (#13 item 1): only destinations that leave the cluster are scored by
 * default; in-cluster ones on opt-in; a scraper's fan-out is one informational finding; the
 * priority follows the destination's place in the image's egress baseline, the port, the
 * program and what else happened in the container.
 */
import { describe, expect, it } from 'vitest';
import type { EnrichValue } from '../../../src/alert.js';
import { BEACON_FANOUT_RULE, BEACON_RULE, createBeaconDetector, type BeaconSettings } from '../../../src/detect/detectors/beacon.js';
import { discoverCluster, type DetectorEnv } from '../../../src/detect/cluster.js';
import { parseCidr } from '../../../src/net/cidr.js';
import type { Signal } from '../../../src/detect/types.js';
import { rng, runDetector, sig } from '../../support/signals.js';

const ENV: DetectorEnv = {
  cluster: discoverCluster({
    config: { discover: true, pod_cidrs: [], service_cidrs: [], node_cidrs: ['192.168.10.0/24'], api_servers: [] },
    env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' },
  }),
};

interface S {
  dest: string;
  port?: number;
  every?: number;
  jitter?: number;
  n?: number;
  start?: number;
  exe?: string;
  name?: string;
  container?: string;
  namespace?: string;
  image?: string;
  companion?: (i: number) => Record<string, EnrichValue>;
  seed?: number;
}
function beacon(o: S): Signal[] {
  const r = rng(o.seed ?? 3);
  const out: Signal[] = [];
  let t = o.start ?? 0;
  for (let i = 0; i < (o.n ?? 40); i++) {
    out.push(
      sig({ kind: 'connect', t, dest: o.dest, port: o.port ?? 443, exe: o.exe ?? '/usr/local/bin/worker', name: o.name, container: o.container ?? 'c1', namespace: o.namespace ?? 'shop', image: o.image ?? 'registry.example.com/shop/worker', client: '10.244.1.17', companion: o.companion?.(i) ?? {} }),
    );
    t += (o.every ?? 60) * (1 + (r() * 2 - 1) * (o.jitter ?? 0.05));
  }
  return out;
}
const merge = (...xs: Signal[][]): Signal[] => xs.flat().sort((a, b) => (a.timeNs < b.timeNs ? -1 : a.timeNs > b.timeNs ? 1 : 0));
const run = (sigs: Signal[], o: Partial<BeaconSettings> = {}) => runDetector(createBeaconDetector(o, ENV), sigs);
const known = (i: number): Record<string, EnrichValue> => ({ 'dest.new_for_image': i === 0 && false, 'dest.learning': false });
const fresh = (i: number): Record<string, EnrichValue> => ({ 'dest.new_for_image': i === 0, 'dest.learning': false });

describe('beacon scope: destinations that leave the cluster', () => {
  it('scores public addresses and private ones outside the cluster networks, not pods, services or nodes', () => {
    for (const [dest, scored] of [
      ['203.0.113.50', true],
      ['10.20.30.40', true], // private, outside pod (learned 10.244/16), service (10.96/12) and node networks
      ['10.96.12.7', false], // service network around KUBERNETES_SERVICE_HOST
      ['10.244.3.9', false], // pod network learned from the client address of the connects
      ['192.168.10.12', false], // node network (config)
      ['169.254.169.254', false], // cloud metadata
    ] as const) {
      const { findings, state } = run(beacon({ dest }));
      expect(findings.length > 0, dest).toBe(scored);
      if (!scored && dest !== '169.254.169.254') expect(state.internal, dest).toBeGreaterThan(0); // metadata: a skipped class
    }
  });

  it('learns pod networks as bounded prefixes of the client addresses it sees', () => {
    const { state } = run(beacon({ dest: '203.0.113.50', n: 3 }), { scope: { learn_prefix_v4: 16 } as BeaconSettings['scope'] });
    expect([...state.learned.entries()].map(([k]) => k)).toEqual(['10.244.0.0/16']);
    const off = run(beacon({ dest: '10.244.3.9' }), { scope: { learn: false } as BeaconSettings['scope'] });
    expect(off.findings.length).toBeGreaterThan(0); // without learning the pod address is "private, outside"
  });

  it('scores in-cluster destinations when opted in by namespace, image, CIDR or for everyone', () => {
    const svc = beacon({ dest: '10.96.12.7' });
    expect(run(svc).findings).toEqual([]);
    expect(run(svc, { scope: { internal_namespaces: ['sh*'] } as unknown as BeaconSettings['scope'] }).findings.length).toBeGreaterThan(0);
    expect(run(svc, { scope: { internal_images: ['registry.example.com/shop/*'] } as unknown as BeaconSettings['scope'] }).findings.length).toBeGreaterThan(0);
    expect(run(svc, { scope: { internal_cidrs: [parseCidr('10.96.12.0/24')] } as unknown as BeaconSettings['scope'] }).findings.length).toBeGreaterThan(0);
    expect(run(svc, { scope: { internal: true } as BeaconSettings['scope'] }).findings.length).toBeGreaterThan(0);
    expect(run(svc, { scope: { internal_namespaces: ['monitoring'] } as unknown as BeaconSettings['scope'] }).findings).toEqual([]);
  });

  it('makes a program polling many destinations on one cadence one informational fan-out finding, never one per target', () => {
    const targets = Array.from({ length: 12 }, (_, i) => beacon({ dest: `203.0.113.${10 + i}`, every: 30, jitter: 0.01, n: 80, start: i * 0.05, seed: i + 1, exe: '/bin/blackbox_exporter' }));
    const { findings } = run(merge(...targets));
    expect(findings.map((f) => [f.rule, f.priority])).toEqual([[BEACON_FANOUT_RULE, 'Informational']]);
    expect(findings[0]?.fields['beacon.fanout_targets']).toBeGreaterThanOrEqual(4);
    // A beacon of the same program on another cadence is still a beacon.
    const odd = beacon({ dest: '198.51.100.99', every: 300, jitter: 0.1, n: 40, exe: '/bin/blackbox_exporter' });
    expect(run(merge(...targets, odd)).findings.map((f) => f.rule)).toEqual(expect.arrayContaining([BEACON_FANOUT_RULE, BEACON_RULE]));
  });
});

describe('beacon priority: provenance, port, program, container', () => {
  const prio = (o: S, settings: Partial<BeaconSettings> = {}) => run(beacon(o), settings).findings.map((f) => f.priority);

  it('a destination the image had since its learning period is Notice; a new one Warning; an unknown one Warning', () => {
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, companion: known })).toEqual(['Notice']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, companion: (i) => ({ 'dest.new_for_image': i === 0, 'dest.learning': true }) })).toEqual(['Notice']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, companion: fresh })).toEqual(['Warning']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2 })).toEqual(['Warning']);
  });

  it('raises a new destination for a perfect cadence and a non-standard port, any for suspicious signals; intel is Critical', () => {
    expect(prio({ dest: '203.0.113.50', jitter: 0, companion: fresh })).toEqual(['Error']); // score ≥ 0.98
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, port: 8443, companion: fresh })).toEqual(['Error']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, port: 8443, companion: known })).toEqual(['Notice']); // ports do not raise known pollers
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, exe: '/dev/shm/.w', companion: known })).toEqual(['Warning']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, exe: '/bin/kworker', name: 'kworker', companion: known })).toEqual(['Warning']);
    expect(prio({ dest: '203.0.113.50', jitter: 0.2, companion: (i) => ({ ...known(i), 'dest.intel': 'feodo' }) })).toEqual(['Critical']);
    // a shell on a socket in the same container hours before
    const sus = merge([sig({ kind: 'shell_socket', t: -3600, container: 'c1' })], beacon({ dest: '203.0.113.50', jitter: 0.2, companion: known }));
    expect(run(sus).findings.map((f) => [f.priority, f.fields['beacon.suspicious']])).toEqual([['Warning', 'shell_socket']]);
    // busybox applet renames are not suspicious; a kernel-thread disguise is
    const applet = merge([sig({ kind: 'proc_rename', t: -60, container: 'c1', exe: '/bin/busybox', keys: { new_name: 'sleep' } })], beacon({ dest: '203.0.113.50', jitter: 0.2, companion: known }));
    expect(run(applet).findings.map((f) => f.priority)).toEqual(['Notice']);
    const disguise = merge([sig({ kind: 'proc_rename', t: -60, container: 'c1', keys: { new_name: 'kworker/0:1' } })], beacon({ dest: '203.0.113.50', jitter: 0.2, companion: known }));
    expect(run(disguise).findings.map((f) => f.priority)).toEqual(['Warning']);
  });

  it('keeps the provenance of a poller whose service moved to another address (same program, port and cadence)', () => {
    const before = beacon({ dest: '104.18.30.80', n: 60, every: 60, jitter: 0.01, companion: known });
    const after = beacon({ dest: '104.18.31.80', n: 60, every: 60, jitter: 0.01, start: 3700, seed: 9, companion: fresh });
    const f = run(merge(before, after)).findings.filter((x) => x.fields['beacon.dest'] === '104.18.31.80');
    expect(f.map((x) => [x.priority, x.fields['beacon.origin']])).toEqual([['Notice', 'known_rotated']]);
  });

  it('does not score download bursts (several connections in most seconds)', () => {
    const burst: Signal[] = [];
    for (let i = 0; i < 120; i++) burst.push(sig({ kind: 'connect', t: i * 0.25, dest: '151.101.2.132', port: 80, client: '10.244.1.17' }));
    expect(run(burst).state.scored).toBe(0);
  });
});
