/**
 * Build detector Signals from concise specs, for detector, engine and scenario tests.
 *
 *   sig({ kind: 'connect', t: 60, container: 'c1', dest: '203.0.113.7', port: 443 })
 *   sig({ kind: 'escape', subtype: 'mount', t: 1.5, container: 'c1' })
 *   sig({ kind: 'connect', t: 0, companion: { 'dest.new_for_image': true } })
 *
 * `t` is seconds after {@link BASE_NS} (fractions allowed), or an absolute bigint `ns`.
 */
import type { Alert, EnrichValue, FieldValue } from '../../src/alert.js';
import { COMPANION_RULES, type Signal, type SignalKind } from '../../src/detect/types.js';
import { BASE_NS, falcoAlert, secNs } from './falco-alerts.js';

export { BASE_NS, secNs };

export interface SignalSpec {
  kind: SignalKind;
  subtype?: string | null;
  /** Seconds after BASE_NS. */
  t?: number;
  /** Absolute time; wins over `t`. */
  ns?: bigint;
  rule?: string;
  /** container.id; null = host. Default `c1`. */
  container?: string | null;
  image?: string | null;
  tag?: string | null;
  digest?: string | null;
  namespace?: string | null;
  pod?: string | null;
  pid?: number;
  ppid?: number;
  exe?: string;
  name?: string;
  cmdline?: string;
  /** Remote peer (server for connect). */
  dest?: string | null;
  port?: number | null;
  domain?: string | null;
  /** Client (local) address of a connect; default 10.0.0.5. */
  client?: string;
  l4proto?: string;
  keys?: Record<string, FieldValue>;
  companion?: Record<string, EnrichValue>;
  /** Extra output_fields for the underlying alert. */
  fields?: Record<string, FieldValue>;
}

function defaultRule(kind: SignalKind, subtype: string | null): string {
  for (const [rule, m] of Object.entries(COMPANION_RULES)) {
    if (m.kind === kind && (m.subtype === undefined || m.subtype === subtype)) return rule;
  }
  return `Test signal: ${kind}${subtype ? `/${subtype}` : ''}`;
}

/** A Signal (and its Alert) from a spec. */
export function sig(spec: SignalSpec): Signal {
  const timeNs = spec.ns ?? BASE_NS + secNs(spec.t ?? 0);
  const subtype = spec.subtype ?? null;
  const container = spec.container === undefined ? 'c1' : spec.container;
  const image = spec.image === undefined ? 'registry.example.com/app' : spec.image;
  const rule = spec.rule ?? defaultRule(spec.kind, subtype);
  const dest = spec.dest ?? null;
  const port = spec.port ?? null;
  const outputFields: Record<string, FieldValue> = {
    'container.id': container ?? 'host',
    'container.image.repository': image,
    'container.image.tag': spec.tag ?? 'latest',
    'k8s.ns.name': spec.namespace ?? null,
    'k8s.pod.name': spec.pod ?? null,
    'proc.pid': spec.pid ?? 100,
    'proc.exepath': spec.exe ?? '/usr/bin/app',
    'proc.name': spec.name ?? (spec.exe ?? '/usr/bin/app').split('/').pop() ?? 'app',
    'proc.cmdline': spec.cmdline ?? spec.name ?? 'app',
    ...(dest !== null ? { 'fd.sip': dest, 'fd.sport': port, 'fd.cip': spec.client ?? '10.0.0.5', 'fd.cport': 40000, 'fd.l4proto': spec.l4proto ?? 'tcp' } : {}),
    ...(spec.fields ?? {}),
  };
  const alert: Alert = falcoAlert({ ns: timeNs, rule, output: `${rule} (test)`, tags: ['falco_companion_signal'], fields: outputFields, defaults: false, companion: spec.companion ?? {}, receivedAtMs: 0 });
  return Object.freeze({
    kind: spec.kind,
    subtype,
    timeNs,
    rule,
    containerId: container,
    imageRepository: image,
    imageTag: spec.tag ?? 'latest',
    imageDigest: spec.digest ?? null,
    namespace: spec.namespace ?? null,
    pod: spec.pod ?? null,
    podLabels: {},
    proc: {
      pid: spec.pid ?? 100,
      ppid: spec.ppid ?? 1,
      sid: null,
      apids: [],
      name: spec.name ?? (spec.exe ?? '/usr/bin/app').split('/').pop() ?? 'app',
      exepath: spec.exe ?? '/usr/bin/app',
      cmdline: spec.cmdline ?? null,
      ancestors: [],
    },
    net: {
      l4proto: dest !== null ? (spec.l4proto ?? 'tcp') : null,
      clientIp: dest !== null ? (spec.client ?? '10.0.0.5') : null,
      clientPort: dest !== null ? 40000 : null,
      serverIp: dest,
      serverPort: port,
      remoteIp: dest,
      remotePort: port,
      remoteDomain: spec.domain ?? null,
    },
    keys: spec.keys ?? {},
    alert,
  });
}

/** Run a detector over signals in order (now = max event time seen); collect all findings. */
export function runDetector<S>(
  det: { init(): S; step(s: S, x: Signal, now: bigint): { state: S; findings: readonly import('../../src/detect/types.js').Finding[] } },
  signals: readonly Signal[],
  state: S = det.init(),
): { state: S; findings: import('../../src/detect/types.js').Finding[] } {
  const findings: import('../../src/detect/types.js').Finding[] = [];
  let now = 0n;
  let st = state;
  for (const x of signals) {
    if (x.timeNs > now) now = x.timeNs;
    const r = det.step(st, x, now);
    st = r.state;
    findings.push(...r.findings);
  }
  return { state: st, findings };
}

/** Deterministic PRNG (mulberry32) for jitter in tests: the benchmark inputs' generator, same sequence for a seed. */
export { rng } from '../../bench/inputs.js';
