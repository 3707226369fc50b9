import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, requireBuilt } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('e2e: demo and replay', () => {
  it('demo feeds the bundled stream over gRPC and HTTP, prints what is forwarded and exits 0', () => {
    requireBuilt();
    const r = spawnSync(process.execPath, [CLI, 'demo'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/via grpc/);
    expect(r.stdout).toMatch(/via http/);
    expect(r.stdout).toMatch(/summary: (\d+) sent .* \1 forwarded/);
    // the attack chains in the bundled stream come out as detections
    for (const rule of [
      'Traffic signaling: socket filter armed, then new listener',
      'Port knocking: firewall opened for one source, then it connected',
      'Container escape: multiple escape indicators in one container',
      'Kubernetes spread: service-account token read, then API server contact',
      'C2 beaconing: periodic outbound connections',
      'Resource deviation: usage spike after a suspicious action in the container',
    ]) {
      expect(r.stdout).toContain(`DETECTION`);
      expect(r.stdout).toContain(rule);
    }
  });

  it('replay feeds a JSON-lines file through the pipeline, skipping non-JSON lines', () => {
    requireBuilt();
    const file = 'test/fixtures/falco-stdout.log';
    const alerts = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim().startsWith('{')).length;
    const r = spawnSync(process.execPath, [CLI, 'replay', file, '--stdout', '--state-dir', join(dir, 'state'), '--log-level', 'warn'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', FALCO_COMPANION_DETECT_ENABLED: 'false' },
    });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout.split('\n').filter((l) => l.startsWith('{'));
    expect(out).toHaveLength(alerts);
    expect(r.stderr).toMatch(new RegExp(`replay: \\d+ lines, ${alerts} alerts, \\d+ skipped`));
  });

  it('replay without --state-dir works in a temporary state directory and removes it (never the daemon database)', () => {
    requireBuilt();
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: join(dir, 'tmp') };
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    delete env['FALCO_COMPANION_STATE_DIR'];
    const r = spawnSync(process.execPath, [CLI, 'replay', 'test/fixtures/falco-stdout.log', '--stdout'], { encoding: 'utf8', timeout: 60_000, env });
    expect(r.status, r.stderr).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.includes('using a temporary state directory'));
    expect(line, r.stderr).toBeDefined();
    const used = (JSON.parse(line as string) as { state_dir: string }).state_dir;
    expect(used.startsWith(join(dir, 'tmp'))).toBe(true);
    expect(existsSync(used)).toBe(false);
  });
});
