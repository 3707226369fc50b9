// Builds the native emulation helper (native/fc-emulate.c → native/build/fc-emulate) with the
// system C compiler: static when a static libc is available (the binary then runs in any
// container: `emulate run --docker` copies it in), dynamic otherwise. Called by `npm run build`
// (via `npm run build:native`); without a compiler it prints a note and exits 0, and
// `falco-companion emulate run` then fails with E_EMULATE_HELPER naming this script.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const say = (line) => process.stdout.write(`${line}\n`);

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, 'fc-emulate.c');
const out = join(here, 'build', 'fc-emulate');
const cc = process.env.CC || 'cc';

function which(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

if (process.platform !== 'linux') {
  say(`build:native: skipped (the emulation helper is Linux-only; this is ${process.platform})`);
  process.exit(0);
}
if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs && !process.argv.includes('--force')) {
  say(`build:native: ${out} is up to date`);
  process.exit(0);
}
if (!which(cc)) {
  say(`build:native: skipped: no C compiler (${cc}); install one (Debian: build-essential) and run \`npm run build:native\` to use \`falco-companion emulate\``);
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const flags = ['-O2', '-Wall', '-Wextra', '-o', out, src];
try {
  execFileSync(cc, ['-static', ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
  say(`build:native: ${out} (static)`);
} catch {
  execFileSync(cc, flags, { stdio: 'inherit' });
  say(`build:native: ${out} (dynamic: no static libc; --docker needs the image to provide the same libc)`);
}
