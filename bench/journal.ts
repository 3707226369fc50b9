/**
 * `node dist/bench/journal.js [--reps N]`: what the detection journal costs.
 *
 * 1. The alert path: a detection-heavy stream (the socket-filter bind-shell chain repeated in N
 *    containers: 15 alerts and 2 detections each) through the detection stage alone (baseline) and
 *    wrapped by the journal (ids, URLs, queueing), same process, same stream, interleaved runs;
 *    the journal's writer does not run during the timed loop (it runs on its timer, off the path).
 * 2. The writer, off the path: full records of the shipped examples (evidence, enrichment) built
 *    and written to a real SQLite file in batches of 256, per record; and the file size per record.
 * Prints a Markdown table (copied into docs/report.md).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alertFromJson, type Alert } from '../src/alert.js';
import { findCases } from '../src/cases/load.js';
import { runCase } from '../src/cases/run.js';
import { ManualClock } from '../src/clock.js';
import { configSchema, type Config } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { DetectionEngine } from '../src/detect/engine.js';
import { buildDetectors } from '../src/detect/registry.js';
import { loadRulesFile } from '../src/detect/rules/load.js';
import { Journal } from '../src/journal/journal.js';
import { JournalStore } from '../src/journal/store.js';
import type { DetectionRecord } from '../src/journal/types.js';
import { parse, stringify, type JsonObject } from '../src/json/lossless.js';
import { silentLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import type { DetectStage } from '../src/pipeline/types.js';
import { AlertIdGenerator } from '../src/store/alert-id.js';
import { STATE_DB_FILE, openStateDb } from '../src/store/db.js';
import { readFileSync } from 'node:fs';
import { repoRoot } from './inputs.js';

const reps = Number(process.argv[process.argv.indexOf('--reps') + 1] ?? 0) || 400;

/** The chain `reps` times, each in its own container, an hour apart. */
function stream(): Alert[] {
  const lines = readFileSync(join(repoRoot(), 'examples/detection-tests/socket-filter-bind-shell/alerts.jsonl'), 'utf8').split('\n').filter(Boolean);
  const ids = new AlertIdGenerator();
  const out: Alert[] = [];
  for (let r = 0; r < reps; r++) {
    const cid = (0x7c1e55a00000 + r).toString(16).slice(0, 12);
    for (const l of lines) {
      const o = parse(l) as JsonObject;
      const t = new Date(Date.parse(String(o['time'])) + r * 3_600_000).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
      const f = { ...(o['output_fields'] as JsonObject), 'container.id': cid };
      out.push(ids.ensure(alertFromJson(parse(stringify({ ...o, time: t, output_fields: f })), { kind: 'replay', component: 'bench' }, 0)));
    }
  }
  return out;
}

function engine(): DetectionEngine {
  const rules = loadRulesFile(null);
  return new DetectionEngine({ rules, detectors: buildDetectors(rules), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0) });
}

/** Time spent in `process` only; `between` (the journal's writer, as its timer would) runs every 500 alerts, untimed. */
function timeStage(stage: DetectStage, alerts: readonly Alert[], between: () => void = () => undefined): { ms: number; detections: number } {
  let detections = 0;
  let ms = 0;
  for (let i = 0; i < alerts.length; i += 500) {
    const t0 = performance.now();
    for (let k = i; k < Math.min(alerts.length, i + 500); k++) detections += stage.process(alerts[k] as Alert).detections.length;
    ms += performance.now() - t0;
    between();
  }
  return { ms, detections };
}

async function main(): Promise<void> {
  const alerts = stream();
  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-journal-'));
  const config = loadConfig<Config>(configSchema, { file: null, env: {}, overrides: { 'journal.flush_interval': 60_000, 'journal.queue_size': 1_000_000 } }).journal;
  const base: number[] = [];
  const withJ: number[] = [];
  let dets = 0;
  const journaled = async (round: number): Promise<{ ms: number; detections: number }> => {
    const db = openStateDb(join(dir, `r${round}`));
    const j = new Journal({ config, db: () => db, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0), reportUrl: (id) => `http://node:2804/detections/${id}` });
    await j.start();
    const r = timeStage(j.stage(engine()), alerts, () => j.flush());
    db.close();
    return r;
  };
  // Round 0 warms both up (not counted); then the order alternates.
  for (let round = 0; round < 8; round++) {
    const first = round % 2 === 0;
    const b1 = first ? timeStage(engine(), alerts).ms : null;
    const r = await journaled(round);
    const b2 = first ? null : timeStage(engine(), alerts).ms;
    if (round === 0) continue;
    base.push((b1 ?? b2) as number);
    withJ.push(r.ms);
    dets = r.detections;
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const perAlert = (ms: number): string => `${((ms * 1000) / alerts.length).toFixed(2)} µs`;

  // The writer: full records of every shipped example, copied to `n` distinct ids.
  const samples: DetectionRecord[] = findCases(['examples/detection-tests']).cases.flatMap((c) => [...runCase(c, { records: true }).records]);
  const n = 4096;
  const records = Array.from({ length: n }, (_, i) => ({ ...(samples[i % samples.length] as DetectionRecord), id: `01JQ${String(i).padStart(22, '0')}` }));
  const wdir = join(dir, 'writer');
  const db = openStateDb(wdir);
  const store = new JournalStore(db);
  const t0 = performance.now();
  for (let i = 0; i < n; i += 256) store.write(records.slice(i, i + 256), []);
  const writeMs = performance.now() - t0;
  db.pragma('wal_checkpoint(TRUNCATE)');
  const bytes = statSync(join(wdir, STATE_DB_FILE)).size;
  const evidence = records.reduce((s, r) => s + r.evidence.length, 0) / n;
  db.close();
  rmSync(dir, { recursive: true, force: true });

  console.log(`| path | baseline (stage alone) | with the journal | note |`);
  console.log(`|---|---|---|---|`);
  console.log(`| alert path, per alert (median of 7, ${alerts.length} alerts, ${dets} detections) | ${perAlert(med(base))} | ${perAlert(med(withJ))} | ids, URL, queueing; the writer runs between chunks of 500 alerts, untimed, as its timer would |`);
  console.log(`| alert path, added per detection | | ${(((med(withJ) - med(base)) * 1000) / dets).toFixed(1)} µs | alerts without a detection pay one length check |`);
  console.log(`| writer, per record (batches of 256, real SQLite file, WAL) | | ${((writeMs * 1000) / n).toFixed(0)} µs | ${evidence.toFixed(1)} evidence signals per record on average |`);
  console.log(`| database size per record | | ${(bytes / n / 1024).toFixed(1)} KiB | 10 000 records (the default max_records) ≈ ${((bytes / n) * 10_000 / 1024 / 1024).toFixed(0)} MiB |`);
}

void main();
