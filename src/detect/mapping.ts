/**
 * The compiled signal mapping: Falco alert → typed Signals (src/detect/types.ts). Predicates are
 * compiled once per rules load; rule names are looked up in a Map. Normalises process (with
 * ancestors), network (src/net/socket.ts), container, k8s and pod-label facts, once per alert, so
 * neither the detectors nor the suppression read raw output_fields.
 */
import { fieldString, type Alert, type FieldValue, type OutputFields } from '../alert.js';
import { LosslessNumber } from '../json/lossless.js';
import { ipText, parseIp } from '../net/address.js';
import { cidrContains } from '../net/cidr.js';
import { parseFdName, SocketView, type Endpoint, type PeerSide } from '../net/socket.js';
import { DEST, IMAGE } from '../enrich/keys.js';
import { parseFirewallCmdline } from './firewall-cmdline.js';
import type { Predicate, SignalRule } from './rules/types.js';
import type { NetFacts, ProcFacts, Signal, SignalKind } from './types.js';

/** Rule names of the shipped signal rules start with this (signal-only alerts). */
export const SIGNAL_RULE_PREFIX = 'Companion signal:';

type Test = (alert: Alert) => boolean;

interface Compiled {
  readonly index: number;
  readonly rule: SignalRule;
  readonly test: Test;
  /** `extract` as entries, built once. */
  readonly extract: readonly (readonly [string, string])[];
}

export interface Mapping {
  /** Signals an alert maps to (empty when none), in rules-file order, one per (kind, subtype). */
  mapAlert(alert: Alert): Signal[];
}

export interface MappingOptions {
  /** Pod label keys to extract into `Signal.podLabels` (those the suppression selects on). */
  readonly podLabelKeys?: readonly string[];
}

/** Compile the `signals:` entries of a rules file. */
export function compileMapping(rules: readonly SignalRule[], opts: MappingOptions = {}): Mapping {
  const labelKeys = opts.podLabelKeys ?? [];
  const named = new Map<string, Compiled[]>();
  const generic: Compiled[] = [];
  rules.forEach((rule, index) => {
    const c: Compiled = { index, rule, test: compileTest(rule), extract: Object.entries(rule.extract) };
    if (rule.rules) {
      for (const n of rule.rules) {
        let arr = named.get(n);
        if (!arr) named.set(n, (arr = []));
        arr.push(c);
      }
    } else generic.push(c);
  });
  // Candidates per rule name, merged with the generic entries in rules-file order once, not per alert.
  const byName = new Map<string, readonly Compiled[]>();
  for (const [n, arr] of named) byName.set(n, generic.length ? [...arr, ...generic].sort((a, b) => a.index - b.index) : arr);
  return {
    mapAlert(alert: Alert): Signal[] {
      const candidates = byName.get(alert.rule) ?? generic;
      const out: Signal[] = [];
      if (candidates.length === 0) return out;
      // The container runtime setting up a container is never evidence (older rules packs still
      // send its renames and sysctl writes).
      if (isRuntimeStartup(alert.outputFields ?? NO_FIELDS)) return out;
      let proc: ProcFacts | null = null;
      let labels: Readonly<Record<string, string>> | null = null;
      for (const c of candidates) {
        if (!c.test(alert)) continue;
        const subtype = subtypeOf(c.rule, alert);
        const kind = c.rule.kind;
        // One signal per (kind, subtype); a null subtype and '' count as the same.
        const sub = subtype ?? '';
        let dup = false;
        for (const o of out) if (o.kind === kind && (o.subtype ?? '') === sub) dup = true;
        if (dup) continue;
        // The same process facts and pod labels for every signal of the alert.
        proc ??= Object.freeze(procFacts(alert));
        labels ??= podLabels(alert, labelKeys);
        out.push(makeSignal(alert, kind, subtype, c.extract, proc, labels));
      }
      return out;
    },
  };
}

function compileTest(rule: SignalRule): Test {
  const tests: Test[] = [];
  if (rule.rulePrefix !== null) {
    const prefix = rule.rulePrefix;
    tests.push((a) => a.rule.startsWith(prefix));
  }
  if (rule.tags) {
    const want = new Set(rule.tags);
    tests.push((a) => a.tags !== null && a.tags.some((t) => want.has(t)));
  }
  for (const p of rule.where) tests.push(compilePredicate(p));
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as Test;
  return (a) => tests.every((t) => t(a));
}

/** A field of the alert: output_fields first, `companion.<key>` from enrichment, then top-level names. */
function getField(alert: Alert, name: string): FieldValue | undefined {
  const f = alert.outputFields?.[name];
  if (f !== undefined) return f;
  if (name.startsWith('companion.')) return alert.companion[name.slice(10)];
  switch (name) {
    case 'rule':
      return alert.rule;
    case 'priority':
      return alert.priority;
    case 'source':
      return alert.source;
    case 'hostname':
      return alert.hostname;
    default:
      return undefined;
  }
}

function asText(v: FieldValue | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (v instanceof LosslessNumber) return v.raw;
  const s = String(v);
  return s === '<NA>' ? null : s;
}

function asNumber(v: FieldValue | undefined): number | null {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(v instanceof LosslessNumber ? v.raw : v);
  return Number.isFinite(n) && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

function compilePredicate(p: Predicate): Test {
  const field = p.field;
  switch (p.op) {
    case 'equals': {
      const want = String(p.value);
      const wantNum = typeof p.value === 'number' ? p.value : null;
      return (a) => {
        const v = getField(a, field);
        if (wantNum !== null) return asNumber(v) === wantNum;
        return asText(v) === want;
      };
    }
    case 'in': {
      const set = new Set(p.values);
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && set.has(s);
      };
    }
    case 'startswith': {
      const vals = p.values;
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && vals.some((x) => s.startsWith(x));
      };
    }
    case 'contains': {
      const vals = p.values;
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && vals.some((x) => s.includes(x));
      };
    }
    case 'cidr': {
      const cidrs = p.cidrs;
      return (a) => {
        const s = asText(getField(a, field));
        const ip = s === null ? null : parseIp(s);
        return ip !== null && cidrs.some((c) => cidrContains(c, ip));
      };
    }
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte': {
      const n = p.number;
      const cmp = p.op === 'gt' ? (x: number) => x > n : p.op === 'gte' ? (x: number) => x >= n : p.op === 'lt' ? (x: number) => x < n : (x: number) => x <= n;
      return (a) => {
        const x = asNumber(getField(a, field));
        return x !== null && cmp(x);
      };
    }
    case 'exists': {
      const want = p.exists;
      return (a) => (asText(getField(a, field)) !== null) === want;
    }
  }
}

function subtypeOf(rule: SignalRule, alert: Alert): string | null {
  if (rule.subtypeFrom) {
    const raw = asText(getField(alert, rule.subtypeFrom.field));
    if (raw !== null && Object.hasOwn(rule.subtypeFrom.map, raw)) return rule.subtypeFrom.map[raw] as string;
    if (rule.subtypeFrom.default !== null) return rule.subtypeFrom.default;
    if (raw !== null) return raw;
  }
  return rule.subtype;
}

// ---------------------------------------------------------------------------------------------
// Facts

/** `host`, empty, `<NA>` and missing container ids mean the host: null. */
export function normaliseContainerId(v: string | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  const s = v.trim();
  if (s === '' || s === 'host' || s === '<NA>') return null;
  return s;
}

const APID_KEYS = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `proc.apid[${i}]`);
const ANCESTOR_KEYS = ['proc.pname', 'proc.pexepath', 'proc.pexe', ...[1, 2, 3, 4, 5, 6, 7, 8, 9].flatMap((i) => [`proc.aname[${i}]`, `proc.aexepath[${i}]`])];

/** `fieldString` of a value already looked up (one property read per field, not several). */
function str(v: FieldValue | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v === '<NA>' ? null : v;
  return String(v);
}

/** `fieldNumber` of a value already looked up. */
function num(v: FieldValue | undefined): number | null {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(typeof v === 'string' ? v : v.raw);
  return Number.isFinite(n) && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

const NO_FIELDS: OutputFields = Object.freeze({});

function procFacts(a: Alert): ProcFacts {
  const f = a.outputFields ?? NO_FIELDS;
  const apids: number[] = [];
  for (const k of APID_KEYS) {
    const n = num(f[k]);
    if (n !== null) apids.push(n);
  }
  const ancestors: string[] = [];
  for (const k of ANCESTOR_KEYS) {
    const v = f[k];
    if (typeof v === 'string' && v !== '' && v !== '<NA>') ancestors.push(v);
  }
  let exe = str(f['proc.exepath']);
  if (exe === null) {
    const alt = str(f['proc.exe']);
    exe = alt?.startsWith('/') ? alt : null;
  }
  return {
    pid: num(f['proc.pid']) ?? num(f['proc.vpid']),
    ppid: num(f['proc.ppid']) ?? num(f['proc.apid[1]']),
    sid: num(f['proc.sid']),
    apids,
    name: str(f['proc.name']),
    exepath: exe,
    cmdline: str(f['proc.cmdline']),
    ancestors,
  };
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** The pod labels of `keys`: `k8s.pod.label[key]` or `k8s.pod.label.key`, else Falco's `k8s.pod.labels` list (`k1:v1,k2:v2`, `[k1:v1, k2:v2]`, `k=v`). */
export function podLabels(a: Alert, keys: readonly string[]): Readonly<Record<string, string>> {
  if (keys.length === 0) return NO_LABELS;
  const f = a.outputFields ?? NO_FIELDS;
  let out: Record<string, string> | null = null;
  let all: Map<string, string> | null = null;
  for (const key of keys) {
    const direct = f[`k8s.pod.label[${key}]`] ?? f[`k8s.pod.label.${key}`];
    let v: string | undefined = typeof direct === 'string' && direct !== '<NA>' ? direct : undefined;
    if (v === undefined) {
      all ??= labelList(f['k8s.pod.labels'] ?? a.companion['k8s.pod.labels']);
      v = all.get(key);
    }
    if (v !== undefined) (out ??= {})[key] = v;
  }
  return out ? Object.freeze(out) : NO_LABELS;
}

/** Falco's `k8s.pod.labels` list (`k1:v1,k2:v2`, `[k1:v1, k2:v2]`, `k=v`) as a map (first value of a key wins). */
export function labelList(v: unknown): Map<string, string> {
  const m = new Map<string, string>();
  if (typeof v !== 'string') return m;
  for (const part of v.replace(/^\[|\]$/g, '').split(',')) {
    const kv = /^\s*([^:=]+)[:=](.*)$/.exec(part);
    if (kv) {
      const k = (kv[1] as string).trim();
      if (!m.has(k)) m.set(k, (kv[2] as string).trim());
    }
  }
  return m;
}

/** Which end of the socket is the remote peer, by signal kind (null: the event does not say). */
const REMOTE_SIDE: Partial<Record<SignalKind, PeerSide>> = { accept: 'client', connect: 'server', k8s_api_contact: 'server', kubelet_contact: 'server' };

const text = (e: Endpoint | null): string | null => (e === null ? null : ipText(e.text, e.ip));

function netFacts(a: Alert, kind: SignalKind): NetFacts {
  const f = a.outputFields ?? NO_FIELDS;
  const sock = new SocketView(f);
  const client = sock.end('client');
  const server = sock.end('server') ?? (kind === 'listen' ? sock.field('fd.lip', 'fd.lport') : null);
  const peer = kind === 'listen' ? null : sock.remote(REMOTE_SIDE[kind] ?? null);
  const rdns = a.companion[DEST.rdns];
  const domain = (typeof rdns === 'string' && rdns !== '' ? rdns : null) ?? str(f[peer?.nameField ?? (kind === 'accept' ? 'fd.cip.name' : 'fd.sip.name')]);
  return {
    l4proto: str(f['fd.l4proto']),
    clientIp: text(client),
    clientPort: client?.port ?? null,
    serverIp: text(server),
    serverPort: server?.port ?? null,
    remoteIp: text(peer),
    remotePort: peer?.port ?? null,
    remoteDomain: domain,
  };
}

function companionString(a: Alert, key: string): string | null {
  const v = a.companion[key];
  return typeof v === 'string' && v !== '' ? v : null;
}

function makeSignal(
  alert: Alert,
  kind: SignalKind,
  subtype: string | null,
  extract: readonly (readonly [string, string])[],
  proc: ProcFacts,
  podLabels: Readonly<Record<string, string>>,
): Signal {
  const keys: Record<string, FieldValue> = {};
  for (const [k, field] of extract) {
    const v = getField(alert, field);
    if (v === undefined || v === null || v === '<NA>') continue;
    // A unix socket's fd.name is `<kaddr>-><kaddr> <path the server bound>`: the path is the fact.
    const unix = field === 'fd.name' && typeof v === 'string' ? parseFdName(v) : null;
    keys[k] = unix?.kind === 'unix' ? (unix.path ?? v) : v;
  }
  if (kind === 'firewall_exec') {
    const fw = parseFirewallCmdline(proc.cmdline ?? fieldString(alert, 'proc.cmdline'));
    if (fw) Object.assign(keys, fw);
  }
  const f = alert.outputFields ?? NO_FIELDS;
  if (kind === 'container_start') {
    const sensitive = sensitiveMounts(str(f['container.mounts']));
    if (sensitive.length > 0) {
      keys['sensitive_mount'] = true;
      keys['sensitive_mounts'] = sensitive.join(',').slice(0, 500);
    }
  }
  return Object.freeze({
    kind,
    subtype,
    timeNs: alert.timeNs,
    rule: alert.rule,
    containerId: normaliseContainerId(str(f['container.id'])),
    imageRepository: str(f['container.image.repository']) ?? companionString(alert, IMAGE.repository),
    imageTag: str(f['container.image.tag']) ?? companionString(alert, IMAGE.tag),
    imageDigest: str(f['container.image.digest']) ?? companionString(alert, IMAGE.digest),
    namespace: str(f['k8s.ns.name']),
    pod: str(f['k8s.pod.name']),
    podLabels,
    proc,
    net: Object.freeze(netFacts(alert, kind)),
    keys: Object.freeze(keys),
    alert,
  });
}


// ---------------------------------------------------------------------------------------------
// The container runtime's own start-up, and sensitive mounts

/** OCI runtimes and the names their set-up stages run under (`runc init` renames itself three times). */
const RUNTIME_CLI = new Set(['runc', 'crun', 'youki']);
const RUNTIME_STAGE = /^(runc|crun|youki)(:\[\d:[A-Z]+\])?$/;
/** First characters of the runtime names (r, c, y). */
const RUNTIME_FIRST = new Set([114, 99, 121]);
/** What starts the runtime CLI; proc.name is the 15-character comm (containerd-shim-runc-v2 → containerd-shim). */
const RUNTIME_MANAGERS = new Set(['containerd-shim', 'containerd-shim-runc-v2', 'conmon', 'containerd', 'dockerd', 'crio', 'podman', 'buildkitd']);
/** Where runtimes live on nodes; `runc` alone is how libsinsp names runc 1.1's read-only bind clone. */
const RUNTIME_EXE = /^(runc|crun|youki|\/(usr\/(local\/)?)?s?bin\/(runc|crun|youki|conmon|containerd-shim(-runc-v2)?)|\/usr\/libexec\/(podman|crio)\/conmon|\/(var\/lib\/rancher\/(k3s|rke2)\/data|snap\/microk8s)\/.+\/(runc|containerd-shim(-runc-v2)?))$/;

/**
 * True for an alert about the container runtime setting up a container: a runtime stage name
 * (`runc`, `runc:[1:CHILD]`, ...) under the runtime CLI with the runtime's own executable (a host
 * path, libsinsp's bare `runc`, or a memfd copy run under a runtime manager), or a runtime manager
 * itself (containerd-shim, conmon) from its host path. Names alone are not enough (anyone can call
 * a binary `runc`); the same rule as the signal rules' `companion_runtime_setup`, without the
 * overlay-layer check the outputs do not carry.
 */
export function isRuntimeStartup(f: OutputFields): boolean {
  const name = str(f['proc.name']);
  if (name === null || !RUNTIME_FIRST.has(name.charCodeAt(0))) return false; // the common case, without a regex
  const exe = str(f['proc.exepath']);
  if (exe === null) return false;
  if (RUNTIME_STAGE.test(name)) {
    const pname = str(f['proc.pname']);
    if (pname === null || !RUNTIME_CLI.has(pname)) return false;
    if (RUNTIME_EXE.test(exe)) return true;
    const manager = str(f['proc.aname[2]']);
    return exe.startsWith('memfd:') && manager !== null && RUNTIME_MANAGERS.has(manager);
  }
  return (name === 'containerd-shim' || name === 'conmon') && RUNTIME_EXE.test(exe);
}

/** Host paths a container must not have mounted (the signal rules' `companion_sensitive_mount`). */
const SENSITIVE_EXACT = new Set(['/', '/etc', '/var/lib/kubelet', '/var/lib/kubelet/pki', '/etc/kubernetes', '/sys/fs/cgroup', '/dev', '/var/run', '/run']);
const SENSITIVE_PREFIX = ['/proc', '/root', '/home'];
const RUNTIME_SOCKET_SUFFIX = ['/docker.sock', '/containerd.sock', '/crio.sock', '/podman.sock', '/cri-dockerd.sock', '/dockershim.sock', '/buildkitd.sock'];

/**
 * The sensitive host sources in Falco's `container.mounts` (`source:dest:mode:rdwr:propagation`,
 * comma-separated), as `source:dest` texts.
 */
export function sensitiveMounts(mounts: string | null): string[] {
  if (!mounts) return [];
  const out: string[] = [];
  for (const m of mounts.split(',')) {
    const [src = '', dst = ''] = m.trim().split(':');
    const source = src.length > 1 ? src.replace(/\/+$/, '') : src;
    if (source === '') continue;
    const hit =
      SENSITIVE_EXACT.has(source) ||
      SENSITIVE_PREFIX.some((p) => source === p || source.startsWith(`${p}/`)) ||
      RUNTIME_SOCKET_SUFFIX.some((x) => source.endsWith(x));
    if (hit) out.push(`${source}:${dst}`);
  }
  return out;
}
