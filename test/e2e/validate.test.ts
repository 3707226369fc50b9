import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, requireBuilt } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-validate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function validate(file: string): { status: number | null; out: string } {
  requireBuilt();
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('e2e: falco-companion validate', () => {
  it('accepts the shipped example config', () => {
    const r = validate('docker/config.example.yaml');
    expect(r.out).toContain('OK');
    expect(r.status).toBe(0);
  });

  it('rejects a broken config with every problem as file:line:col', () => {
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, 'http:\n  listen: 2804\ngrpc:\n  mode: push\nsinks:\n  falcosidekick:\n    url: ftp://x\n');
    const r = validate(f);
    expect(r.status).not.toBe(0);
    expect(r.out).toContain(`${f}:2:11: http.listen`);
    expect(r.out).toContain(`${f}:4:9: grpc.mode`);
    expect(r.out).toContain(`${f}:7:10: sinks.falcosidekick.url`);
  });

  it('rejects a missing file with a clear message', () => {
    const r = validate(join(dir, 'nope.yaml'));
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/cannot read/);
  });

  it('accepts a rules file with the deprecated dedup keys, warning what to use instead', () => {
    const f = join(dir, 'old-rules.yaml');
    writeFileSync(f, 'extends: builtin\noutput:\n  dedup_window: 15m\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', '--rules', f], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${f}: OK`);
    expect(r.stderr).toContain(`${f}: warning: output.dedup_window is deprecated`);
    expect(r.stderr).toContain('use output.renotify (taken as renotify: 15m for now)');
  });
});
