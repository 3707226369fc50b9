/**
 * Builds ./kworker.c (the observer's own test helper) with the system C compiler, statically, so it
 * runs in a busybox image without a libc (test/support/emulate-image.ts says when no compiler).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const KWORKER_SOURCE = fileURLToPath(new URL('./kworker.c', import.meta.url));

/** Compile kworker.c into `dir/kworker`; returns the binary's path. */
export async function buildKworker(dir: string): Promise<string> {
  const out = join(dir, 'kworker');
  await run('cc', ['-static', '-O2', '-o', out, KWORKER_SOURCE], { timeout: 120_000 });
  return out;
}
