/**
 * The dimensions the signal statistics keep per signal: exactly the facts an allow entry of the
 * companion rules file (`suppress.allow`) or an exception of our Falco rules can select on, so a
 * proposal computed from the statistics is checked with the real matchers.
 *
 * | dimension | from | allow entry | Falco exception field |
 * |---|---|---|---|
 * | image | container.image.repository | `image` | container.image.repository |
 * | namespace | k8s.ns.name | `namespace` | k8s.ns.name |
 * | app | pod label `app` or `app.kubernetes.io/name` (`key=value`; unknown in detections' slim evidence) | `pod_labels` | — |
 * | exe | proc.exepath, else proc.name | `exe` | proc.exepath |
 * | parent | proc.pname (the first ancestor name) | — | proc.pname |
 * | dest | remote domain, else the remote address's /24 (IPv6: /64) | `dest_domain` / `dest_cidr` | — |
 * | port | server port (fd.sport) | — | fd.sport |
 * | file | the signal's `file` key (fd.name) | — | fd.name |
 *
 * The exact remote address is kept beside the tuple while it is the only one (`ip`), for
 * `fd.sip` exceptions.
 */
import { formatCidr, parseCidr } from '../net/cidr.js';
import { keyString } from './detectors/kit.js';
import { podLabels } from './mapping.js';
import type { Signal, SignalKind } from './types.js';

export interface StatDims {
  readonly image: string | null;
  readonly namespace: string | null;
  /** `key=value` of the app pod label. */
  readonly app: string | null;
  readonly exe: string | null;
  readonly parent: string | null;
  /** Remote domain, or the remote address's /24 (IPv6 /64) as CIDR text. */
  readonly dest: string | null;
  readonly port: number | null;
  readonly file: string | null;
}

/** Pod label keys that name the application, first found wins. */
export const APP_LABEL_KEYS = ['app', 'app.kubernetes.io/name'] as const;

/** Kinds whose remote peer is a destination (dest, ip). */
const REMOTE_KINDS: ReadonlySet<SignalKind> = new Set(['connect', 'accept', 'k8s_api_contact', 'kubelet_contact']);
/** Kinds whose server port is meaningful (fd.sport). */
const PORT_KINDS: ReadonlySet<SignalKind> = new Set(['connect', 'accept', 'listen', 'k8s_api_contact', 'kubelet_contact']);

const FIELDS = ['image', 'namespace', 'app', 'exe', 'parent', 'dest', 'port', 'file'] as const;
export type DimName = (typeof FIELDS)[number];

/** The /24 (IPv4) or /64 (IPv6) around an address, as CIDR text; null when it is no address. */
export function destBlock(ip: string): string | null {
  const c = parseCidr(`${ip}/${ip.includes(':') && !ip.includes('.') ? 64 : 24}`);
  return c ? formatCidr(c) : null;
}

/** Output fields that carry an app label directly, per key. */
const APP_LABEL_FIELDS = APP_LABEL_KEYS.map((k) => [k, `k8s.pod.label[${k}]`, `k8s.pod.label.${k}`] as const);
/** App label per `k8s.pod.labels` text (parsed once per pod, not per signal); cleared when full. */
const appByLabels = new Map<string, string | null>();
const MAX_APP_CACHE = 1024;

function appLabel(sig: Signal): string | null {
  for (const k of APP_LABEL_KEYS) {
    const v = Object.hasOwn(sig.podLabels, k) ? sig.podLabels[k] : undefined;
    if (v) return `${k}=${v}`;
  }
  const f = sig.alert.outputFields;
  for (const [k, a, b] of APP_LABEL_FIELDS) {
    const v = f?.[a] ?? f?.[b];
    if (typeof v === 'string' && v !== '' && v !== '<NA>') return `${k}=${v}`;
  }
  const list = f?.['k8s.pod.labels'] ?? sig.alert.companion['k8s.pod.labels'];
  if (typeof list !== 'string') return null;
  const hit = appByLabels.get(list);
  if (hit !== undefined) return hit;
  const found = podLabels(sig.alert, APP_LABEL_KEYS);
  let app: string | null = null;
  for (const k of APP_LABEL_KEYS) {
    const v = found[k];
    if (v) {
      app = `${k}=${v}`;
      break;
    }
  }
  if (appByLabels.size >= MAX_APP_CACHE) appByLabels.clear();
  appByLabels.set(list, app);
  return app;
}

/**
 * The parent's name: `proc.pname`, the first ancestor the mapping reads (every rule of our pack
 * prints it), from the signal's process facts, which the detectors' slim evidence copies keep.
 */
function parentName(sig: Signal): string | null {
  const a = sig.proc.ancestors[0];
  return a !== undefined && !a.startsWith('/') ? a : null;
}

/** The dimensions of a signal and its remote address (null when none). */
export function signalDims(sig: Signal): { readonly dims: StatDims; readonly ip: string | null } {
  const remote = REMOTE_KINDS.has(sig.kind);
  const ip = remote ? sig.net.remoteIp : null;
  const dest = remote ? (sig.net.remoteDomain?.toLowerCase().replace(/\.$/, '') ?? (ip !== null ? destBlock(ip) : null)) : null;
  const port = PORT_KINDS.has(sig.kind) ? (sig.net.serverPort ?? sig.net.remotePort) : null;
  return {
    dims: {
      image: sig.imageRepository,
      namespace: sig.namespace,
      app: appLabel(sig),
      exe: sig.proc.exepath ?? sig.proc.name,
      parent: parentName(sig),
      dest,
      port,
      file: keyString(sig, 'file'),
    },
    ip,
  };
}

/** The tuple as stored (a JSON array in a fixed order). */
export function dimsKey(d: StatDims): string {
  return JSON.stringify(FIELDS.map((f) => d[f]));
}

/** A stored tuple back (null for the overflow row or anything malformed). */
export function parseDimsKey(s: string): StatDims | null {
  if (s === '') return null;
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    return null;
  }
  if (!Array.isArray(v) || v.length !== FIELDS.length) return null;
  const str = (x: unknown): string | null => (typeof x === 'string' ? x : null);
  return {
    image: str(v[0]),
    namespace: str(v[1]),
    app: str(v[2]),
    exe: str(v[3]),
    parent: str(v[4]),
    dest: str(v[5]),
    port: typeof v[6] === 'number' ? v[6] : null,
    file: str(v[7]),
  };
}

/** True when `dest` is a CIDR block (else a domain). */
export function destIsCidr(dest: string): boolean {
  return dest.includes('/');
}

/** Human one-liner of a tuple: `image=… exe=… dest=…` (set dimensions only). */
export function dimsText(d: StatDims, ip: string | null = null): string {
  const parts: string[] = [];
  for (const f of FIELDS) {
    const v = d[f];
    if (v !== null) parts.push(`${f}=${String(v)}`);
  }
  if (ip !== null && ip !== '*') parts.push(`ip=${ip}`);
  return parts.length ? parts.join(' ') : '(no workload facts)';
}

/** Same tuple, an unknown app label (slim evidence) matching any. */
export function sameTuple(a: StatDims, b: StatDims): boolean {
  return (
    a.image === b.image &&
    a.namespace === b.namespace &&
    (a.app === b.app || a.app === null || b.app === null) &&
    a.exe === b.exe &&
    a.parent === b.parent &&
    a.dest === b.dest &&
    a.port === b.port &&
    a.file === b.file
  );
}
