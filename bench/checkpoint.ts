/**
 * Detection state at full budgets, for the checkpoint row of `npm run bench`: every shipped detector
 * (default settings) stepped with realistic Signals (the shipped signal-alert fixture mapped by the
 * built-in rules, varied by container, process, destination and time, each with its own alert and
 * enrichment record as in the daemon) until its bounds are full, plus the incidents at
 * `max_incidents`. What the checkpoint then encodes and writes is what a busy node would hold.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { alertFromJson, formatTimeNs, type Alert, type EnrichValue } from '../src/alert.js';
import { compileMapping } from '../src/detect/mapping.js';
import { Notifier, type NotifyState } from '../src/detect/notify.js';
import { buildDetectors } from '../src/detect/registry.js';
import { loadRulesFile } from '../src/detect/rules/load.js';
import type { Finding, Signal, SignalKind } from '../src/detect/types.js';
import { DEST, IMAGE } from '../src/enrich/keys.js';
import { parse } from '../src/json/lossless.js';
import { repoRoot } from './inputs.js';

const T0 = 1_785_316_800_000_000_000n;
const S = 1_000_000_000n;

export interface FullState {
  /** Detector id → its state at full budget; `engine`: the incidents. */
  readonly parts: { id: string; state: unknown }[];
  readonly signals: number;
  readonly fillMs: number;
}

function templates(): Map<string, Signal> {
  const rules = loadRulesFile(null);
  const mapping = compileMapping(rules.signals, { podLabelKeys: [] });
  const lines = readFileSync(resolve(repoRoot(), 'test', 'fixtures', 'signal-alerts.jsonl'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const out = new Map<string, Signal>();
  for (const l of lines) for (const s of mapping.mapAlert(alertFromJson(parse(l), { kind: 'replay', component: 'bench' }))) if (!out.has(s.kind)) out.set(s.kind, s);
  return out;
}

/** A variant of a template signal: its own alert (time, enrichment record), container, process and peer. */
function variant(tpl: Signal, o: { ns: bigint; container: string; pid: number; peer?: string; port?: number; companion?: Record<string, EnrichValue>; keys?: Record<string, string | boolean> }): Signal {
  const alert: Alert = Object.freeze({
    ...tpl.alert,
    time: formatTimeNs(o.ns),
    timeNs: o.ns,
    companion: Object.freeze({ [IMAGE.repository]: tpl.imageRepository ?? 'registry.example.com/shop/web', [IMAGE.tag]: '1.4.2', [IMAGE.firstSeen]: '2026-07-01T00:00:00.000000000Z', [IMAGE.registry]: 'registry.example.com', 'container.runtime': 'docker', ...o.companion }),
  });
  const peer = o.peer ?? tpl.net.remoteIp;
  return {
    ...tpl,
    timeNs: o.ns,
    containerId: o.container,
    proc: { ...tpl.proc, pid: o.pid, ppid: o.pid - 1, sid: o.pid },
    net: { ...tpl.net, remoteIp: peer, serverIp: tpl.kind === 'connect' ? peer : tpl.net.serverIp, clientIp: tpl.kind === 'accept' ? peer : tpl.net.clientIp, remotePort: o.port ?? tpl.net.remotePort, serverPort: tpl.kind === 'connect' ? (o.port ?? tpl.net.serverPort) : tpl.net.serverPort },
    keys: o.keys ? { ...tpl.keys, ...o.keys } : tpl.keys,
    alert,
  };
}

const cid = (i: number): string => (0x3f2a00000000 + i * 7919).toString(16).slice(-12);
const ip = (i: number): string => `203.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** Fill every shipped detector (default settings) and the incidents to their bounds. */
export function fullStates(): FullState {
  const t0 = performance.now();
  const tpl = templates();
  const get = (k: SignalKind): Signal => {
    const s = tpl.get(k);
    if (!s) throw new Error(`no template for ${k}`);
    return s;
  };
  const rules = loadRulesFile(null);
  const dets = new Map(buildDetectors(rules).map((d) => [d.id, d]));
  const parts: { id: string; state: unknown }[] = [];
  let signals = 0;
  const run = (id: string, gen: (step: (s: Signal) => void) => void): void => {
    const d = dets.get(id);
    if (!d) throw new Error(`no detector ${id}`);
    const st = d.init();
    let now = 0n;
    gen((s) => {
      if (s.timeNs > now) now = s.timeNs;
      d.step(st, s, now);
      signals++;
    });
    parts.push({ id, state: st });
  };
  const cfg = (id: string, key: string): number => Number(rules.detectors[id]?.[key]);

  // socket_filter: every arm slot (raw socket + filter per process), 2 context signals per
  // container, and the peer budget spread over the containers (each a fresh trigger).
  run('socket_filter', (step) => {
    const arms = cfg('socket_filter', 'max_arms');
    const peers = cfg('socket_filter', 'max_total_peers');
    let t = 0;
    for (let i = 0; i < arms; i++) {
      const c = cid(i);
      const pid = 10_000 + i;
      step(variant(get('tmpfs_exec'), { ns: T0 + BigInt(t++) * S, container: c, pid }));
      step(variant(get('proc_rename'), { ns: T0 + BigInt(t++) * S, container: c, pid }));
      step(variant(get('raw_socket'), { ns: T0 + BigInt(t++) * S, container: c, pid }));
      step(variant(get('filter_attach'), { ns: T0 + BigInt(t++) * S, container: c, pid }));
    }
    for (let j = 0; j < peers; j++) {
      const i = j % arms;
      step(variant(get('accept'), { ns: T0 + BigInt(t++) * S, container: cid(i), pid: 10_000 + i, peer: ip(j), port: 42391 }));
    }
  });

  // beacon: every point of the total budget, spread over every series slot, one a minute.
  run('beacon', (step) => {
    const series = cfg('beacon', 'max_series');
    const per = Math.floor(cfg('beacon', 'max_total_points') / series);
    for (let p = 0; p < per; p++)
      for (let i = 0; i < series; i++) {
        step(variant(get('connect'), { ns: T0 + BigInt(p * 60) * S + BigInt(i) * 1000n, container: cid(i % 2000), pid: 20_000 + i, peer: ip(i), port: 8443, companion: { [DEST.class]: 'public', [DEST.newForImage]: false, [DEST.asn]: 'AS64500', [DEST.asOrg]: 'Example Transit' } }));
      }
  });

  run('first_seen_egress', (step) => {
    const keys = cfg('first_seen_egress', 'max_keys');
    for (let i = 0; i < keys; i++) step(variant(get('connect'), { ns: T0 + BigInt(i) * S, container: cid(i % 2000), pid: 30_000 + i, peer: ip(i), port: 443, companion: { [DEST.class]: 'public', [DEST.newForImage]: true, [DEST.learning]: false, [DEST.asn]: 'AS64500', [DEST.asOrg]: 'Example Transit' } }));
  });

  // escape_chain: three indicators per container slot, inside its window.
  run('escape_chain', (step) => {
    const n = cfg('escape_chain', 'max_containers');
    for (let i = 0; i < n; i++)
      for (const [j, k] of ['mount', 'namespace_change', 'core_pattern'].entries()) step(variant({ ...get('escape'), subtype: k }, { ns: T0 + BigInt(i * 10 + j) * S, container: cid(i), pid: 40_000 + i }));
  });

  run('knock', (step) => {
    const n = cfg('knock', 'max_rules');
    for (let i = 0; i < n; i++) step(variant(get('firewall_exec'), { ns: T0 + BigInt(i) * 100_000_000n, container: cid(i % 1000), pid: 50_000 + i, keys: { 'fw.src': ip(i) } }));
  });

  run('k8s_spread', (step) => {
    const n = cfg('k8s_spread', 'max_containers');
    for (let i = 0; i < n; i++) step(variant(get('sa_token_read'), { ns: T0 + BigInt(i) * S, container: cid(i), pid: 60_000 + i }));
  });

  run('unexpected_image', (step) => {
    const n = cfg('unexpected_image', 'max_containers');
    for (let i = 0; i < n; i++) step(variant(get('container_start'), { ns: T0 + BigInt(i) * S, container: cid(i), pid: 70_000 + i }));
  });

  // The incidents at max_incidents, each with one escalation (two techniques, folded counts).
  const notifier = new Notifier({ renotifyMs: rules.output.renotifyMs, incidentIdleMs: rules.output.incidentIdleMs, maxIncidents: rules.output.maxIncidents });
  const ev = get('raw_socket');
  for (let i = 0; i < rules.output.maxIncidents; i++) {
    const s = variant(ev, { ns: T0 + BigInt(i) * S, container: cid(i), pid: 80_000 + i });
    const f: Finding = { detector: 'socket_filter', rule: 'r', priority: 'Warning', score: 0.7, message: 'm', mitre: ['T1205.002', 'T1205'], key: `k${i}`, evidence: [s], fields: {}, timeNs: s.timeNs };
    notifier.decide(f, f.timeNs);
    notifier.decide({ ...f, priority: 'Critical', timeNs: f.timeNs + 1n }, f.timeNs + 1n);
    notifier.decide({ ...f, timeNs: f.timeNs + 2n }, f.timeNs + 2n);
  }
  const memory: { maxNs: bigint; first: Map<string, bigint>; notify: NotifyState } = { maxNs: T0, first: new Map([...dets.keys()].map((k) => [k, T0])), notify: notifier.state };
  parts.push({ id: 'engine', state: memory });
  return { parts, signals, fillMs: performance.now() - t0 };
}
