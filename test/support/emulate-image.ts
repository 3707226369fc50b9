/**
 * The emulation helper compiled with the system compiler, and a tiny image for
 * `falco-companion emulate run --docker`: a rootfs holding Debian's busybox-static (sh and the
 * applets), the static helper, and, when asked, this machine's iptables (xtables-nft-multi, its
 * extensions and the libraries `ldd` names), packed with tar and `docker import`ed into a test
 * dockerd (test/support/dockerd.ts). No registry, no network.
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Dockerd } from './dockerd.js';
import { BUSYBOX } from './dockerd.js';

const run = promisify(execFile);

export const HELPER_SOURCE = resolve('native/fc-emulate.c');
export const XTABLES = '/usr/sbin/xtables-nft-multi';
const XTABLES_EXT = '/usr/lib/x86_64-linux-gnu/xtables';

/** Why the helper cannot be compiled here, or null. */
export function compilerSkipReason(): string | null {
  if (process.platform !== 'linux') return 'the emulation helper is Linux-only';
  for (const p of ['/usr/bin/cc']) if (!existsSync(p)) return `${p} not installed (Debian: build-essential)`;
  return null;
}

/**
 * Compile native/fc-emulate.c with the system compiler into `dir` (static when libc.a exists);
 * returns the binary's path.
 */
export async function compileHelper(dir: string): Promise<string> {
  const out = join(dir, 'fc-emulate');
  const flags = ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, HELPER_SOURCE];
  try {
    await run('cc', ['-static', ...flags], { timeout: 120_000 });
  } catch {
    await run('cc', flags, { timeout: 120_000 });
  }
  return out;
}

async function libsOf(bin: string): Promise<string[]> {
  try {
    const { stdout } = await run('ldd', [bin]);
    return [...stdout.matchAll(/(\/[^\s)]+)/g)].map((m) => m[1] as string).filter((p) => existsSync(p));
  } catch {
    return []; // static binary
  }
}

function copyInto(root: string, path: string): void {
  const dest = join(root, path);
  if (existsSync(dest)) return;
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(realpathSync(path), dest);
  chmodSync(dest, 0o755);
}

/**
 * Build and import the image (`name`, default fc-emulate-ci:1); returns its name.
 * `iptables`: include the host's iptables (xtables) binary and its libraries.
 */
export async function buildEmulateImage(d: Dockerd, helper: string, opts: { name?: string; iptables?: boolean } = {}): Promise<string> {
  const name = opts.name ?? 'fc-emulate-ci:1';
  const work = mkdtempSync(join(tmpdir(), 'fc-emulate-image-'));
  try {
    const root = join(work, 'rootfs');
    for (const dir of ['bin', 'sbin', 'etc', 'tmp', 'run', 'proc', 'sys', 'dev', 'usr/sbin', 'usr/local/lib/falco-companion', 'var/lib']) mkdirSync(join(root, dir), { recursive: true });
    chmodSync(join(root, 'tmp'), 0o1777);
    symlinkSync('../run', join(root, 'var/run'));
    copyFileSync(BUSYBOX, join(root, 'bin/busybox'));
    chmodSync(join(root, 'bin/busybox'), 0o755);
    for (const applet of ['sh', 'cat', 'echo', 'ls', 'sleep', 'true', 'cp', 'rm', 'mkdir', 'ps', 'id']) symlinkSync('busybox', join(root, 'bin', applet));
    copyFileSync(helper, join(root, 'usr/local/lib/falco-companion/fc-emulate'));
    chmodSync(join(root, 'usr/local/lib/falco-companion/fc-emulate'), 0o755);
    if (existsSync('/etc/protocols')) copyFileSync('/etc/protocols', join(root, 'etc/protocols'));
    if (opts.iptables) {
      if (!existsSync(XTABLES)) throw new Error(`${XTABLES} not installed (Debian: iptables)`);
      copyInto(root, XTABLES);
      for (const alias of ['iptables', 'iptables-restore', 'iptables-save']) symlinkSync('xtables-nft-multi', join(root, 'usr/sbin', alias));
      const exts = existsSync(XTABLES_EXT) ? readdirSync(XTABLES_EXT).filter((f) => f.endsWith('.so')).map((f) => join(XTABLES_EXT, f)) : [];
      for (const e of exts) copyInto(root, e);
      const libs = new Set<string>();
      for (const b of [XTABLES, ...exts]) for (const l of await libsOf(b)) libs.add(l);
      for (const l of libs) copyInto(root, l);
    }
    const tar = join(work, 'rootfs.tar');
    await run('tar', ['--numeric-owner', '-C', root, '-cf', tar, '.'], { timeout: 120_000 });
    await d.docker('import', '-c', 'CMD ["/bin/sh"]', tar, name);
    return name;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
