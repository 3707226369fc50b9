/**
 * Chaos on the state database (the spool and learned state, one SQLite file in the state
 * directory) under the built CLI, while alerts keep coming: the file locked by another process
 * beyond busy_timeout, truncated under the running companion, and replaced by another file.
 * test/e2e/spool-disk.test.ts covers the full disk and a read-only state directory.
 */
import { copyFileSync, existsSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { STATE_DB_FILE } from '../../src/store/db.js';
import { chaosScope, endsHealthyNothingLost, load, markedAlert, postAlert, STRETCH } from './support.js';

const s = chaosScope('fc-chaos-sqlite-');

/** Start again on `state`: it refuses with the path and cause, or it runs and the file is sound. */
async function restartNeverCorrupt(state: string, sidekickUrl: string): Promise<void> {
  const again = s.companion(['--http-listen', '127.0.0.1:0', '--sidekick-url', sidekickUrl, '--state-dir', state]);
  const started = again.waitForLog((l) => l['msg'] === 'falco-companion started', 15_000).then(() => 'started' as const);
  const outcome = await Promise.race([again.exited.then((c) => ({ exited: c })), started]);
  if (outcome === 'started') {
    expect(await postAlert(`http://${await again.httpAddress()}`, markedAlert(2_000_000))).toBe(200);
    expect(await again.stop('SIGTERM')).toBe(0);
    const c = new Database(join(state, STATE_DB_FILE), { readonly: true });
    try {
      expect(c.pragma('integrity_check')).toEqual([{ integrity_check: 'ok' }]);
    } finally {
      c.close();
    }
  } else {
    expect(outcome.exited).toBe(1);
    expect(again.logs.map((l) => String(l['raw'] ?? l['msg'] ?? '')).join('\n')).toContain(join(state, STATE_DB_FILE));
  }
}

describe('chaos: the SQLite state database', () => {
  it('locked by another process beyond busy_timeout: refuses (503) instead of acking, recovers when released, nothing accepted lost', async () => {
    const { state, sidekick: sk, cli, base } = await s.httpCompanion();
    const warm = await load({ base, perSecond: 50, durationMs: 400 });
    // Another process takes an exclusive lock for longer than busy_timeout (5 s).
    const other = new Database(join(state, STATE_DB_FILE), { timeout: 10_000 });
    s.cleanup.push(() => void (other.open && other.close()));
    other.exec('BEGIN EXCLUSIVE');
    const holdMs = 6500 * STRETCH;
    const [during] = await Promise.all([
      load({ base, perSecond: 20, durationMs: holdMs + 1500, first: 10_000 }),
      new Promise<void>((r) =>
        setTimeout(() => {
          other.exec('COMMIT');
          other.close();
          r();
        }, holdMs),
      ),
    ]);
    expect(during.statuses.get(503), 'refused while it could not commit').toBeGreaterThan(0);
    await cli.waitForLog((l) => l['component'] === 'spool' && /recovered/.test(String(l['msg'])), 20_000);
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: [...warm.acked, ...during.acked], probeSeq: 1_000_000 });
    expect(await cli.stop('SIGTERM')).toBe(0);
  });

  it('truncated under the running companion with alerts waiting in it: nothing accepted is lost; a restart never runs on a corrupt file', async () => {
    const { state, sidekick: sk, cli, base } = await s.httpCompanion();
    await sk.down(); // alerts wait in the spool when the file is cut
    const before = await load({ base, perSecond: 50, durationMs: 600 });
    truncateSync(join(state, STATE_DB_FILE), 0);
    const during = await load({ base, perSecond: 20, durationMs: 1500 * STRETCH, first: 10_000 });
    await sk.up();
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: [...before.acked, ...during.acked], probeSeq: 1_000_000 });
    expect(await cli.stop('SIGTERM')).toBe(0);
    await restartNeverCorrupt(state, sk.url);
  });

  it('replaced by an old copy, then by garbage, while running: the companion keeps its open file and loses nothing; a restart on the garbage refuses with the path and cause', async () => {
    const { dir, state, sidekick: sk, cli, base } = await s.httpCompanion();
    const db = join(state, STATE_DB_FILE);
    const before = await load({ base, perSecond: 50, durationMs: 400 });
    // a backup restored over it (an older copy), then garbage
    copyFileSync(db, join(dir, 'copy.db'));
    renameSync(join(dir, 'copy.db'), db);
    const during = await load({ base, perSecond: 20, durationMs: 1500 * STRETCH, first: 10_000 });
    writeFileSync(join(dir, 'garbage'), Buffer.alloc(64 * 1024, 0x5a));
    renameSync(join(dir, 'garbage'), db);
    const during2 = await load({ base, perSecond: 20, durationMs: 1000 * STRETCH, first: 20_000 });
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: [...before.acked, ...during.acked, ...during2.acked], probeSeq: 1_000_000 });
    expect(await cli.stop('SIGTERM')).toBe(0);
    // the old file's WAL is still next to the garbage: the restart must refuse it, not run on it
    expect(existsSync(db)).toBe(true);
    const again = s.companion(['--http-listen', '127.0.0.1:0', '--sidekick-url', sk.url, '--state-dir', state]);
    expect(await Promise.race([again.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 15_000))])).toBe(1);
    const text = again.logs.map((l) => String(l['raw'] ?? l['msg'] ?? '')).join('\n');
    expect(text).toContain(db);
    expect(text).toMatch(/not a database/);
  });
});
