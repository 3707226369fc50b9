/**
 * The compiled signal mapping: Falco alert → typed Signals (src/detect/types.ts). Predicates are
 * compiled once per rules load; rule names are looked up in a Map. Normalises process (with
 * ancestors), network (src/net/socket.ts), container, k8s and pod-label facts, once per alert, so
 * neither the detectors nor the suppression read raw output_fields.
 */
import { knownField, knownFields, knownSlot, valueNumber as num, valueString as str, type Alert, type AncestorSlots, type FieldValue, type KnownFields, type OutputFields } from '../alert.js';
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

/** A field of the alert by name, compiled once (a known-fields slot when it has one). */
type Getter = (alert: Alert) => FieldValue | undefined;

interface Compiled {
  readonly index: number;
  readonly rule: SignalRule;
  readonly test: Test;
  /** `extract` as (key, field name, getter), built once. */
  readonly extract: readonly Extract[];
  readonly subtypeField: Getter | null;
}

type Extract = readonly [key: string, field: string, get: Getter];

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
  const labelKeys = labelKeysOf(opts.podLabelKeys ?? []);
  const named = new Map<string, Compiled[]>();
  const generic: Compiled[] = [];
  rules.forEach((rule, index) => {
    const c: Compiled = {
      index,
      rule,
      test: compileTest(rule),
      extract: Object.entries(rule.extract).map(([k, field]) => [k, field, compileField(field)] as const),
      subtypeField: rule.subtypeFrom ? compileField(rule.subtypeFrom.field) : null,
    };
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
      const k = alert.known;
      if (runtimeStartup(k)) return out;
      let proc: ProcFacts | null = null;
      let labels: Readonly<Record<string, string>> | null = null;
      for (const c of candidates) {
        if (!c.test(alert)) continue;
        const subtype = subtypeOf(c, alert);
        const kind = c.rule.kind;
        // One signal per (kind, subtype); a null subtype and '' count as the same.
        const sub = subtype ?? '';
        let dup = false;
        for (const o of out) if (o.kind === kind && (o.subtype ?? '') === sub) dup = true;
        if (dup) continue;
        // The same process facts and pod labels for every signal of the alert.
        proc ??= Object.freeze(procFacts(k));
        labels ??= labelsOf(alert, labelKeys);
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

/** {@link getField} compiled for one name: a known-fields slot is read from the record (same answer). */
function compileField(name: string): Getter {
  const slot = knownSlot(name);
  if (slot !== undefined) return (a) => knownField(a, slot);
  return (a) => getField(a, name);
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
  const get = compileField(p.field);
  switch (p.op) {
    case 'equals': {
      const want = String(p.value);
      const wantNum = typeof p.value === 'number' ? p.value : null;
      return (a) => {
        const v = get(a);
        if (wantNum !== null) return asNumber(v) === wantNum;
        return asText(v) === want;
      };
    }
    case 'in': {
      const set = new Set(p.values);
      return (a) => {
        const s = asText(get(a));
        return s !== null && set.has(s);
      };
    }
    case 'startswith': {
      const vals = p.values;
      return (a) => {
        const s = asText(get(a));
        return s !== null && vals.some((x) => s.startsWith(x));
      };
    }
    case 'contains': {
      const vals = p.values;
      return (a) => {
        const s = asText(get(a));
        return s !== null && vals.some((x) => s.includes(x));
      };
    }
    case 'cidr': {
      const cidrs = p.cidrs;
      return (a) => {
        const s = asText(get(a));
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
        const x = asNumber(get(a));
        return x !== null && cmp(x);
      };
    }
    case 'exists': {
      const want = p.exists;
      return (a) => (asText(get(a)) !== null) === want;
    }
  }
}

function subtypeOf(c: Compiled, alert: Alert): string | null {
  const rule = c.rule;
  if (rule.subtypeFrom && c.subtypeField) {
    const raw = asText(c.subtypeField(alert));
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

const NO_FIELDS: OutputFields = Object.freeze({});

/** Process facts from the record: one read per slot. */
function procFacts(k: KnownFields): ProcFacts {
  const apids: number[] = [];
  const apid = k.procApid;
  if (apid !== null) {
    for (let n = 1; n <= 9; n++) {
      const x = num(apid[n]);
      if (x !== null) apids.push(x);
    }
  }
  // Names and executables of the parent and ancestors, nearest first.
  const ancestors: string[] = [];
  ancestor(ancestors, k.procPname);
  ancestor(ancestors, k.procPexepath);
  ancestor(ancestors, k.procPexe);
  const aname = k.procAname;
  const aexe = k.procAexepath;
  if (aname !== null || aexe !== null) {
    for (let n = 1; n <= 9; n++) {
      if (aname !== null) ancestor(ancestors, aname[n]);
      if (aexe !== null) ancestor(ancestors, aexe[n]);
    }
  }
  let exe = str(k.procExepath);
  if (exe === null) {
    const alt = str(k.procExe);
    exe = alt?.startsWith('/') ? alt : null;
  }
  return {
    pid: num(k.procPid) ?? num(k.procVpid),
    ppid: num(k.procPpid) ?? num(level(k.procApid, 1)),
    sid: num(k.procSid),
    apids,
    name: str(k.procName),
    exepath: exe,
    cmdline: str(k.procCmdline),
    ancestors,
  };
}

function ancestor(out: string[], v: FieldValue | undefined): void {
  if (typeof v === 'string' && v !== '' && v !== '<NA>') out.push(v);
}

function level(slots: AncestorSlots, n: number): FieldValue | undefined {
  return slots === null ? undefined : slots[n];
}

const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** A pod label key with the names of the fields that carry it directly (built once per rules load). */
interface LabelKey {
  readonly key: string;
  readonly bracket: string;
  readonly dotted: string;
}

const labelKeysOf = (keys: readonly string[]): LabelKey[] => keys.map((key) => ({ key, bracket: `k8s.pod.label[${key}]`, dotted: `k8s.pod.label.${key}` }));

/** The pod labels of `keys`: `k8s.pod.label[key]` or `k8s.pod.label.key`, else Falco's `k8s.pod.labels` list (`k1:v1,k2:v2`, `[k1:v1, k2:v2]`, `k=v`). */
export function podLabels(a: Alert, keys: readonly string[]): Readonly<Record<string, string>> {
  return labelsOf(a, labelKeysOf(keys));
}

function labelsOf(a: Alert, keys: readonly LabelKey[]): Readonly<Record<string, string>> {
  if (keys.length === 0) return NO_LABELS;
  const f = a.outputFields ?? NO_FIELDS;
  let out: Record<string, string> | null = null;
  let all: ReadonlyMap<string, string> | null = null;
  for (const { key, bracket, dotted } of keys) {
    const direct = f[bracket] ?? f[dotted];
    let v: string | undefined = typeof direct === 'string' && direct !== '<NA>' ? direct : undefined;
    if (v === undefined) {
      all ??= parsedLabels(a.known.k8sPodLabels ?? a.companion['k8s.pod.labels']);
      v = all.get(key);
    }
    if (v !== undefined) (out ??= {})[key] = v;
  }
  return out ? Object.freeze(out) : NO_LABELS;
}

/** Parsed `k8s.pod.labels` lists, by text (a pod's alerts repeat it); bounded, cleared when full. */
const labelLists = new Map<string, ReadonlyMap<string, string>>();
const NO_LIST: ReadonlyMap<string, string> = new Map();

function parsedLabels(v: unknown): ReadonlyMap<string, string> {
  if (typeof v !== 'string') return NO_LIST;
  let m = labelLists.get(v);
  if (m === undefined) {
    if (labelLists.size >= 1024) labelLists.clear();
    labelLists.set(v, (m = labelList(v)));
  }
  return m;
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
  const k = a.known;
  const sock = SocketView.of(k);
  const client = sock.end('client');
  const server = sock.end('server') ?? (kind === 'listen' ? sock.field('fd.lip', 'fd.lport') : null);
  const peer = kind === 'listen' ? null : sock.remote(REMOTE_SIDE[kind] ?? null);
  const rdns = a.companion[DEST.rdns];
  const nameField = peer?.nameField ?? (kind === 'accept' ? 'fd.cip.name' : 'fd.sip.name');
  const domain = (typeof rdns === 'string' && rdns !== '' ? rdns : null) ?? str(nameField === 'fd.cip.name' ? k.fdCipName : nameField === 'fd.sip.name' ? k.fdSipName : k.fdRipName);
  return {
    l4proto: str(k.fdL4proto),
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
  extract: readonly Extract[],
  proc: ProcFacts,
  podLabels: Readonly<Record<string, string>>,
): Signal {
  const keys: Record<string, FieldValue> = {};
  for (const [k, field, get] of extract) {
    const v = get(alert);
    if (v === undefined || v === null || v === '<NA>') continue;
    // A unix socket's fd.name is `<kaddr>-><kaddr> <path the server bound>`: the path is the fact.
    const unix = field === 'fd.name' && typeof v === 'string' ? parseFdName(v) : null;
    keys[k] = unix?.kind === 'unix' ? (unix.path ?? v) : v;
  }
  if (kind === 'firewall_exec') {
    const fw = parseFirewallCmdline(proc.cmdline ?? str(alert.known.procCmdline));
    if (fw) Object.assign(keys, fw);
  }
  const f = alert.known;
  if (kind === 'container_start') {
    const sensitive = sensitiveMounts(str(f.containerMounts));
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
    containerId: normaliseContainerId(str(f.containerId)),
    imageRepository: str(f.imageRepository) ?? companionString(alert, IMAGE.repository),
    imageTag: str(f.imageTag) ?? companionString(alert, IMAGE.tag),
    imageDigest: str(f.imageDigest) ?? companionString(alert, IMAGE.digest),
    namespace: str(f.k8sNs),
    pod: str(f.k8sPod),
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
  return runtimeStartup(knownFields(f));
}

/** {@link isRuntimeStartup} on an alert's known-fields record. */
function runtimeStartup(k: KnownFields): boolean {
  const name = str(k.procName);
  if (name === null || !RUNTIME_FIRST.has(name.charCodeAt(0))) return false; // the common case, without a regex
  const exe = str(k.procExepath);
  if (exe === null) return false;
  if (RUNTIME_STAGE.test(name)) {
    const pname = str(k.procPname);
    if (pname === null || !RUNTIME_CLI.has(pname)) return false;
    if (RUNTIME_EXE.test(exe)) return true;
    const manager = str(level(k.procAname, 2));
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
