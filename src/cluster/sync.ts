/**
 * Write-behind replication of the learned state (`store/redis`): the local copies (SQLite) answer
 * every read; their changes wait in a bounded outbox and go to the shared store in batches; other
 * nodes' changes are pulled and merged into the local copies. Nothing on the alert path waits for
 * the shared store: `put` is a map update, everything else runs in one background loop.
 *
 * - Flush: every `flushIntervalMs`, up to 10 batches of `batchSize` fields (one script call each).
 *   A failed batch goes back into the outbox (merged with what came since).
 * - Pull: every `pullIntervalMs`, per namespace, the fields announced after this node's cursor
 *   (at most `maxPull` per page, a few pages per round), merged into the local copy; the cursor is
 *   saved in the state database.
 * - Outage: writes accumulate in the outbox up to `maxPending` changes; beyond it they are dropped
 *   (counted) and the whole local copy is offered again once the store is back (a resync), so the
 *   store converges anyway. The client reconnects with exponential backoff and jitter.
 * - Epoch: the store keeps a random id made by the first node. A different id than the one this
 *   node last synced with means the store lost its data (or is another store): cursors restart at
 *   0 and the local copy is pushed again. A version counter below this node's cursor (a restore
 *   from an older snapshot) does the same.
 * - A run that ended (or crashed) with changes not yet written resyncs at its next start.
 */
import { hostname } from 'node:os';
import type { Component, ComponentHealth } from '../component.js';
import { backoffMs, sleep } from '../component.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { encodeTuple, decodeTuple, mergeTuple, type Tuple } from './tuple.js';
import type { ChangeSink, Entry, NamespaceName, Replica, SharedStore, SnapshotReason } from './types.js';

export const SYNC_NAMESPACE = 'cluster_sync';
const MIGRATIONS = [`CREATE TABLE cluster_sync (key TEXT PRIMARY KEY, value TEXT NOT NULL)`];

export interface ClusterSyncOptions {
  readonly store: SharedStore;
  /** State database for the sync's own bookkeeping (epoch, cursors); null: kept in memory only. */
  readonly db: Db | null;
  readonly node: string;
  readonly flushIntervalMs: number;
  readonly pullIntervalMs: number;
  readonly batchSize: number;
  readonly maxPending: number;
  readonly maxPull: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Wall clock in ms (timestamps of heartbeats and TTL trims). */
  readonly now?: () => number;
}

interface Pending {
  readonly ops: string;
  t: Tuple;
}

/** This node's name in the shared store: the configured one, else NODE_NAME, HOSTNAME, the host name. */
export function nodeName(configured: string | null, env: NodeJS.ProcessEnv = process.env): string {
  return (configured ?? env['NODE_NAME'] ?? env['HOSTNAME'] ?? hostname()).slice(0, 128) || 'node';
}

const FLUSH_BATCHES = 10;
const PULL_PAGES = 5;

export class ClusterSync implements Component, ChangeSink {
  readonly id = 'store/redis';
  private readonly o: ClusterSyncOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly replicas = new Map<NamespaceName, Replica>();
  private readonly outbox = new Map<NamespaceName, Map<string, Map<string, Pending>>>();
  private pending = 0;
  /** Changes in a write that has not answered yet. */
  private inFlight = 0;
  private pendingSinceMs: number | null = null;
  private overflowed = false;
  private connected = false;
  private connectedSinceMs = 0;
  private disconnectedSinceMs: number;
  private lastError: string | null = null;
  /** Failed rounds in a row, and when the next round may run (backoff). */
  private failures = 0;
  private retryAtMs = 0;
  private needHello = true;
  private nodes = 0;
  private epoch: string | null = null;
  private storeEpoch: string | null = null;
  /** Per namespace: every field announced up to this version is here (the pull cursor). */
  private readonly cursors = new Map<NamespaceName, number>();
  /** Per namespace: where an unfinished pull pass got to. */
  private readonly pages = new Map<NamespaceName, number>();
  private clean = true;
  /** The last run ended with changes not written: resync once at the first hello. */
  private startedUnclean = false;
  private resync: { readonly reason: SnapshotReason; readonly it: Iterator<readonly [Replica, Entry]> } | null = null;
  private resyncReason: SnapshotReason | null = null;
  private lastPushMs = 0;
  private lastPullMs = 0;
  private loop: Promise<void> | null = null;
  private readonly stopper = new AbortController();
  private wake: (() => void) | null = null;
  private readonly warn: RateLimitedLog;
  private readonly m;

  constructor(o: ClusterSyncOptions) {
    this.o = o;
    this.log = o.logger.child({ component: this.id });
    this.now = o.now ?? Date.now;
    this.disconnectedSinceMs = this.now();
    this.warn = rateLimited(this.log, { intervalMs: 60_000, burst: 3 });
    const mx = o.metrics;
    this.m = {
      connected: mx.gauge('store_connected', '1 while the shared store (Redis) is connected and ready'),
      batches: mx.counter<'op' | 'result'>('store_batches_total', 'Shared-store round trips by operation (push, pull, hello) and result', ['op', 'result']),
      entries: mx.counter<'op'>('store_entries_total', 'Learned entries written to (push), announced by (announced) and read from (pull) the shared store', ['op']),
      lastBatch: mx.gauge<'op'>('store_last_batch_entries', 'Entries in the last push or pull batch', ['op']),
      resyncs: mx.counter<'reason'>('store_resyncs_total', 'Full pushes of the local copy (epoch: the store lost its data or is new; overflow: changes dropped while it was away)', ['reason']),
      discarded: mx.discarded.labels({ component: this.id, reason: 'outbox_full' }),
    };
    const view = {
      pending: (): number => this.pending,
      pushLag: (): number => (this.pendingSinceMs === null ? 0 : Math.max(0, this.now() - this.pendingSinceMs) / 1000),
      pullAge: (): number => (this.lastPullMs === 0 ? 0 : Math.max(0, this.now() - this.lastPullMs) / 1000),
      nodes: (): number => this.nodes,
    };
    mx.gauge('store_pending_changes', 'Local changes waiting to be written to the shared store', [], function () {
      this.set(view.pending());
    });
    mx.gauge('store_push_lag_seconds', 'Age of the oldest local change not yet written to the shared store (0: none waiting)', [], function () {
      this.set(view.pushLag());
    });
    mx.gauge('store_pull_age_seconds', 'Time since the last complete pull of other nodes\' changes', [], function () {
      this.set(view.pullAge());
    });
    mx.gauge('store_nodes', 'Nodes with a heartbeat in the shared store (as of the last hello)', [], function () {
      this.set(view.nodes());
    });
  }

  /** Attach a local store (before start). */
  register(r: Replica): void {
    this.replicas.set(r.spec.name, r);
  }

  get node(): string {
    return this.o.node;
  }

  get pendingChanges(): number {
    return this.pending;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  // -------------------------------------------------------------------------------------------
  // ChangeSink: the only call on the alert path

  put(ns: NamespaceName, group: string, field: string, ops: string, t: Tuple): void {
    let groups = this.outbox.get(ns);
    if (!groups) this.outbox.set(ns, (groups = new Map()));
    let fields = groups.get(group);
    const old = fields?.get(field);
    if (old) {
      old.t = mergeTuple(ops, old.t, t);
      return;
    }
    if (this.pending >= this.o.maxPending) {
      this.overflowed = true;
      this.m.discarded.inc();
      return;
    }
    if (!fields) groups.set(group, (fields = new Map()));
    fields.set(field, { ops, t });
    if (this.pending === 0) this.pendingSinceMs = this.now();
    this.pending++;
  }

  // -------------------------------------------------------------------------------------------
  // Component

  async start(): Promise<void> {
    if (this.loop) return;
    this.loadState();
    this.o.store.connect((up, error) => this.onState(up, error));
    this.loop = this.run().catch((err: unknown) => this.log.error({ error: errorMessage(err) }, 'store sync loop failed'));
  }

  async stop(deadlineMs: number): Promise<void> {
    this.stopper.abort();
    this.wake?.();
    const within = async (p: Promise<unknown>): Promise<void> => {
      let t: NodeJS.Timeout | undefined;
      const left = Math.max(0, deadlineMs - Date.now());
      await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (t = setTimeout(r, left)))]);
      clearTimeout(t);
    };
    await within(this.loop ?? Promise.resolve());
    // Last write of what is waiting, within the deadline (a down store just keeps it in the next
    // run's resync: the flag below stays "not clean").
    if (this.connected && this.pending > 0) await within(this.exclusive(() => this.flush()));
    this.saveClean();
    await within(this.o.store.close());
    this.onState(false, null);
  }

  health(): ComponentHealth {
    const ago = (ms: number): string => (ms === 0 ? 'never' : `${Math.round((this.now() - ms) / 1000)}s ago`);
    const parts = this.connected
      ? [`${this.o.store.kind} connected`, `${this.nodes} nodes`, `${this.pending} pending`, `pushed ${ago(this.lastPushMs)}`, `pulled ${ago(this.lastPullMs)}`]
      : [`${this.o.store.kind} disconnected for ${Math.round((this.now() - this.disconnectedSinceMs) / 1000)}s${this.lastError ? ` (${this.lastError.slice(0, 80)})` : ''}`, `${this.pending} pending`, 'answering from local state'];
    if (this.resync) parts.push(`resync (${this.resync.reason}) in progress`);
    if (this.lastError && this.connected) parts.push(`last error: ${this.lastError.slice(0, 80)}`);
    // The shared store never makes the companion unready: it works on local state without it.
    return { ready: true, detail: parts.join('; ') };
  }

  // -------------------------------------------------------------------------------------------
  // Background loop

  private onState(up: boolean, error: string | null): void {
    if (up === this.connected) {
      if (error) this.lastError = error;
      return;
    }
    this.connected = up;
    this.m.connected.set(up ? 1 : 0);
    if (up) {
      this.connectedSinceMs = this.now();
      this.needHello = true;
      this.failures = 0;
      this.retryAtMs = 0;
      this.log.info({ status: 'connected', node: this.o.node }, 'shared store connected');
      this.wake?.();
    } else {
      this.disconnectedSinceMs = this.now();
      if (error) this.lastError = error;
      if (!this.stopper.signal.aborted) this.log.warn({ status: 'disconnected', error: this.lastError }, 'shared store disconnected; working on local state, reconnecting');
    }
  }

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let nextFlush = 0;
    let nextPull = 0;
    while (!signal.aborted) {
      const t = this.now();
      if (this.connected && t >= this.retryAtMs) {
        try {
          await this.exclusive(async () => {
            if (this.needHello || t >= nextPull) await this.hello();
            this.feedResync();
            if (t >= nextFlush || this.pending >= this.o.batchSize * FLUSH_BATCHES) {
              await this.flush();
              nextFlush = this.now() + this.o.flushIntervalMs;
            }
            if (t >= nextPull) {
              await this.pull();
              nextPull = this.now() + this.o.pullIntervalMs;
            }
          });
          this.failures = 0;
          this.saveClean();
        } catch (err) {
          this.failed(err);
        }
      }
      const after = this.now();
      let wait = Math.min(nextFlush, nextPull, this.retryAtMs > after ? this.retryAtMs : Infinity) - after;
      if (this.resync && this.connected && this.retryAtMs <= after) wait = 10;
      wait = Math.max(10, Math.min(wait, 1000));
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void sleep(wait, signal).then(resolve);
      });
      this.wake = null;
    }
  }

  private failed(err: unknown): void {
    const code = errorCode(err) === 'E_UNKNOWN' ? 'E_STORE' : errorCode(err);
    this.o.metrics.errors.inc({ component: this.id, code });
    this.lastError = errorMessage(err);
    this.failures++;
    this.retryAtMs = this.now() + backoffMs(this.failures - 1, Math.min(this.o.flushIntervalMs, 1000), 30_000);
    this.warn({ error: this.lastError, status: code }, 'shared store operation failed; local state in use, retrying with backoff');
  }

  private async hello(): Promise<void> {
    try {
      const live = Math.max(60_000, 5 * this.o.pullIntervalMs);
      const h = await this.o.store.hello(this.o.node, this.now(), live);
      this.m.batches.inc({ op: 'hello', result: 'ok' });
      this.nodes = h.nodes;
      this.needHello = false;
      const maxCursor = Math.max(0, ...this.cursors.values(), ...this.pages.values());
      if (h.epoch !== this.epoch) {
        this.log.info({ status: 'resync', epoch: h.epoch, previous: this.epoch }, this.epoch === null ? 'shared store joined: pushing the local copy' : 'shared store has a new epoch (its data was lost or it is another store): pushing the local copy again');
        this.resetCursors();
        this.storeEpoch = h.epoch;
        this.startResync('epoch');
      } else if (h.seq < maxCursor) {
        this.log.warn({ status: 'resync', seq: h.seq, cursor: maxCursor }, 'shared store went back in time (restored from an older snapshot): pulling everything and pushing the local copy again');
        this.resetCursors();
        this.startResync('overflow');
      } else if (this.startedUnclean && this.resync === null) {
        // The last run ended with changes not written.
        this.startedUnclean = false;
        this.startResync('overflow');
      }
      this.startedUnclean = false;
    } catch (err) {
      this.m.batches.inc({ op: 'hello', result: 'error' });
      throw err;
    }
  }

  /** Pull everything again (a new or rolled-back store). */
  private resetCursors(): void {
    this.cursors.clear();
    this.pages.clear();
    for (const ns of this.replicas.keys()) {
      this.save(`cursor:${ns}`, '0');
      this.save(`page:${ns}`, '0');
    }
  }

  private startResync(reason: SnapshotReason): void {
    this.m.resyncs.inc({ reason });
    if (reason === 'epoch') {
      // The snapshot holds everything the outbox does (and counts in full): a new store gets
      // each observation once.
      this.outbox.clear();
      this.pending = 0;
      this.pendingSinceMs = null;
    }
    this.resyncReason = reason;
    const replicas = [...this.replicas.values()];
    function* all(): Generator<readonly [Replica, Entry]> {
      for (const r of replicas) for (const e of r.snapshot(reason)) yield [r, e] as const;
    }
    this.resync = { reason, it: all() };
    this.overflowed = false;
  }

  /** Move part of the resync snapshot into the outbox, leaving room for live changes. */
  private feedResync(): void {
    if (!this.resync && this.overflowed) this.startResync('overflow');
    const rs = this.resync;
    if (!rs) return;
    const room = Math.floor(this.o.maxPending / 2) - this.pending;
    let n = 0;
    for (; n < Math.min(room, this.o.batchSize * FLUSH_BATCHES); n++) {
      const next = rs.it.next();
      if (next.done) {
        this.resync = null;
        this.resyncReason = null;
        if (rs.reason === 'epoch' && this.storeEpoch !== null) {
          this.epoch = this.storeEpoch;
          this.save('epoch', this.epoch);
        }
        this.log.info({ status: 'resync_done', reason: rs.reason }, 'local copy queued for the shared store');
        return;
      }
      const [r, e] = next.value;
      const ops = r.opsOf(e.field);
      if (ops) this.put(r.spec.name, e.group, e.field, ops, e.tuple);
    }
  }

  /** Write what waits, in batches. */
  async flush(): Promise<void> {
    for (let b = 0; b < FLUSH_BATCHES && this.pending > 0; b++) {
      for (const [ns, groups] of this.outbox) {
        if (groups.size === 0) continue;
        const r = this.replicas.get(ns);
        if (!r) {
          this.pending -= [...groups.values()].reduce((s, f) => s + f.size, 0);
          groups.clear();
          continue;
        }
        const batch = new Map<string, Map<string, Pending>>();
        let n = 0;
        for (const [group, fields] of groups) {
          if (n >= this.o.batchSize) break;
          if (fields.size <= this.o.batchSize - n || n === 0) {
            groups.delete(group);
            if (fields.size <= this.o.batchSize) {
              batch.set(group, fields);
              n += fields.size;
              continue;
            }
            // A huge group: take a batch of it, leave the rest.
            const part = new Map<string, Pending>();
            for (const [f, p] of fields) {
              if (part.size >= this.o.batchSize) break;
              part.set(f, p);
              fields.delete(f);
            }
            groups.set(group, fields);
            batch.set(group, part);
            n += part.size;
          } else break;
        }
        this.pending -= n;
        this.inFlight += n;
        const encoded = new Map<string, Map<string, string>>();
        for (const [g, fields] of batch) encoded.set(g, new Map([...fields].map(([f, p]) => [f, encodeTuple(p.ops, p.t)])));
        try {
          const announced = await this.o.store.push(r.spec, encoded, this.now()).finally(() => (this.inFlight -= n));
          this.m.batches.inc({ op: 'push', result: 'ok' });
          this.m.entries.inc({ op: 'push' }, n);
          this.m.entries.inc({ op: 'announced' }, announced);
          this.m.lastBatch.set({ op: 'push' }, n);
          this.lastPushMs = this.now();
        } catch (err) {
          this.m.batches.inc({ op: 'push', result: 'error' });
          for (const [g, fields] of batch) for (const [f, p] of fields) this.put(ns, g, f, p.ops, p.t);
          throw err;
        }
      }
    }
    if (this.pending === 0) this.pendingSinceMs = null;
  }

  /**
   * Merge what other nodes announced since this node's cursors: per namespace, a pass of pages
   * from `page` (where the pass got to) filtering fields by `cursor` (everything up to it is here);
   * a finished pass moves the cursor to where it ended. A pass longer than a round resumes.
   */
  private async pull(): Promise<void> {
    for (const r of this.replicas.values()) {
      const ns = r.spec.name;
      for (let page = 0; page < PULL_PAGES; page++) {
        const since = this.cursors.get(ns) ?? 0;
        const from = Math.max(since, this.pages.get(ns) ?? 0);
        let res;
        try {
          res = await this.o.store.pull(r.spec, from, since, this.o.maxPull);
          this.m.batches.inc({ op: 'pull', result: 'ok' });
        } catch (err) {
          this.m.batches.inc({ op: 'pull', result: 'error' });
          throw err;
        }
        const entries: Entry[] = [];
        for (const e of res.entries) {
          const ops = r.opsOf(e.field);
          const tuple = ops ? decodeTuple(ops, e.value) : null;
          if (tuple) entries.push({ group: e.group, field: e.field, tuple });
        }
        if (entries.length > 0) {
          try {
            r.applyRemote(entries);
          } catch (err) {
            this.o.metrics.errors.inc({ component: this.id, code: 'E_STORE_APPLY' });
            this.warn({ error: errorMessage(err), stage: ns }, 'merging pulled entries failed');
          }
        }
        this.m.entries.inc({ op: 'pull' }, entries.length);
        this.m.lastBatch.set({ op: 'pull' }, entries.length);
        if (res.more) {
          if (res.next !== from) {
            this.pages.set(ns, res.next);
            this.save(`page:${ns}`, String(res.next));
          }
          // Let alerts through between pages.
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        if (res.next !== since) {
          this.cursors.set(ns, res.next);
          this.save(`cursor:${ns}`, String(res.next));
        }
        this.pages.delete(ns);
        this.save(`page:${ns}`, '0');
        break;
      }
    }
    this.lastPullMs = this.now();
  }

  // -------------------------------------------------------------------------------------------
  // Bookkeeping in the state database

  private loadState(): void {
    const db = this.o.db;
    if (!db) return;
    migrate(db, SYNC_NAMESPACE, MIGRATIONS);
    const rows = db.prepare('SELECT key, value FROM cluster_sync').all() as { key: string; value: string }[];
    for (const { key, value } of rows) {
      if (key === 'epoch') this.epoch = value;
      else if (key === 'clean') this.clean = value === '1';
      else if (key.startsWith('cursor:')) this.cursors.set(key.slice(7) as NamespaceName, Number(value) || 0);
      else if (key.startsWith('page:')) this.pages.set(key.slice(5) as NamespaceName, Number(value) || 0);
    }
    this.startedUnclean = !this.clean;
  }

  private save(key: string, value: string): void {
    try {
      this.o.db?.prepare('INSERT INTO cluster_sync(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
    } catch (err) {
      this.o.metrics.errors.inc({ component: this.id, code: errorCode(err) });
      this.warn({ error: errorMessage(err) }, 'saving the store sync state failed');
    }
  }

  /** Record whether everything learned so far reached the store (a run ending "not clean" resyncs). */
  private saveClean(): void {
    const clean = this.pending === 0 && this.inFlight === 0 && this.resync === null && !this.overflowed;
    if (clean === this.clean) return;
    this.clean = clean;
    this.save('clean', clean ? '1' : '0');
  }

  /** One round at once (tests, `baseline import`): hello, the whole resync if one is due, flush, pull. */
  async syncNow(): Promise<void> {
    await this.exclusive(async () => {
      await this.hello();
      let i = 0;
      do {
        this.feedResync();
        await this.flush();
      } while (this.resync && ++i < 1_000_000);
      await this.pull();
    });
    this.saveClean();
  }

  /** Rounds never overlap (the loop, syncNow and the last flush at stop). */
  private chain: Promise<unknown> = Promise.resolve();
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** How long the store has been connected (ms), 0 when it is not. */
  connectedForMs(): number {
    return this.connected ? this.now() - this.connectedSinceMs : 0;
  }
}
