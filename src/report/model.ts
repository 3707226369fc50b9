/**
 * What the report page shows, derived from a journal record (pure): the evidence on a time axis
 * with relative times and labelled gaps, the process lineage as a tree, the destinations with
 * their enrichment, and the image history of the workloads involved.
 */
import type { EnrichValue } from '../alert.js';
import { DEST, IMAGE } from '../enrich/keys.js';
import type { DetectionRecord, EvidenceRecord } from '../journal/types.js';

export interface TimelineEntry {
  readonly seq: number;
  readonly e: EvidenceRecord;
  /** ns after the first evidence signal. */
  readonly relNs: bigint;
  /** ns since the previous entry (0 for the first). */
  readonly gapNs: bigint;
}

export interface Timeline {
  readonly entries: readonly TimelineEntry[];
  readonly startNs: bigint;
  /** The detection's own time. */
  readonly detectionNs: bigint;
  /** ns from the last evidence to the detection. */
  readonly detectionGapNs: bigint;
  /** Gaps at least this long are labelled. */
  readonly labelGapNs: bigint;
}

/** Evidence oldest first (stable), with relative times and gaps. */
export function timeline(r: DetectionRecord): Timeline {
  const sorted = r.evidence.map((e, i) => ({ e, i, ns: BigInt(e.timeNs) })).sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : a.i - b.i));
  const detectionNs = BigInt(r.timeNs);
  const startNs = sorted[0]?.ns ?? detectionNs;
  const entries = sorted.map((x, k) => ({ seq: k, e: x.e, relNs: x.ns - startNs, gapNs: k === 0 ? 0n : x.ns - (sorted[k - 1] as { ns: bigint }).ns }));
  const lastNs = sorted[sorted.length - 1]?.ns ?? detectionNs;
  const span = (detectionNs > lastNs ? detectionNs : lastNs) - startNs;
  // A gap is worth a label when it is at least a second and a tenth of the whole chain.
  const tenth = span / 10n;
  const labelGapNs = tenth > 1_000_000_000n ? tenth : 1_000_000_000n;
  return { entries, startNs, detectionNs, detectionGapNs: detectionNs > lastNs ? detectionNs - lastNs : 0n, labelGapNs };
}

/** `1 h 59 min`, `2.4 s`, `50 ms`, `0 s`: two units at most. */
export function formatDuration(ns: bigint): string {
  const neg = ns < 0n;
  const v = neg ? -ns : ns;
  const sign = neg ? '-' : '';
  if (v < 1_000_000n) return v === 0n ? '0 s' : `${sign}${v / 1000n} µs`;
  if (v < 1_000_000_000n) return `${sign}${v / 1_000_000n} ms`;
  if (v < 60_000_000_000n) {
    const tenths = (v + 50_000_000n) / 100_000_000n;
    return `${sign}${tenths / 10n}${tenths % 10n === 0n ? '' : `.${tenths % 10n}`} s`;
  }
  const secs = v / 1_000_000_000n;
  const units: [bigint, string][] = [
    [86_400n, 'd'],
    [3_600n, 'h'],
    [60n, 'min'],
    [1n, 's'],
  ];
  // The largest non-zero unit and, when not zero, the next one.
  const i = units.findIndex(([size]) => secs >= size);
  const [big, bigName] = units[i] as [bigint, string];
  const parts = [`${secs / big} ${bigName}`];
  const next = units[i + 1];
  if (next && (secs % big) / next[0] > 0n) parts.push(`${(secs % big) / next[0]} ${next[1]}`);
  return sign + parts.join(' ');
}

export interface LineageNode {
  /** `container|pid` (pid namespaces differ between workloads). */
  readonly key: string;
  readonly pid: number | null;
  readonly container: string | null;
  /** Names in the order seen (a rename shows as two). */
  readonly names: string[];
  readonly exes: string[];
  readonly cmdlines: string[];
  /** Ancestor names / executables the alerts carried, nearest first. */
  ancestors: readonly string[];
  readonly apids: number[];
  /** Signal kinds this process produced (empty: a parent known only by pid). */
  readonly kinds: string[];
  /** Sequence numbers of the evidence it produced (timeline order). */
  readonly seqs: number[];
  /** The process that started it (the first parent the evidence names). */
  parent: string | null;
  /** Parents named later (a daemon re-parented to init or a subreaper): shown on the node, not as edges. */
  readonly reparented: number[];
  readonly children: string[];
  /** True for a parent known only from a child's ppid. */
  readonly inferred: boolean;
}

export interface Lineage {
  readonly nodes: ReadonlyMap<string, LineageNode>;
  readonly roots: readonly string[];
}

const pidKey = (container: string | null, pid: number | null, fallback: string): string => `${container ?? 'host'}|${pid ?? fallback}`;

function addUnique(list: string[], v: string | null): void {
  if (v !== null && v !== '' && !list.includes(v)) list.push(v);
}

/** Processes of the evidence as a forest: parent links by ppid within one workload. */
export function lineage(t: Timeline): Lineage {
  const nodes = new Map<string, LineageNode>();
  for (const { e, seq } of t.entries) {
    const p = e.proc;
    if (p.pid === null && p.name === null && p.exepath === null) continue;
    const key = pidKey(e.workload.id, p.pid, `?${seq}`);
    let n = nodes.get(key);
    if (!n) {
      n = { key, pid: p.pid, container: e.workload.id, names: [], exes: [], cmdlines: [], ancestors: [], apids: [], kinds: [], seqs: [], parent: null, reparented: [], children: [], inferred: false };
      nodes.set(key, n);
    }
    addUnique(n.names, p.name);
    addUnique(n.exes, p.exepath);
    addUnique(n.cmdlines, p.cmdline);
    if (p.ancestors.length > n.ancestors.length) n.ancestors = p.ancestors;
    for (const a of p.apids) if (!n.apids.includes(a)) n.apids.push(a);
    addUnique(n.kinds, e.subtype ? `${e.kind}/${e.subtype}` : e.kind);
    n.seqs.push(seq);
    if (p.ppid !== null && p.ppid !== p.pid) {
      // Keep the creator: a daemon that forks and lets init adopt it names pid 1 later.
      const parent = pidKey(e.workload.id, p.ppid, '');
      if (n.parent === null) n.parent = parent;
      else if (n.parent !== parent && !n.reparented.includes(p.ppid)) n.reparented.push(p.ppid);
    }
  }
  // Parents known only by pid become inferred nodes (named from the child's nearest ancestor).
  for (const n of [...nodes.values()]) {
    if (n.parent === null || nodes.has(n.parent)) continue;
    const pid = Number(n.parent.slice(n.parent.lastIndexOf('|') + 1));
    const names: string[] = [];
    addUnique(names, n.ancestors[0] ?? null);
    nodes.set(n.parent, { key: n.parent, pid, container: n.container, names, exes: [], cmdlines: [], ancestors: n.ancestors.slice(1), apids: [], kinds: [], seqs: [], parent: null, reparented: [], children: [], inferred: true });
  }
  // Cycles (pid reuse) are cut at the node met twice.
  for (const n of nodes.values()) {
    const seen = new Set<string>([n.key]);
    for (let p = n.parent; p !== null; p = nodes.get(p)?.parent ?? null) {
      if (seen.has(p)) {
        n.parent = null;
        break;
      }
      seen.add(p);
    }
  }
  const roots: string[] = [];
  for (const n of nodes.values()) {
    if (n.parent !== null) nodes.get(n.parent)?.children.push(n.key);
    else roots.push(n.key);
  }
  return { nodes, roots };
}

export interface Destination {
  readonly ip: string | null;
  readonly port: number | null;
  readonly l4proto: string | null;
  readonly domain: string | null;
  readonly direction: 'outbound' | 'inbound';
  readonly cls: string | null;
  readonly rdns: string | null;
  readonly asn: string | null;
  readonly asOrg: string | null;
  readonly intel: string | null;
  /** `first seen for this image`, `seen before`, `learning`, or null when the baseline had no verdict. */
  readonly firstSeen: string | null;
  readonly count: number;
  readonly firstNs: bigint;
  readonly lastNs: bigint;
  readonly seqs: number[];
}

const enrichString = (m: Readonly<Record<string, EnrichValue>>, k: string): string | null => {
  const v = m[k];
  return v === undefined || v === null || v === '' ? null : String(v);
};

const INBOUND_KINDS = new Set(['accept']);

/** Remote endpoints of the evidence (one row per address, port and direction), in first-seen order. */
export function destinations(t: Timeline): Destination[] {
  const byKey = new Map<string, Destination & { seqs: number[] }>();
  for (const { e, seq } of t.entries) {
    const en = e.enrichment;
    const ip = e.net.remoteIp ?? enrichString(en, DEST.ip);
    const port = e.net.remotePort ?? (typeof en[DEST.port] === 'number' ? (en[DEST.port] as number) : null);
    if (ip === null && e.net.remoteDomain === null) continue;
    const direction = INBOUND_KINDS.has(e.kind) ? 'inbound' : 'outbound';
    const key = `${direction}|${ip ?? e.net.remoteDomain}|${port ?? ''}`;
    const ns = BigInt(e.timeNs);
    const prev = byKey.get(key);
    const newFor = en[DEST.newForImage];
    const learning = en[DEST.learning];
    const firstSeen = learning === true ? 'learning' : newFor === true ? 'first seen for this image' : newFor === false ? 'seen before' : null;
    if (prev) {
      byKey.set(key, {
        ...prev,
        count: prev.count + 1,
        lastNs: ns > prev.lastNs ? ns : prev.lastNs,
        seqs: [...prev.seqs, seq],
        rdns: prev.rdns ?? enrichString(en, DEST.rdns),
        asn: prev.asn ?? enrichString(en, DEST.asn),
        asOrg: prev.asOrg ?? enrichString(en, DEST.asOrg),
        intel: prev.intel ?? enrichString(en, DEST.intel),
        cls: prev.cls ?? enrichString(en, DEST.class),
        firstSeen: prev.firstSeen ?? firstSeen,
      });
      continue;
    }
    byKey.set(key, {
      ip,
      port,
      l4proto: e.net.l4proto,
      domain: e.net.remoteDomain,
      direction,
      cls: enrichString(en, DEST.class),
      rdns: enrichString(en, DEST.rdns),
      asn: enrichString(en, DEST.asn),
      asOrg: enrichString(en, DEST.asOrg),
      intel: enrichString(en, DEST.intel),
      firstSeen,
      count: 1,
      firstNs: ns,
      lastNs: ns,
      seqs: [seq],
    });
  }
  return [...byKey.values()];
}

export interface ImageHistory {
  readonly container: string | null;
  readonly image: string | null;
  readonly registry: string | null;
  readonly digest: string | null;
  readonly previousDigest: string | null;
  /** True when the tag moved to another digest (image.tag_mutated). */
  readonly tagMoved: boolean;
  readonly created: string | null;
  readonly pulledAt: string | null;
  readonly firstSeen: string | null;
  readonly layers: string | null;
  readonly newestLayerCreated: string | null;
  readonly newestLayerCmd: string | null;
}

/** The image of each workload of the evidence (what the container enricher knew), one row per workload and digest. */
export function images(t: Timeline): ImageHistory[] {
  const out = new Map<string, ImageHistory>();
  for (const { e } of t.entries) {
    const en = e.enrichment;
    const w = e.workload;
    const repo = enrichString(en, IMAGE.repository) ?? w.imageRepository;
    if (repo === null && w.id === null) continue;
    const tag = enrichString(en, IMAGE.tag) ?? w.imageTag;
    const digest = enrichString(en, IMAGE.digest) ?? w.imageDigest;
    const key = `${w.id ?? 'host'}|${digest ?? ''}|${repo ?? ''}`;
    const prev = out.get(key);
    const row: ImageHistory = {
      container: w.id,
      image: repo ? `${repo}${tag ? `:${tag}` : ''}` : null,
      registry: enrichString(en, IMAGE.registry),
      digest,
      previousDigest: enrichString(en, IMAGE.previousDigest),
      tagMoved: en[IMAGE.tagMutated] === true || en[IMAGE.tagMutated] === 'true',
      created: enrichString(en, IMAGE.created),
      pulledAt: enrichString(en, IMAGE.pulledAt),
      firstSeen: enrichString(en, IMAGE.firstSeen),
      layers: enrichString(en, IMAGE.layers),
      newestLayerCreated: enrichString(en, IMAGE.newestLayerCreated),
      newestLayerCmd: enrichString(en, IMAGE.newestLayerCmd),
    };
    if (!prev) {
      out.set(key, row);
      continue;
    }
    // Later alerts may know more (enrichment arrives late): fill what the first did not have.
    const merged: Record<string, unknown> = { ...prev };
    for (const [k, v] of Object.entries(row)) if (merged[k] === null || merged[k] === false) merged[k] = v;
    out.set(key, merged as unknown as ImageHistory);
  }
  // Host processes without image facts say nothing about images.
  return [...out.values()].filter((i) => i.container !== null || i.image !== null);
}
