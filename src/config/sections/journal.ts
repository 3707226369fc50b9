/** Detection journal, report page and --record settings (owned by the journal work: src/journal/, src/report/, docs/report.md). */
import { bool, duration, int, obj, size, str } from '../dsl.js';

const httpUrl = (v: string): string | null => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? null : 'must be an http:// or https:// URL';
  } catch {
    return 'must be a URL such as https://node-7.ops.example:2804';
  }
};

export const journalSection = obj(
  'Detection journal: one record per detection in the state database (state_dir, namespace journal) with its evidence signals, enrichment, score and why, response steps and Talon fields; read by `falco-companion report`, `tune` and `explain`, and served as a page on the operations port when `serve` is on.',
  {
    enabled: bool('Keep a record of every detection.', true),
    max_records: int('Most records kept; the oldest are deleted first (counted in journal_pruned_total).', 10_000, { min: 1 }),
    max_age: duration('Oldest record kept, by the time it was recorded (0: no age limit).', 30 * 86_400_000, { min: 0 }),
    max_evidence: int('Most evidence signals kept per record (the first and the last of the chain; the number dropped is shown).', 200, { min: 2, max: 10_000 }),
    queue_size: int('Records waiting to be written; beyond it new records are dropped and counted (the detection itself is still forwarded).', 1000, { min: 1 }),
    flush_interval: duration('Longest wait before waiting records are written, in one transaction.', 1000, { min: 10, max: 60_000 }),
    serve: bool(
      'Serve each detection as a read-only HTML page on the operations port (GET /detections/<id>, same listener and TLS as the other operations endpoints) and put its URL in the detection as companion.report_url.',
      false,
    ),
    external_url: str(
      'Base URL of the operations port as responders reach it, for companion.report_url, e.g. https://node-7.ops.example:2804. Empty: http://<hostname>:<ops port> (hostname from FALCO_HOSTNAME or HOSTNAME).',
      null,
      { check: httpUrl },
    ),
    record: obj('`run --record DIR`: keep the raw Falco alerts that led to each detection as a test case for `falco-companion test`.', {
      dir: str('Directory for recorded cases (one folder per detection). Empty: off.', null),
      buffer_alerts: int('Recent alerts that map to a signal, kept in memory to choose each case from (across workloads; the oldest go first, counted).', 5000, { min: 10 }),
      max_alerts: int('Most alerts in one case (the evidence first, then the same workload\'s newest alerts before the detection).', 1000, { min: 1 }),
      max_bytes: size('Most bytes of alerts in one case.', 4 * 1024 * 1024, { min: 4096 }),
      max_cases: int('Most cases kept in the directory; the oldest are removed first (counted).', 200, { min: 1 }),
      max_total_bytes: size('Most bytes of all cases in the directory; the oldest are removed first (counted).', 256 * 1024 * 1024, { min: 64 * 1024 }),
    }),
  },
);
