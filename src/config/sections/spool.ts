/** Durable spool settings (owned by the spool work: src/store/spool.ts, docs/spool.md). */
import { bool, duration, int, obj, oneOf, size } from '../dsl.js';

export const spoolSection = obj(
  'Durable spool in the state directory (SQLite, state_dir/falco-companion.db). An alert is accepted (HTTP 200, gRPC/file advance) only once it is committed here; delivery to Falcosidekick runs from the spool, at least once, with `companion.alert_id` marking duplicates.',
  {
    enabled: bool('Keep accepted alerts on disk until delivered (off: a bounded in-memory queue, lost on a crash).', true),
    max_alerts: int('Most alerts kept in the spool (received and waiting for delivery).', 1_000_000, { min: 1 }),
    max_bytes: size('Most bytes of alert payload kept in the spool.', 1024 * 1024 * 1024, { min: 64 * 1024 }),
    max_age: duration('Oldest alert kept, e.g. 7d (0: no age limit). With block, an older alert blocks intake until delivered.', 0, { min: 0 }),
    when_full: oneOf(
      'At a limit: block (HTTP 503 + Retry-After, gRPC stops requesting, file stops reading), drop_oldest (delete the oldest alerts to make room), drop_newest (accept and drop the new alert). Every drop is counted and logged.',
      ['block', 'drop_oldest', 'drop_newest'],
      'block',
    ),
    commit_interval: duration('Longest wait before a group commit (0: commit on the next event-loop turn, grouping everything that arrived meanwhile).', 0, { min: 0, max: 1000 }),
    commit_batch: int('Most operations in one group commit.', 1024, { min: 1, max: 100_000 }),
  },
);
