/**
 * docker/Dockerfile on a real engine: dockerd started here (no bridge, no iptables), the official
 * node base images replaced by local ones built from Debian's archive (debootstrap, cached under
 * /var/cache/falco-companion-test) plus this machine's Node, tagged with the names the Dockerfile
 * uses by default (node:20-bookworm, node:20-bookworm-slim). The built image then runs with
 * --network host on loopback, --read-only, as its default non-root user: /healthz, the image's
 * HEALTHCHECK, a Falco alert POSTed and seen on the stdout sink, a clean `docker stop`.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dockerSkipReason, startDockerd, type Dockerd } from '../support/dockerd.js';
import { falcoAlertJson } from '../support/falco-alerts.js';
import { freeTcpPort } from '../support/net.js';
import { poll } from '../support/wait.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE = process.env['FALCO_COMPANION_TEST_CACHE'] ?? '/var/cache/falco-companion-test';
const IMAGE = 'falco-companion:test';
const CONTAINER = 'fc-image-test';
const VOLUME = 'fc-image-test-state';
/** Budget for the whole setup (cold cache: debootstrap + npm ci + better-sqlite3 compile). */
const SETUP_MS = 12 * 60_000;

function skipReason(): string | null {
  const docker = dockerSkipReason();
  if (docker) return docker;
  if (!existsSync('/usr/sbin/debootstrap')) return 'debootstrap not installed (needed to build the local base images)';
  return null;
}

const reason = skipReason();
if (reason) process.stderr.write(`test/deploy/image.test.ts skipped: ${reason}\n`);

/** The first non-null answer of `f` (errors are retried), polled every 250 ms. */
const seen = <T>(what: string, timeoutMs: number, f: () => Promise<T | null>): Promise<T> => poll(f, { what, timeoutMs, intervalMs: 250, retryErrors: true });

function log(msg: string): void {
  process.stderr.write(`[image.test] ${msg}\n`);
}

describe.skipIf(reason !== null)('docker/Dockerfile on a real dockerd', () => {
  let d: Dockerd | null = null;
  let work = '';
  let port = 0;
  const timings: Record<string, number> = {};
  const dockerEnv = (): NodeJS.ProcessEnv => ({ ...process.env, DOCKER_HOST: `unix://${d?.socket ?? ''}`, DOCKER_BUILDKIT: '0' });
  const docker = async (args: string[], timeout = 60_000): Promise<string> => {
    const { stdout } = await run('docker', args, { env: dockerEnv(), timeout, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  };
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    const v = await f();
    timings[name] = Date.now() - t0;
    log(`${name}: ${(timings[name] / 1000).toFixed(1)} s`);
    return v;
  };

  /** A base image: a cached Debian rootfs plus this machine's Node (and npm + headers for builds). */
  async function nodeBase(tag: string, rootfsTar: string, forBuild: boolean): Promise<void> {
    const base = `local/debian:${forBuild ? 'bookworm-build' : 'bookworm-minbase'}`;
    await docker(['import', rootfsTar, base], 180_000);
    const ctx = join(work, `ctx-${forBuild ? 'build' : 'slim'}`);
    mkdirSync(ctx, { recursive: true });
    copyFileSync(realpathSync(process.execPath), join(ctx, 'node'));
    const lines = [`FROM ${base}`, 'COPY node /usr/local/bin/node'];
    if (forBuild) {
      // npm from this machine's prefix, the Node headers (node-gyp uses them instead of
      // downloading), and this machine's CA bundle (the npm registry may sit behind an
      // intercepting proxy here). The official node:20-bookworm image has npm and downloads headers.
      const npmDir = dirname(dirname(realpathSync(join(dirname(realpathSync(process.execPath)), 'npm'))));
      cpSync(npmDir, join(ctx, 'npm'), { recursive: true });
      const headers = ['/usr/include/node', '/usr/local/include/node', join(dirname(dirname(realpathSync(process.execPath))), 'include', 'node')].find((p) =>
        existsSync(join(p, 'node.h')),
      );
      if (!headers) throw new Error('Node headers (include/node/node.h) not found on this machine');
      cpSync(headers, join(ctx, 'include-node'), { recursive: true });
      copyFileSync('/etc/ssl/certs/ca-certificates.crt', join(ctx, 'ca.crt'));
      lines.push(
        'COPY npm /usr/local/lib/node_modules/npm',
        'COPY include-node /usr/local/include/node',
        'COPY ca.crt /etc/ssl/certs/ca-certificates.crt',
        'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx',
        'ENV npm_config_nodedir=/usr/local NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_update_notifier=false',
      );
    }
    lines.push('CMD ["node"]');
    writeFileSync(join(ctx, 'Dockerfile'), `${lines.join('\n')}\n`);
    await docker(['build', '-q', '-t', tag, ctx], 300_000);
  }

  beforeAll(async () => {
    const t0 = Date.now();
    work = mkdtempSync(join(tmpdir(), 'fc-image-'));
    d = await step('start dockerd', () => startDockerd());
    await step('base rootfs (debootstrap, cached)', () => run('bash', [join(ROOT, 'test/deploy/base-rootfs.sh'), CACHE], { timeout: 8 * 60_000 }));
    await step('base images', () =>
      Promise.all([
        nodeBase('node:20-bookworm', join(CACHE, 'bookworm-build.tar'), true),
        nodeBase('node:20-bookworm-slim', join(CACHE, 'bookworm-minbase.tar'), false),
      ]),
    );
    // The Dockerfile's defaults (BUILD_IMAGE=node:20-bookworm, BASE_IMAGE=node:20-bookworm-slim)
    // resolve to the local images; the build reaches the npm registry over the host network.
    await step('docker build', async () => {
      try {
        await docker(['build', '--network', 'host', '-f', join(ROOT, 'docker/Dockerfile'), '-t', IMAGE, ROOT], 10 * 60_000);
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        throw new Error(`docker build failed:\n${(e.stdout ?? '').slice(-4000)}\n${(e.stderr ?? '').slice(-4000)}`);
      }
    });
    port = await freeTcpPort();
    await docker([
      'run', '-d', '--name', CONTAINER,
      '--network', 'host', '--read-only', '--tmpfs', '/tmp',
      // least privilege as the manifests ship it: no capability, no new privileges
      '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges:true',
      '-v', `${VOLUME}:/var/lib/falco-companion`,
      '-e', `FALCO_COMPANION_HTTP_LISTEN=127.0.0.1:${port}`,
      '-e', 'FALCO_COMPANION_SINKS_STDOUT_ENABLED=true',
      '-e', 'FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED=false',
      '--health-interval', '1s', '--health-start-period', '1s', '--health-timeout', '5s',
      IMAGE,
    ]);
    timings['setup total'] = Date.now() - t0;
    log(`setup total: ${(timings['setup total'] / 1000).toFixed(1)} s`);
  }, SETUP_MS);

  afterAll(async () => {
    const dirs = [work];
    if (d) {
      dirs.push(d.dir);
      try {
        await docker(['rm', '-f', CONTAINER]);
      } catch {
        // not created
      }
      await d.close();
    }
    // dockerd leaves mounts under its exec root (netns/default with --network host) when it
    // stops: unmount anything left below our temp dirs, then remove them.
    for (const dir of dirs.filter(Boolean)) {
      try {
        const mounts = readFileSync('/proc/mounts', 'utf8')
          .split('\n')
          .map((l) => l.split(' ')[1] ?? '')
          .filter((m) => m === dir || m.startsWith(`${dir}/`))
          .reverse();
        for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
      } catch {
        // no /proc/mounts
      }
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  }, 60_000);

  it('builds a small image that runs as non-root with the state volume, healthcheck and exec-form entrypoint', async () => {
    const info = JSON.parse(await docker(['image', 'inspect', IMAGE])) as Array<{
      Size: number;
      Config: { User: string; Entrypoint: string[]; Cmd: string[]; Volumes: Record<string, unknown> | null; ExposedPorts: Record<string, unknown> | null; Healthcheck?: { Test: string[] } };
    }>;
    const img = info[0];
    expect(img).toBeDefined();
    if (!img) return;
    log(`image size: ${(img.Size / 1e6).toFixed(1)} MB`);
    expect(img.Config.User).toBe('10001:10001');
    expect(img.Config.Entrypoint).toEqual(['node', '/app/dist/src/cli.js']);
    expect(img.Config.Cmd).toEqual(['run', '--config', '/etc/falco-companion/config.yaml']);
    expect(Object.keys(img.Config.Volumes ?? {})).toEqual(['/var/lib/falco-companion']);
    expect(Object.keys(img.Config.ExposedPorts ?? {})).toEqual(['2804/tcp']);
    expect(img.Config.Healthcheck?.Test).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
    // No dev dependencies and no compiler leftovers in the runtime image.
    const devDeps = await docker(['run', '--rm', '--network', 'none', '--entrypoint', 'node', IMAGE, '-e',
      "const fs=require('fs');process.stdout.write(JSON.stringify(['typescript','vitest','eslint','better-sqlite3'].map(p=>fs.existsSync('/app/node_modules/'+p))))"]);
    expect(JSON.parse(devDeps)).toEqual([false, false, false, true]);
    expect(img.Size).toBeLessThan(450e6);
  });

  it('serves /healthz on loopback as uid 10001 and turns healthy', async () => {
    const health = await seen('/healthz 200', 60_000, async () => {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
      return r.status === 200 ? ((await r.json()) as { status: string }) : null;
    });
    expect(health.status).toBe('ok');
    const uid = await docker(['exec', CONTAINER, 'node', '-e', 'process.stdout.write(`${process.getuid()}:${process.getgid()}`)']);
    expect(uid).toBe('10001:10001');
    // The read-only root filesystem really is read-only for the app.
    await expect(docker(['exec', CONTAINER, 'node', '-e', "require('fs').writeFileSync('/app/x','x')"])).rejects.toThrow();
    // No capability at all in the running process (PID 1), and no-new-privileges set.
    const status = await docker(['exec', CONTAINER, 'node', '-e', "process.stdout.write(require('fs').readFileSync('/proc/1/status','utf8'))"]);
    expect(/^CapEff:\s*(\S+)$/m.exec(status)?.[1]).toBe('0000000000000000');
    expect(/^CapPrm:\s*(\S+)$/m.exec(status)?.[1]).toBe('0000000000000000');
    expect(/^NoNewPrivs:\s*(\S+)$/m.exec(status)?.[1]).toBe('1');
    // No setuid / setgid program anywhere in the image.
    const suid = await docker(['run', '--rm', '--network', 'none', '--user', '0', '--entrypoint', 'find', IMAGE, '/', '-xdev', '-perm', '/6000', '-type', 'f']);
    expect(suid).toBe('');
    const healthy = await seen('HEALTHCHECK healthy', 45_000, async () => {
      const s = await docker(['inspect', '-f', '{{.State.Health.Status}}', CONTAINER]);
      return s === 'healthy' ? s : null;
    });
    expect(healthy).toBe('healthy');
  });

  it('accepts a Falco alert (200) and forwards it to the stdout sink', async () => {
    // evt.time above 2^53, as Falco sends it (a bare JSON integer)
    const body = falcoAlertJson({ ns: 1_767_261_600_123_456_789n, rule: 'Deploy Image Test Rule', priority: 'Warning', hostname: 'image-test', tags: ['test'] });
    const r = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(5000) });
    expect(r.status).toBe(200);
    const line = await seen('the alert on the container stdout', 30_000, async () => {
      const { stdout } = await run('docker', ['logs', CONTAINER], { env: dockerEnv(), maxBuffer: 16 * 1024 * 1024 });
      return stdout.split('\n').find((l) => l.includes('Deploy Image Test Rule')) ?? null;
    });
    const out = JSON.parse(line) as { rule: string; priority: string; output_fields: Record<string, unknown> };
    expect(out.rule).toBe('Deploy Image Test Rule');
    expect(out.priority).toBe('Warning');
    // the nanosecond time survives digit-exact
    expect(line).toContain('1767261600123456789');
  });

  it('stops cleanly on docker stop (SIGTERM to Node as PID 1): exit 0, "stopped cleanly", state on the volume', async () => {
    await docker(['stop', '-t', '30', CONTAINER], 60_000);
    const exit = await docker(['inspect', '-f', '{{.State.ExitCode}} {{.State.OOMKilled}}', CONTAINER]);
    expect(exit).toBe('0 false');
    const { stderr, stdout } = await run('docker', ['logs', CONTAINER], { env: dockerEnv(), maxBuffer: 16 * 1024 * 1024 });
    expect(`${stdout}\n${stderr}`).toContain('stopped cleanly');
    const files = await docker(['run', '--rm', '--network', 'none', '-v', `${VOLUME}:/s:ro`, '--entrypoint', 'node', IMAGE, '-e', "process.stdout.write(require('fs').readdirSync('/s').join(','))"]);
    expect(files.split(',').some((f) => f.endsWith('.db'))).toBe(true);
    log(`timings: ${JSON.stringify(Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v / 100) / 10])))}`);
  });
});
