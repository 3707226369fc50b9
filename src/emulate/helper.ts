/**
 * Where the native helper (fc-emulate, built from native/fc-emulate.c) is found.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmulateError } from './journal.js';

export const HELPER_NAME = 'fc-emulate';
/** Where docker/emulate/Dockerfile installs it. */
export const IMAGE_HELPER_PATH = '/usr/local/lib/falco-companion/fc-emulate';

/** The package root (the directory holding package.json), from src/ or dist/src/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '../..');
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Candidate paths, in the order they are tried. */
export function helperCandidates(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (explicit) return [resolve(explicit)];
  const out: string[] = [];
  if (env['FC_EMULATE_HELPER']) out.push(resolve(env['FC_EMULATE_HELPER']));
  out.push(join(packageRoot(), 'native', 'build', HELPER_NAME), IMAGE_HELPER_PATH);
  for (const d of (env['PATH'] ?? '').split(delimiter)) if (d) out.push(join(d, HELPER_NAME));
  return out;
}

/** The helper to use, or E_EMULATE_HELPER saying how to build it. */
export function findHelper(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const tried = helperCandidates(explicit, env);
  for (const p of tried) if (executable(p)) return p;
  throw new EmulateError(
    'E_EMULATE_HELPER',
    `the native helper ${HELPER_NAME} was not found (tried ${tried.slice(0, 3).join(', ')}${tried.length > 3 ? ', $PATH' : ''}). ` +
      `Build it with \`npm run build:native\` (needs a C compiler, Debian: build-essential; a static libc, Debian: libc6-dev, makes it runnable in any container), ` +
      `or pass --helper PATH / set FC_EMULATE_HELPER. The image built by docker/emulate/Dockerfile ships it.`,
  );
}
