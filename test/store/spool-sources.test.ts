/**
 * Back-pressure from the spool to a polling source: with `when_full: block` and a small
 * `max_alerts`, the file source stops reading while the spool is full and resumes once rows
 * leave; every line ends up in the spool exactly once, in order.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { FileSource } from '../../src/sources/file.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { Spool } from '../../src/store/spool.js';
import { markedAlert } from '../e2e/spool-support.js';
import { until, wait } from '../support/wait.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('spool back-pressure on the file source', () => {
  it('stops reading while the spool is full and resumes when it drains; nothing lost, nothing twice', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-spool-src-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const input = join(dir, 'alerts.jsonl');
    writeFileSync(input, Array.from({ length: 60 }, (_, i) => markedAlert(i)).join('\n') + '\n');
    const db: Db = openStateDb(join(dir, 'state'));
    cleanup.push(() => void db.close());
    const metrics = new Metrics({ collectDefault: false });
    const spool = new Spool({
      db,
      path: dir,
      config: { enabled: true, max_alerts: 10, max_bytes: 64 * 1024 * 1024, max_age: 0, when_full: 'block', commit_interval: 0, commit_batch: 1024 },
      logger: silentLogger(),
      metrics,
    });
    await spool.start();
    cleanup.push(() => spool.stop(Date.now() + 1000));
    const src = new FileSource({ path: input, fromStart: true, follow: false, pollIntervalMs: 20, maxLineBytes: 1 << 20, intake: spool, logger: silentLogger(), metrics, originKind: 'replay' });
    await src.start();
    cleanup.push(() => src.stop(Date.now() + 1000));

    // Nobody consumes: the source fills the spool to the limit and waits.
    await until(() => spool.size >= 10, 5000, 'spool filled to its limit');
    await wait(200);
    expect(spool.size).toBe(10);
    expect(spool.full).toBe(true);

    // Consume (take + done): the source resumes until every line is in.
    const seqs: number[] = [];
    while (seqs.length < 60) {
      const a = (await Promise.race([spool.take(), new Promise<null>((r) => setTimeout(() => r(null), 5000))])) as Alert | null;
      if (!a) break;
      seqs.push(Number(String(a.outputFields?.['test.seq'])));
      spool.done(a);
    }
    await src.done();
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i));
    // The source pauses on `full` before submitting: the spool never had to refuse it.
    expect(await metrics.text()).not.toMatch(/falco_companion_spool_refused_total\{limit="alerts"\} [1-9]/);
  });
});
