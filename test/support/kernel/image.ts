/**
 * The image the recordings were made with, rebuilt here: Debian's busybox-static with every applet
 * linked under /bin, plus the observer's helper (./kworker.c) as /bin/kworker, imported with
 * `docker import` into the test's dockerd (no registry, no network).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Dockerd } from '../dockerd.js';
import { BUSYBOX } from '../dockerd.js';

const run = promisify(execFile);

/** Build and import `name` (e.g. `local/rec-emul:1`); returns the image id. */
export async function importRecEmulImage(dockerd: Dockerd, name: string, kworker: string): Promise<string> {
  const root = mkdtempSync(join(dockerd.dir, 'rec-emul-'));
  try {
    for (const d of ['bin', 'etc', 'tmp', 'root', 'var/run', 'proc', 'sys', 'dev']) mkdirSync(join(root, d), { recursive: true });
    copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
    copyFileSync(kworker, join(root, 'bin', 'kworker'));
    const applets = (await run(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
    for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
    writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    writeFileSync(join(root, 'etc', 'shadow'), 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n', { mode: 0o640 });
    const tar = join(root, '..', `${name.replace(/[^a-z0-9]/gi, '_')}.tar`);
    await run('tar', ['-C', root, '-cf', tar, '.']);
    const id = await dockerd.docker('import', '-c', 'CMD ["/bin/sh"]', tar, name);
    rmSync(tar, { force: true });
    return id;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
