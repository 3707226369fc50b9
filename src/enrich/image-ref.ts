/**
 * Image reference parsing with Docker's rules: `nginx` → docker.io/library/nginx:latest,
 * `localhost:5000/x`, `ghcr.io/o/r:tag`, `repo@sha256:...`, `repo:tag@sha256:...`.
 */

export interface ImageRef {
  /** `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `localhost`. */
  readonly registry: string;
  /** Path inside the registry (`library/nginx`, `demo/app`). */
  readonly repository: string;
  /** null when the reference names only a digest. */
  readonly tag: string | null;
  /** `sha256:<hex>` when the reference carries one. */
  readonly digest: string | null;
}

export const DEFAULT_REGISTRY = 'docker.io';

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** An image ID (`sha256:<64 hex>` or bare 64 hex) rather than a name. */
export function isImageId(s: string): boolean {
  return /^(sha256:)?[a-f0-9]{64}$/.test(s);
}

/** Parse a reference; null when it is not one (an image ID, empty, malformed). */
export function parseImageRef(input: string): ImageRef | null {
  const s = input.trim();
  if (s === '' || s.length > 512 || isImageId(s)) return null;
  let rest = s;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return null;
  }
  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) return null;
  }
  let registry = DEFAULT_REGISTRY;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      registry = first;
      rest = rest.slice(firstSlash + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DEFAULT_REGISTRY;
  if (rest === '' || !rest.split('/').every((c) => PATH_COMPONENT.test(c))) return null;
  const repository = registry === DEFAULT_REGISTRY && !rest.includes('/') ? `library/${rest}` : rest;
  if (tag === null && digest === null) tag = 'latest';
  return { registry, repository, tag, digest };
}

/** `registry/repository:tag` (the key of tag history), or null without a tag. */
export function tagKey(r: ImageRef): string | null {
  return r.tag === null ? null : `${r.registry}/${r.repository}:${r.tag}`;
}

/** `registry/repository` */
export function repoKey(r: ImageRef): string {
  return `${r.registry}/${r.repository}`;
}

/**
 * The manifest digest for `ref` among Docker's `RepoDigests` (`repo@sha256:...`): the one of the
 * same repository, else the first; null when there is none (imported or locally built images).
 */
export function digestFor(ref: ImageRef | null, repoDigests: readonly string[]): string | null {
  let first: string | null = null;
  for (const rd of repoDigests) {
    const p = parseImageRef(rd);
    if (!p?.digest) continue;
    first ??= p.digest;
    if (ref && p.registry === ref.registry && p.repository === ref.repository) return p.digest;
  }
  return first;
}

/** Shorten a layer command for output: drop the shell wrapper and `#(nop)`, collapse spaces, cap. */
export function shortenCommand(cmd: string, max = 120): string {
  let s = cmd.replace(/\s+/g, ' ').trim();
  s = s.replace(/^\/bin\/sh -c #\(nop\)\s*/, '').replace(/^\/bin\/sh -c /, 'RUN ').replace(/^\|\d+ (?:\S+=\S* )*\/bin\/sh -c /, 'RUN ');
  if (s.length > max) s = `${s.slice(0, max - 1)}…`;
  return s;
}
