/**
 * Disk full under the built CLI: the state directory is a small tmpfs mounted by the test,
 * filled with a file until ENOSPC. The companion must refuse (503 + Retry-After) instead of
 * acking what it cannot keep, report not-ready naming the path and cause, and recover on its own
 * once the file is removed; every alert it acked is delivered.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';
import { checkCovered, markedAlert, post, until } from './spool-support.js';

function canMount(): string | null {
  if (process.platform !== 'linux') return 'tmpfs mounts need Linux';
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  return null;
}

const skip = canMount();
if (skip) process.stderr.write(`spool-disk.test.ts skipped: ${skip}\n`);

describe.skipIf(skip !== null)('e2e: spool on a full disk (tmpfs)', () => {
  let dir: string;
  let mnt: string;
  let mounted = false;
  let sk: FakeSidekick;
  let cli: RunningCli;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-disk-'));
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    mounted = true;
    sk = await new FakeSidekick().start();
    cli = startHttpCli(sk.url, join(mnt, 'state'));
    base = `http://${await cli.httpAddress()}`;
  });

  afterAll(async () => {
    await cli?.stop('SIGKILL');
    await sk?.close();
    if (mounted) execFileSync('umount', ['-l', mnt]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses (503) while the disk is full, is not ready, names the path and cause, and recovers when space is freed', async () => {
    const acked = new Set<number>();
    let seq = 0;
    // Some traffic first: the database and its WAL exist and work.
    for (let i = 0; i < 20; i++) if ((await post(base, markedAlert(seq++))) === 200) acked.add(seq - 1);
    expect(acked.size).toBe(20);
    await sk.waitForAccepted(20, 10_000);

    // Fill the filesystem.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024, 1);
    try {
      for (let i = 0; i < 1000; i++) writeSync(fd, chunk);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }

    // Post until the spool refuses; what it acks must be kept.
    let refused: Response | null = null;
    for (let i = 0; i < 3000 && !refused; i++) {
      const body = markedAlert(seq++, 2000);
      const res = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      if (res.status === 200) {
        acked.add(seq - 1);
        await res.arrayBuffer();
      } else refused = res;
    }
    expect(refused, 'the spool never refused on a full disk').not.toBeNull();
    expect(refused?.status).toBe(503);
    expect(refused?.headers.get('retry-after')).toMatch(/^\d+$/);
    const why = (await refused?.json()) as { reason: string };
    expect(why.reason).toContain(join(mnt, 'state'));
    expect(why.reason).toMatch(/disk full|SQLITE_FULL/);
    const rz = await fetch(base + '/readyz');
    expect(rz.status).toBe(503);
    await cli.waitForLog((l) => l['component'] === 'spool' && l['error'] === 'SQLITE_FULL' && String(l['msg']).includes(join(mnt, 'state')));
    // Still refusing a moment later (no silent acceptance).
    expect(await post(base, markedAlert(seq++))).toBe(503);

    // Free the space: it recovers without a restart.
    rmSync(filler);
    await until(async () => (await fetch(base + '/readyz')).status === 200, 15_000, 'readiness after freeing the disk');
    await cli.waitForLog((l) => l['component'] === 'spool' && /recovered/.test(String(l['msg'])));
    for (let i = 0; i < 20; i++) {
      const s = seq++;
      expect(await post(base, markedAlert(s))).toBe(200);
      acked.add(s);
    }
    await until(() => checkCovered(sk, acked).missing.length === 0, 20_000, 'every acked alert delivered');
    const c = checkCovered(sk, acked);
    expect(c.idConflicts).toEqual([]);
    expect(c.missing).toEqual([]);
  });
  it('a read-only state directory at start: exits non-zero with the path and the cause', async () => {
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', ro]);
    try {
      const cli2 = startHttpCli(sk.url, join(ro, 'state'));
      const code = await Promise.race([cli2.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 15_000))]);
      if (code === 'still running') await cli2.stop('SIGKILL');
      expect(code).toBe(1);
      const text = cli2.logs.map((l) => String(l['raw'] ?? l['msg'] ?? '')).join('\n');
      expect(text).toContain(join(ro, 'state'));
      expect(text).toMatch(/read-only|EROFS/i);
    } finally {
      execFileSync('umount', ['-l', ro]);
    }
  });
});
