/**
 * The one place that wires the pipeline from a validated config. Nothing happens at import time;
 * every dependency (logger, metrics, clock, streams) is passed in.
 */
import type { Writable } from 'node:stream';
import type { Alert } from './alert.js';
import { createAlert } from './alert.js';
import type { Clock } from './clock.js';
import type { Component, ComponentHealth } from './component.js';
import type { Config } from './config/schema.js';
import { errorMessage } from './errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { join } from 'node:path';
import { MemoryIntake } from './pipeline/intake.js';
import { Pipeline } from './pipeline/pipeline.js';
import { Router } from './pipeline/router.js';
import type { DetectStage, Enricher, Intake, PipelineIntake, Sink } from './pipeline/types.js';
import { HttpServer } from './server/http.js';
import { OpsServer, opsPlacement, testAlertRoute } from './server/ops.js';
import { MemoryDeliveryQueue } from './sinks/delivery-queue.js';
import { FalcosidekickSink } from './sinks/falcosidekick.js';
import { FileSink } from './sinks/file.js';
import { StdoutSink } from './sinks/stdout.js';
import { RecentDetections, recordingStage } from './sinks/recent-detections.js';
import { FileSource } from './sources/file.js';
import { GrpcSource } from './sources/grpc.js';
import { MetricsSource } from './sources/metrics.js';
import { STATE_DB_FILE, openStateDb, type Db } from './store/db.js';
import { Spool } from './store/spool.js';
import { buildEnrichment } from './enrich/wiring.js';
import { buildDetection } from './detect/wiring.js';
import { buildClusterStore } from './cluster/wiring.js';
import { Journal } from './journal/journal.js';
import { CaseRecorder } from './journal/recorder.js';
import { reportRoute, reportUrlFor } from './report/route.js';
import { inputLimits } from './limits.js';
import { Redactor, redactingSink } from './redact.js';

export interface AppDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Stream for the stdout sink (default process.stdout). */
  readonly stdout?: Writable;
  /** Stream for `--input -` (default process.stdin). */
  readonly stdin?: NodeJS.ReadableStream;
  /** Replay mode: the file source reads to EOF once, as fast as possible. */
  readonly replay?: { readonly path: string; readonly onProgress?: (p: { lines: number; alerts: number; skipped: number }) => void };
  /** Called with every alert handed to the sinks (demo output, tests). */
  readonly onForwarded?: (a: Alert) => void;
}

export interface App {
  start(): Promise<void>;
  /** Graceful: stop intake, drain and flush within the deadline (absolute ms). Idempotent. */
  stop(deadlineMs: number): Promise<void>;
  /** Bound HTTP input address once started (null when the HTTP input is off). */
  httpAddress(): { host: string; port: number } | null;
  /** Where the operations endpoints answer once started (the HTTP input's address when shared; null when off). */
  opsAddress(): { host: string; port: number } | null;
  /** Resolves when a finite input (replay, stdin) has been read completely. */
  inputDone(): Promise<unknown> | null;
  /**
   * The finite input ended: stop every source, let the pipeline hand everything accepted to the
   * sinks, wait until the sinks delivered it (or `deadlineMs`), then stop. What is left is kept
   * in the spool (delivered at the next start) or, with the spool off, lost; both are reported.
   */
  finish(deadlineMs: number): Promise<FinishReport>;
  /** SIGHUP: reload rules, reopen files. */
  reload(): void;
  health(): { ready: boolean; components: Record<string, ComponentHealth> };
  /** The memory intake, or the durable spool when spool.enabled (not in replay). */
  readonly intake: Intake & PipelineIntake;
  readonly spool: Spool | null;
}

/** What {@link App.finish} left undelivered. */
export interface FinishReport {
  /** Everything accepted was delivered (or given up by a sink as permanent) before the deadline. */
  readonly drained: boolean;
  /** Alerts kept in the spool for the next start. */
  readonly kept: number;
  /** Alerts the sinks still held at the deadline with the spool off (lost when the process exits). */
  readonly lost: number;
}

/** How often finish() looks whether the sinks are done. */
const FINISH_POLL_MS = 20;

/** A sample alert for POST /test, like Falcosidekick's test alert but a real Falco shape. */
export function testAlert(clock: Clock, hostname: string): Alert {
  const ns = BigInt(clock.now()) * 1_000_000n;
  const time = new Date(clock.now()).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
  return createAlert({
    time,
    rule: 'Test rule',
    priority: 'Debug',
    source: 'syscall',
    hostname,
    output: `${time.slice(11, 19)}.000000000: Debug This is a test from falco-companion`,
    tags: ['falco_companion', 'test'],
    outputFields: { 'evt.time': Number(ns) <= Number.MAX_SAFE_INTEGER ? Number(ns) : String(ns), 'proc.name': 'falco-companion', 'container.id': 'host' },
    origin: { kind: 'test', component: 'server/ops' },
  });
}

export function buildApp(config: Config, deps: AppDeps): App {
  const { logger, metrics, clock } = deps;
  // Components make their own child logger ({ component: id }); GrpcSource is handed one.
  const log = (component: string): Logger => logger.child({ component });

  // State database: opened lazily, only when something persists.
  let db: Db | null = null;
  const stateDb = (): Db => (db ??= openStateDb(config.state_dir));

  // Intake: the durable spool (accepted = committed to disk), or the bounded memory queue.
  const spool =
    config.spool.enabled && !deps.replay
      ? new Spool({ db: stateDb(), path: config.state_dir === ':memory:' ? ':memory:' : join(config.state_dir, STATE_DB_FILE), config: config.spool, logger, metrics, clock })
      : null;
  const intake: Intake & PipelineIntake = spool ?? new MemoryIntake(config.queue.max_alerts, metrics);

  // Sinks: sidekick delivers from the spool, or from a bounded memory queue of its own.
  // (redact.forwarded: what the sinks take has its secrets masked; detection sees the original)
  const redactor = config.redact.forwarded ? new Redactor(config.redact.patterns) : null;
  const sinks: Sink[] = [];
  const addSink = (s: Sink): void => void sinks.push(redactor ? redactingSink(s, redactor) : s);
  const sk = config.sinks.falcosidekick;
  if (sk.url) {
    const queue = spool?.delivery ?? new MemoryDeliveryQueue({ id: 'sink/falcosidekick', maxQueue: sk.max_queue, maxElapsedMs: sk.max_elapsed, metrics, logger });
    addSink(new FalcosidekickSink({ queue, config: sk, logger, metrics }));
  }
  if (config.sinks.stdout.enabled) addSink(new StdoutSink({ logger, metrics, stream: deps.stdout ?? process.stdout }));
  if (config.sinks.file.path) addSink(new FileSink({ config: config.sinks.file, logger, metrics }));

  // Learned state shared with other nodes (store.backend: redis), local first; null: this node only.
  const cluster = buildClusterStore(config, { logger, metrics, db: stateDb });

  // Enrichment and detection
  const enrichment = config.enrich.enabled ? buildEnrichment(config, { logger, metrics, clock, db: stateDb, cluster }) : { enrichers: [] as Enricher[], components: [] as Component[] };
  const hostname = process.env['FALCO_HOSTNAME'] ?? process.env['HOSTNAME'] ?? 'falco-companion';
  // The detection journal (records for `report`, tune, explain and the page on the ops port).
  const serveReports = config.journal.serve && config.ops.enabled && !deps.replay;
  const reportUrl = reportUrlFor({
    externalUrl: config.journal.external_url,
    hostname: () => hostname,
    listener: () => {
      const a = ops?.address() ?? http?.address();
      return a ? { port: a.port, tls: ops?.address() == null && config.http.tls.cert !== null } : null;
    },
  });
  const recordDir = config.journal.record.dir;
  const recorder = recordDir
    ? new CaseRecorder({ config: { ...config.journal.record, dir: recordDir }, rulesFile: config.detect.rules_file, logger, metrics, now: () => clock.now() })
    : null;
  const journal =
    config.detect.enabled && (config.journal.enabled || recorder)
      ? new Journal({ config: config.journal, db: stateDb, logger, metrics, clock, ...(serveReports ? { reportUrl } : {}), ...(recorder ? { recorder } : {}) })
      : null;
  // Replays never read or write the detection state (a replay is deterministic from its input).
  const detection = config.detect.enabled
    ? buildDetection(config, { logger, metrics, clock, db: deps.replay ? null : stateDb, statsDb: stateDb, ...(journal ? { observers: [journal.observer] } : {}), series: deps.replay ? null : (cluster?.series ?? null) })
    : null;
  // The last detections, for GET /detections (read-only ops endpoint; `emulate run --verify`).
  const recent = new RecentDetections(undefined, metrics);
  // Resource usage per container: deviations enter the intake as signal alerts (src/sources/metrics.ts).
  const metricsSource =
    config.metrics.enabled && !deps.replay
      ? new MetricsSource({ config: config.metrics, runtime: config.enrich.container, intake, db: stateDb(), logger, metrics, clock, hostname, cluster })
      : null;
  const detect: DetectStage | null = detection ? recordingStage(journal ? journal.stage(detection.stage) : detection.stage, recent) : null;

  const router = new Router(config.route, metrics);
  const pipeline = new Pipeline({
    intake,
    enrichers: metricsSource ? [...enrichment.enrichers, metricsSource.seen] : enrichment.enrichers,
    enrichBudgetMs: config.enrich.budget,
    detect,
    ...(detection ? { detectReady: detection.ready } : {}),
    router,
    sinks,
    concurrency: config.queue.concurrency,
    logger,
    metrics,
    ...(deps.onForwarded ? { onForwarded: deps.onForwarded } : {}),
  });

  // Sources (each applies the input limits right after parsing)
  const limits = inputLimits(config.limits);
  const sources: Component[] = [];
  let fileSource: FileSource | null = null;
  let http: HttpServer | null = null;
  let ops: OpsServer | null = null;
  const all = (): Component[] => [...sources, pipeline, ...enrichment.components, ...(cluster ? [cluster.sync] : []), ...(detection?.components ?? []), ...(journal ? [journal] : []), ...sinks, ...(spool ? [spool] : []), ...(ops ? [ops] : [])];
  const health = (): { ready: boolean; components: Record<string, ComponentHealth> } => {
    const components: Record<string, ComponentHealth> = {};
    for (const c of all()) components[c.id] = c.health();
    const sourcesReady = sources.every((s) => s.health().ready);
    // With the spool, a failing sink does not make us unready: alerts are kept until it is back
    // (taking the receiver out of service would make Falco drop them instead).
    const sinkReady = sinks.length === 0 ? false : spool !== null || sinks.some((s) => s.health().ready);
    const spoolReady = spool ? spool.health().ready : true;
    return { ready: sourcesReady && sinkReady && spoolReady && !stopping, components };
  };
  // Operations endpoints: never reachable from other hosts unless ops.listen says so (on the HTTP
  // input's listener when that is loopback or named by ops.listen; else a listener of their own,
  // so a gRPC-only companion keeps /metrics). The rule: opsPlacement in src/server/ops.ts.
  const httpOn = config.http.enabled && !deps.replay;
  const placement = opsPlacement(config, httpOn);
  const opsShared = placement.shared;
  if (config.ops.enabled && !deps.replay) {
    const note = placement.why === 'loopback-default' ? { exposure: 'loopback only (http.listen is not loopback and ops.listen is empty): set ops.listen to reach /metrics and /readyz from elsewhere' } : null;
    ops = new OpsServer({ listen: opsShared ? null : placement.listen, config: config.http, logger, metrics, readiness: health, ...(note ? { logFields: note } : {}) });
    ops.route(testAlertRoute({ intake, alert: () => testAlert(clock, hostname), retryAfterMs: config.http.retry_after, token: config.ops.test_token, logger, metrics }));
    ops.route({
      method: 'GET',
      path: '/detections',
      handle: (req) => {
        const a = recent.handle(`${req.path}?${req.query.toString()}`);
        return { status: a.status, json: a.body };
      },
    });
    if (journal && serveReports && config.journal.enabled) ops.route(reportRoute({ reader: () => journal.reader(), now: () => clock.now() }));
  }
  if (httpOn) {
    http = new HttpServer({ config: config.http, intake, logger, metrics, ops: opsShared ? ops : null, limits });
    sources.push(http);
  }
  if (metricsSource) sources.push(metricsSource);
  if (config.grpc.enabled && !deps.replay) {
    sources.push(new GrpcSource({ config: config.grpc, intake, logger: log('source/grpc'), metrics, limits }));
  }
  const inputPath = deps.replay?.path ?? config.input.path;
  if (inputPath) {
    const kind = deps.replay ? 'replay' : inputPath === '-' ? 'stdin' : 'file';
    fileSource = new FileSource({
      path: inputPath,
      fromStart: deps.replay ? true : config.input.from_start,
      follow: !deps.replay && inputPath !== '-',
      pollIntervalMs: config.input.poll_interval,
      maxLineBytes: config.input.max_line_bytes,
      limits,
      intake,
      logger,
      metrics,
      originKind: kind,
      // The read position is kept only where the alerts are: in the spool, committed with them.
      ...(kind === 'file' && spool ? { checkpoints: spool.checkpoints, rotatedNames: config.input.rotated_names, checkpointRetentionMs: config.input.checkpoint_retention } : {}),
      ...(deps.stdin ? { stdin: deps.stdin } : {}),
      ...(deps.replay?.onProgress ? { onProgress: deps.replay.onProgress } : {}),
    });
    sources.push(fileSource);
    if (kind === 'file' && !spool) {
      logger.warn({ component: fileSource.id, path: inputPath }, 'spool.enabled is false: the read position is not kept, a restart starts at the end of the file again (input.from_start) and lines written while stopped are not read');
    }
  }

  let started = false;
  let stopping = false;
  let stopped: Promise<void> | null = null;

  const app: App = {
    intake,
    spool,
    async start() {
      if (started) return;
      started = true;
      await spool?.start();
      for (const s of sinks) await s.start();
      for (const c of enrichment.components) await c.start();
      await cluster?.sync.start();
      for (const c of detection?.components ?? []) await c.start();
      await journal?.start();
      await pipeline.start();
      await ops?.start();
      for (const s of sources) await s.start();
      logger.info(
        {
          component: 'app',
          sources: sources.map((s) => s.id),
          sinks: sinks.map((s) => s.id),
          enrichers: enrichment.enrichers.map((e) => e.id),
          detection: detect !== null,
        },
        'falco-companion started',
      );
    },
    stop(deadlineMs: number) {
      stopped ??= (async () => {
        stopping = true;
        // 1. stop intake at the edges
        for (const s of [...sources].reverse()) {
          try {
            await s.stop(deadlineMs);
          } catch (err) {
            logger.warn({ component: s.id, error: errorMessage(err) }, 'stop failed');
          }
        }
        // 2. drain the pipeline into the sinks, 3. flush the sinks, 4. stop enrichers/detectors
        //    (the detection state is checkpointed here, after the last alert went through)
        await pipeline.stop(deadlineMs);
        // (the shared store after the enrichers: their last flush goes to it)
        for (const c of [...sinks, ...(detection?.components ?? []), ...(journal ? [journal] : []), ...enrichment.components, ...(cluster ? [cluster.sync] : [])]) {
          try {
            await c.stop(deadlineMs);
          } catch (err) {
            logger.warn({ component: c.id, error: errorMessage(err) }, 'stop failed');
          }
        }
        // 5. commit what the spool still buffers (kept alerts are resumed at the next start)
        const left = spool ? 0 : sinks.reduce((n, s) => n + s.pending(), 0) + intake.depth;
        if (spool) {
          try {
            await spool.stop(deadlineMs);
          } catch (err) {
            logger.warn({ component: spool.id, error: errorMessage(err) }, 'stop failed');
          }
        }
        // counted after the last commit (acks and finished rows still buffered are not "kept")
        const kept = spool ? spool.size : 0;
        // 6. the operations endpoints last, when they have a listener of their own (/readyz says
        //    "stopping" and /metrics answers during the drain)
        try {
          await ops?.stop(deadlineMs);
        } catch (err) {
          logger.warn({ component: ops?.id, error: errorMessage(err) }, 'stop failed');
        }
        if (db) {
          try {
            db.close();
          } catch (err) {
            logger.warn({ component: 'store', error: errorMessage(err) }, 'closing the state database failed');
          }
        }
        if (spool) logger.info({ component: 'app', kept_in_spool: kept }, kept === 0 ? 'stopped cleanly' : `stopped: ${kept} alert(s) kept in the spool for the next start`);
        else logger.info({ component: 'app', undelivered: left }, left === 0 ? 'stopped cleanly' : 'stopped with undelivered alerts');
      })();
      return stopped;
    },
    async finish(deadlineMs: number): Promise<FinishReport> {
      // Everything accepted, from the spool (its count includes rows resumed at start) or the sinks.
      // Rows in the spool wait for the sidekick sink (without one, rows left from an earlier run
      // with a sidekick URL are not this run's to deliver).
      const spooled = spool !== null && sinks.some((s) => s instanceof FalcosidekickSink);
      const undelivered = (): number => {
        const sinking = sinks.reduce((n, s) => n + (spool && s instanceof FalcosidekickSink ? 0 : s.pending()), 0);
        if (!spool) return sinking + intake.depth;
        spool.flushNow();
        return sinking + (spooled ? spool.size : 0);
      };
      let left = 0;
      if (!stopping) {
        // No new alerts (gRPC would take them from Falco and drop them), then the pipeline drains.
        await Promise.all(sources.map((s) => s.stop(deadlineMs).catch((err: unknown) => logger.warn({ component: s.id, error: errorMessage(err) }, 'stop failed'))));
        await pipeline.stop(deadlineMs);
        left = undelivered();
        while (!stopping && left > 0 && Date.now() < deadlineMs) {
          await new Promise((r) => setTimeout(r, FINISH_POLL_MS));
          if (!stopping) left = undelivered();
        }
      }
      if (stopping) {
        // A signal came first: the ordinary shutdown reports what it kept.
        await app.stop(Date.now() + config.shutdown.deadline);
        return { drained: false, kept: spool?.size ?? 0, lost: 0 };
      }
      const report: FinishReport = { drained: left === 0, kept: spool ? left : 0, lost: spool ? 0 : left };
      if (left === 0) logger.info({ component: 'app' }, 'input ended: everything accepted was delivered');
      else if (spool) logger.warn({ component: 'app', kept_in_spool: left }, `input ended: ${left} alert(s) not delivered within input.drain_timeout, kept in the spool for the next start`);
      else logger.error({ component: 'app', undelivered: left }, `input ended: ${left} alert(s) not delivered within input.drain_timeout, lost (spool off)`);
      await app.stop(Date.now() + config.shutdown.deadline);
      return report;
    },
    httpAddress: () => http?.address() ?? null,
    opsAddress: () => (ops === null ? null : (ops.address() ?? http?.address() ?? null)),
    inputDone: () => fileSource?.done() ?? null,
    reload() {
      detection?.reload();
      for (const s of sinks) {
        if (s instanceof FileSink) s.reopen().catch((err: unknown) => logger.error({ component: s.id, error: errorMessage(err) }, 'reopening the output file failed'));
      }
    },
    health,
  };
  return app;
}
