/**
 * A recorded-style noisy day of Falco alerts (24 h from BASE_NS, sorted by event time), shaped as
 * our rules pack emits them: everyday workloads that make many signals or detections, with two
 * attack chains from the scenario fixtures (test/fixtures/scenarios) re-timed into the day.
 *
 * | workload | what it does | signals |
 * |---|---|---|
 * | billing-sync (SaaS poller) | HTTPS to one vendor address every 5 min ± 3 s | connect |
 * | web app (python) | connection pool to its database every 30 s | connect |
 * | prometheus | scrapes 12 node exporters every 60 s | connect |
 * | kube-state-metrics | re-reads its service-account token every 60 s | sa_token_read |
 * | nginx | accepts a client every 20 s on :8080 | accept |
 * | dhclient on the host | renews its lease every 20 min (packet socket + filter) | raw_socket, filter_attach |
 *
 * Attacks: the `c2-beacon` implant (in the web app's container, 10:00) and the
 * `socket-filter-reverse-shell` chain (15:00).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FieldValue } from '../../src/alert.js';
import { formatTimeNs } from '../../src/alert.js';
import { LosslessNumber, isJsonObject, parse, stringify, type JsonObject, type JsonValue } from '../../src/json/lossless.js';
import { BASE_NS, falcoAlertJson, secNs } from './falco-alerts.js';

export const DAY_S = 24 * 3600;

/** Containers of the attack chains, and the implant's executable (the web container also runs the benign python). */
export const ATTACK = { beaconContainer: 'a1b2c3d4e5f6', beaconExe: '/tmp/.cache/kworkerd', beaconDest: '203.0.113.77', shellContainer: 'e04b19c7aa61' } as const;

const CONNECT = 'Companion signal: outbound connection from container';
const ACCEPT = 'Companion signal: inbound connection accepted in container';
const TOKEN = 'Companion signal: service account token read';
const RAW = 'Companion signal: packet or raw socket created';
const FILTER = 'Companion signal: socket filter attached';

interface Workload {
  readonly container: string;
  readonly image: string;
  readonly tag: string;
  readonly namespace: string;
  readonly pod: string;
  readonly app: string;
}

function line(t: number, rule: string, w: Workload | null, proc: { exe: string; name: string; pid: number; ppid?: number; cmdline?: string; pname?: string }, extra: Record<string, FieldValue>): { ns: bigint; text: string } {
  const ns = BASE_NS + secNs(t);
  const fields: Record<string, FieldValue> = {
    'container.id': w?.container ?? 'host',
    'evt.res': 'SUCCESS',
    'evt.time': new LosslessNumber(String(ns)),
    'proc.exepath': proc.exe,
    'proc.name': proc.name,
    'proc.pid': proc.pid,
    'proc.ppid': proc.ppid ?? 1,
    'proc.cmdline': proc.cmdline ?? proc.name,
    'proc.pname': proc.pname ?? (w ? 'containerd-shim' : 'systemd'),
    ...(w
      ? {
          'container.image.repository': w.image,
          'container.image.tag': w.tag,
          'container.name': w.pod,
          'k8s.ns.name': w.namespace,
          'k8s.pod.name': w.pod,
          'k8s.pod.labels': `app:${w.app}`,
        }
      : {}),
    ...extra,
  };
  const time = formatTimeNs(ns);
  const output = `${time.slice(11, 29)}: Notice ${rule} | id=${w?.container ?? 'host'} name=${proc.name}`;
  return { ns, text: falcoAlertJson({ ns, rule, priority: rule === RAW || rule === FILTER ? 'Notice' : rule === TOKEN ? 'Informational' : 'Notice', tags: ['falco_companion', w ? 'container' : 'host'], fields, defaults: false, output, hostname: 'node-7' }) };
}

function conn(cip: string, cport: number, sip: string, sport: number): Record<string, FieldValue> {
  return { 'fd.cip': cip, 'fd.cport': cport, 'fd.sip': sip, 'fd.sport': sport, 'fd.l4proto': 'tcp', 'fd.name': `${cip}:${cport}->${sip}:${sport}` };
}

/** A scenario fixture's alerts with their event times moved to start `offsetS` after BASE_NS. */
function fixture(name: string, offsetS: number): { ns: bigint; text: string }[] {
  const text = readFileSync(join('test/fixtures/scenarios', name, 'alerts.jsonl'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim().startsWith('{'));
  let first: bigint | null = null;
  return lines.map((l) => {
    const o = parse(l) as Record<string, JsonValue>;
    const f = (isJsonObject(o['output_fields']) ? o['output_fields'] : {}) as JsonObject;
    const orig = BigInt(String((f['evt.time'] as LosslessNumber | number).toString()));
    first ??= orig;
    const ns = BASE_NS + secNs(offsetS) + (orig - first);
    o['time'] = formatTimeNs(ns);
    o['output_fields'] = { ...f, 'evt.time': new LosslessNumber(String(ns)) } as JsonObject;
    return { ns, text: stringify(o as JsonObject) };
  });
}

/** The day's JSON lines, oldest first; `day` 1 is the next day (the same workloads and attacks 24 h later). */
export function noisyDayLines(day = 0): string[] {
  const out: { ns: bigint; text: string }[] = [];
  const d0 = day * DAY_S;
  const push = out.push.bind(out);
  const at = (t: number): number => d0 + t;
  const poller: Workload = { container: 'b0115ync0001', image: 'registry.example.com/acme/billing-sync', tag: '3.2.0', namespace: 'billing', pod: 'billing-sync-6f7c9-k2x8p', app: 'billing-sync' };
  const web: Workload = { container: ATTACK.beaconContainer, image: 'ghcr.io/acme/web', tag: '1.4.2', namespace: 'shop', pod: 'web-7d9f8b6c5-x2k4q', app: 'web' };
  const prom: Workload = { container: 'c0ffee9a0001', image: 'quay.io/prometheus/prometheus', tag: 'v2.53.0', namespace: 'monitoring', pod: 'prometheus-0', app: 'prometheus' };
  const ksm: Workload = { container: 'c0ffee5e0002', image: 'registry.k8s.io/kube-state-metrics/kube-state-metrics', tag: 'v2.12.0', namespace: 'monitoring', pod: 'kube-state-metrics-5d8b7-q9w2e', app: 'kube-state-metrics' };
  const nginx: Workload = { container: 'c0ffee0e0003', image: 'docker.io/library/nginx', tag: '1.27', namespace: 'shop', pod: 'frontend-84d6b-m3n4b', app: 'frontend' };
  let port = 40000;
  const next = (): number => (port = port >= 60000 ? 40000 : port + 1);
  for (let i = 0, t = 7; t < DAY_S; i++, t = 7 + i * 300 + ((i * 7919) % 7) - 3) {
    push(line(at(t), CONNECT, poller, { exe: '/usr/local/bin/poller', name: 'poller', pid: 12 }, conn('10.244.3.21', next(), '198.51.100.20', 443)));
  }
  for (let t = 11; t < DAY_S; t += 30) push(line(at(t), CONNECT, web, { exe: '/usr/bin/python3', name: 'python3', pid: 40, cmdline: 'python3 app.py' }, conn('10.244.1.17', next(), '10.96.44.12', 5432)));
  for (let i = 0; i < 12; i++) {
    for (let t = 2 + i; t < DAY_S; t += 60) push(line(at(t), CONNECT, prom, { exe: '/bin/prometheus', name: 'prometheus', pid: 1 }, conn('10.244.2.9', next(), `10.244.${10 + i}.5`, 9100)));
  }
  for (let t = 13; t < DAY_S; t += 60) push(line(at(t), TOKEN, ksm, { exe: '/kube-state-metrics', name: 'kube-state-metr', pid: 1 }, { 'fd.name': '/var/run/secrets/kubernetes.io/serviceaccount/token', 'evt.type': 'openat' }));
  for (let i = 0, t = 5; t < DAY_S; i++, t += 20) {
    push(line(at(t), ACCEPT, nginx, { exe: '/usr/sbin/nginx', name: 'nginx', pid: 29, ppid: 1, pname: 'nginx' }, conn(`10.244.${20 + (i % 8)}.${10 + (i % 200)}`, 30000 + (i % 20000), '10.244.4.8', 8080)));
  }
  // A vendor's license agent shipped in the frontend image checks in every 10 min (±1 %), but only
  // from 03:00 (a config change enabled it): a periodic new external destination after the image's
  // learning period, what a beacon looks like. Benign here: the user marks it so in `tune`.
  for (let i = 0, t = 3 * 3600 + 17; t < DAY_S; i++, t = 3 * 3600 + 17 + i * 600 + ((i * 7919) % 13) - 6) {
    push(line(at(t), CONNECT, nginx, { exe: '/usr/local/bin/license-agent', name: 'license-agent', pid: 57, ppid: 1, pname: 'nginx' }, conn('10.244.4.8', next(), '192.0.2.80', 8443)));
  }
  for (let t = 600; t < DAY_S; t += 1200) {
    push(line(at(t), RAW, null, { exe: '/sbin/dhclient', name: 'dhclient', pid: 812, cmdline: 'dhclient -v eth0' }, { 'evt.arg.domain': 'AF_PACKET', 'evt.arg.type': '3', 'evt.arg.proto': '768' }));
    push(line(at(t + 0.01), FILTER, null, { exe: '/sbin/dhclient', name: 'dhclient', pid: 812, cmdline: 'dhclient -v eth0' }, { 'evt.arg.level': 'SOL_SOCKET', 'evt.arg.optname': 'SO_ATTACH_FILTER' }));
  }
  push(...fixture('c2-beacon', d0 + 10 * 3600), ...fixture('socket-filter-reverse-shell', d0 + 15 * 3600));
  out.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
  return out.map((x) => x.text);
}
