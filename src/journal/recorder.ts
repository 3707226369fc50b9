/**
 * `run --record DIR` (`journal.record.dir`): for every detection, the raw Falco alerts that led to
 * it, written as a test case for `falco-companion test` (src/cases/): `DIR/<detection id>/` with
 * `alerts.jsonl` (the alerts as Falco sent them), `enrichment.json` (what the enrichers added to
 * each, by line) and `case.yaml` expecting the detection again.
 *
 * Which alerts: the detection's evidence, plus the other alerts of the same workloads between its
 * first evidence and the detection (a beacon needs its whole series, a chain its context), from a
 * bounded in-memory buffer of recent alerts (`buffer_alerts`, oldest dropped first). When the
 * engine reports routed signals (observer `signal`), only alerts that became signals are buffered;
 * otherwise every alert that reaches the detection stage is.
 *
 * Bounded and counted: alerts and bytes per case, cases and bytes in the directory (the oldest case
 * folders are removed first). Files are written off the alert path (queued, written asynchronously,
 * a bounded queue); a failed write is logged and counted.
 */
import type { Config } from '../config/schema.js';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify as yamlStringify } from 'yaml';
import { serializeAlert, type Alert, type EnrichValue } from '../alert.js';
import type { Finding, Signal } from '../detect/types.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import { ALERT_ID_KEY, alertIdOf } from '../store/alert-id.js';
import type { SignalOutcome } from './observer.js';
import { INCIDENT_KEY, REPORT_URL_KEY } from './record.js';

export type RecordConfig = Config['journal']['record'];

const ID = 'journal/record';
/** Cases waiting to be written; beyond it new ones are dropped (counted). */
const MAX_PENDING = 64;
/** A case folder: the detection's alert id (ULID, sorts by time). */
const CASE_DIR = /^[0-9A-HJKMNP-TV-Z]{26}$/;
/** Companion keys that are the companion's bookkeeping, not enrichment facts. */
const NOT_FACTS = new Set([ALERT_ID_KEY, INCIDENT_KEY, REPORT_URL_KEY]);

interface Buffered {
  readonly alert: Alert;
  readonly scope: string;
  readonly seq: number;
}

interface PendingCase {
  readonly id: string;
  readonly alert: Alert;
  readonly evidence: readonly Buffered[];
  readonly others: readonly Buffered[];
  /** Evidence alerts no longer in the buffer. */
  readonly missing: number;
  readonly flushed: boolean;
}

export interface RecorderDeps {
  readonly config: RecordConfig & { readonly dir: string };
  /** The rules file the daemon runs with (null: the built-in rules), named in each case. */
  readonly rulesFile: string | null;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
}

function scopeOf(a: Alert): string {
  const c = a.outputFields?.['container.id'];
  return typeof c === 'string' && c !== '' && c !== 'host' ? c.slice(0, 12).toLowerCase() : 'host';
}

export class CaseRecorder {
  /** Recent alerts, oldest first, at most `buffer_alerts` (a ring). */
  private readonly ring: (Buffered | undefined)[];
  private next = 0;
  private seq = 0;
  private readonly byId = new Map<string, Buffered>();
  /** True once the engine reported a routed signal: buffer signals only from then on. */
  private signalFed = false;
  private pending: PendingCase[] = [];
  private writing: Promise<void> | null = null;
  /** Case folders on disk, oldest first, with their sizes (scanned at start). */
  private cases: { name: string; bytes: number }[] | null = null;
  private readonly log: Logger;
  private readonly warn: RateLimitedLog;
  private readonly m;

  constructor(private readonly d: RecorderDeps) {
    this.ring = new Array<Buffered | undefined>(Math.max(1, d.config.buffer_alerts));
    this.log = d.logger.child({ component: ID });
    this.warn = rateLimited(this.log, { intervalMs: 60_000, level: 'error', now: d.now });
    const mm = d.metrics;
    this.m = {
      cases: mm.counter('record_cases_total', 'Test cases recorded for detections (run --record)'),
      pruned: mm.counter<'reason'>('record_cases_pruned_total', 'Recorded test cases removed to respect the bounds (max_cases, max_total_bytes)', ['reason']),
      trimmed: mm.counter<'reason'>('record_alerts_trimmed_total', 'Alerts left out of a recorded case (max_alerts, max_bytes, not_buffered: evidence no longer in the buffer)', ['reason']),
      dropped: (reason: string, n = 1) => mm.discarded.inc({ component: ID, reason }, n),
    };
  }

  /** The engine's signal hook (observer contract): buffer the alert a routed signal came from. */
  signal(sig: Signal, _detector: string, _outcome: SignalOutcome): void {
    this.signalFed = true;
    this.keep(sig.alert);
  }

  /** Every alert reaching the detection stage (buffered unless the engine reports signals). */
  seen(a: Alert): void {
    if (!this.signalFed) this.keep(a);
  }

  private keep(a: Alert): void {
    const id = alertIdOf(a);
    if (id === null || this.byId.has(id)) return;
    const old = this.ring[this.next];
    if (old) {
      const oid = alertIdOf(old.alert);
      if (oid !== null) this.byId.delete(oid);
    }
    const b: Buffered = { alert: a, scope: scopeOf(a), seq: this.seq++ };
    this.ring[this.next] = b;
    this.byId.set(id, b);
    this.next = (this.next + 1) % this.ring.length;
  }

  /**
   * A detection was emitted: choose its alerts now (references only), build and write the case
   * later. `flushed`: emitted when the input ended (a pending repeat summary): the case counts those too.
   */
  detection(alert: Alert, finding: Finding | null, flushed = false): void {
    const id = alertIdOf(alert);
    if (id === null) return;
    if (this.pending.length >= MAX_PENDING) {
      this.m.dropped('queue_full');
      return;
    }
    const evidence = new Map<string, Buffered>();
    let missing = 0;
    for (const s of finding?.evidence ?? []) {
      const eid = alertIdOf(s.alert);
      if (eid === null || evidence.has(eid)) continue;
      const b = this.byId.get(eid);
      if (b) evidence.set(eid, b);
      else missing++;
    }
    // The same workloads' other alerts between the first evidence and the detection.
    const scopes = new Set(finding ? finding.evidence.map((s) => (s.containerId ? s.containerId.slice(0, 12).toLowerCase() : 'host')) : [scopeOf(alert)]);
    // Without the finding (no engine hook), the workload's whole buffered history before it.
    let fromNs = finding ? alert.timeNs : -1n;
    for (const s of finding?.evidence ?? []) if (s.timeNs < fromNs) fromNs = s.timeNs;
    const others: Buffered[] = [];
    for (const b of this.ring) {
      if (b && scopes.has(b.scope) && b.alert.timeNs >= fromNs && b.alert.timeNs <= alert.timeNs && !evidence.has(alertIdOf(b.alert) as string)) others.push(b);
    }
    this.pending.push({ id, alert, evidence: [...evidence.values()], others, missing, flushed });
    this.kick();
  }

  /** The case's files: evidence first, then the newest other alerts, within the bounds; in time order. */
  private build(p: PendingCase): { files: Record<string, string>; bytes: number } | null {
    const c = this.d.config;
    const { id, alert } = p;
    let trimmedCount = 0;
    let trimmedBytes = 0;
    let bytes = 0;
    const lines: { b: Buffered; text: string }[] = [];
    const add = (b: Buffered): void => {
      if (lines.length >= c.max_alerts) {
        trimmedCount++;
        return;
      }
      const text = serializeAlert(b.alert, { includeCompanion: false });
      if (bytes + text.length + 1 > c.max_bytes) {
        trimmedBytes++;
        return;
      }
      bytes += text.length + 1;
      lines.push({ b, text });
    };
    for (const b of p.evidence) add(b);
    for (const b of [...p.others].sort((x, y) => y.seq - x.seq)) add(b);
    if (p.missing > 0) this.m.trimmed.inc({ reason: 'not_buffered' }, p.missing);
    if (trimmedCount > 0) this.m.trimmed.inc({ reason: 'max_alerts' }, trimmedCount);
    if (trimmedBytes > 0) this.m.trimmed.inc({ reason: 'max_bytes' }, trimmedBytes);
    if (lines.length === 0) return null;
    lines.sort((x, y) => (x.b.alert.timeNs < y.b.alert.timeNs ? -1 : x.b.alert.timeNs > y.b.alert.timeNs ? 1 : x.b.seq - y.b.seq));
    const enrichment: Record<string, Record<string, EnrichValue>> = {};
    lines.forEach(({ b }, i) => {
      const keys: Record<string, EnrichValue> = {};
      for (const [k, v] of Object.entries(b.alert.companion)) if (!NOT_FACTS.has(k)) keys[k] = v;
      if (Object.keys(keys).length > 0) enrichment[String(i + 1)] = keys;
    });
    const notes = [
      `Recorded by falco-companion run --record from detection ${id} (${alert.priority} at ${alert.time}).`,
      ...(p.missing > 0 ? [`${p.missing} evidence alert(s) were no longer in the buffer (journal.record.buffer_alerts).`] : []),
      ...(trimmedCount + trimmedBytes > 0 ? [`${trimmedCount + trimmedBytes} alert(s) left out (journal.record.max_alerts / max_bytes).`] : []),
    ];
    const detector = typeof alert.companion['detector'] === 'string' ? alert.companion['detector'] : null;
    const hasEnrichment = Object.keys(enrichment).length > 0;
    const doc: Record<string, unknown> = {
      name: `${detector ?? 'detection'}-${id}`,
      description: `${alert.rule} (${alert.priority}). ${notes.join(' ')}`,
      alerts: 'alerts.jsonl',
      ...(hasEnrichment ? { enrichment: 'enrichment.json' } : {}),
      ...(this.d.rulesFile ? { rules_file: this.d.rulesFile } : {}),
      ...(p.flushed ? { flush: true } : {}),
      expect: {
        detections: [{ ...(detector ? { detector } : {}), rule: alert.rule, min_priority: alert.priority }],
        // The stream may complete other detections too: review, then tighten to fail.
        other_detections: 'ignore',
      },
    };
    const files: Record<string, string> = {
      'alerts.jsonl': lines.map((l) => l.text).join('\n') + '\n',
      'case.yaml': `# Detection test case (falco-companion test DIR; format: docs/testing-detections.md)\n${yamlStringify(doc, { lineWidth: 0 })}`,
    };
    if (hasEnrichment) files['enrichment.json'] = JSON.stringify(enrichment, null, 1) + '\n';
    return { files, bytes: Object.values(files).reduce((n, t) => n + Buffer.byteLength(t), 0) };
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = (async () => {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        for (const p of batch) await this.write(p);
      }
    })().finally(() => {
      this.writing = null;
      if (this.pending.length > 0) this.kick();
    });
  }

  private async scan(): Promise<{ name: string; bytes: number }[]> {
    const root = this.d.config.dir;
    await mkdir(root, { recursive: true });
    const out: { name: string; bytes: number }[] = [];
    // Only folders named like a detection id are ours to count and remove.
    const ours = (await readdir(root, { withFileTypes: true })).filter((x) => x.isDirectory() && CASE_DIR.test(x.name));
    for (const e of ours.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      let bytes = 0;
      for (const f of await readdir(join(root, e.name), { withFileTypes: true })) if (f.isFile()) bytes += (await stat(join(root, e.name, f.name))).size;
      out.push({ name: e.name, bytes });
    }
    return out;
  }

  private async write(p: PendingCase): Promise<void> {
    const c = this.d.config;
    try {
      const built = this.build(p);
      if (built === null) {
        this.m.dropped('no_alerts');
        return;
      }
      if (built.bytes > c.max_total_bytes) {
        this.m.dropped('too_large');
        return;
      }
      this.cases ??= await this.scan();
      const cases = this.cases;
      // Room first: the oldest cases go (ids sort by time).
      for (;;) {
        const over = cases.length + 1 > c.max_cases ? 'max_cases' : cases.reduce((n, x) => n + x.bytes, 0) + built.bytes > c.max_total_bytes ? 'max_total_bytes' : null;
        const old = over ? cases.shift() : undefined;
        if (!over || !old) break;
        await rm(join(c.dir, old.name), { recursive: true, force: true });
        this.m.pruned.inc({ reason: over });
      }
      const dir = join(c.dir, p.id);
      await mkdir(dir, { recursive: true });
      for (const [name, text] of Object.entries(built.files)) await writeFile(join(dir, name), text);
      cases.push({ name: p.id, bytes: built.bytes });
      this.m.cases.inc();
      this.log.info({ alert_id: p.id, dir }, 'detection recorded as a test case');
    } catch (err) {
      this.d.metrics.errors.inc({ component: ID, code: errorCode(err) });
      this.m.dropped('write_failed');
      this.warn({ error: errorMessage(err), dir: c.dir }, 'recording a test case failed');
    }
  }

  /** Wait for the cases still being written (shutdown), at most until the deadline. */
  async drain(deadlineMs: number): Promise<void> {
    while (this.writing && Date.now() < deadlineMs) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.writing, new Promise<void>((res) => (t = setTimeout(res, Math.max(0, deadlineMs - Date.now()))))]);
      clearTimeout(t);
    }
  }
}
