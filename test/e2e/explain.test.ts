/**
 * `explain` with the built CLI as a child process: one alert from a file or on stdin, against the
 * state directory a replay left (statistics), human and JSON output, clear failures.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, requireBuilt } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-explain-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ENV = { ...process.env, FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false', FALCO_COMPANION_LOG_LEVEL: 'warn' };
const FIXTURE = 'test/fixtures/scenarios/benign-dhclient/alerts.jsonl';
const state = join(dir, 'state');

function cli(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: ENV, ...(input !== undefined ? { input } : {}) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('e2e: explain', () => {
  const lines = readFileSync(FIXTURE, 'utf8').split('\n').filter((l) => l.startsWith('{'));
  const first = lines[0] as string;
  /** Packet sockets of the same program in the fixture: what the statistics must have counted. */
  const same = lines.filter((l) => l.includes('"rule":"Companion signal: packet or raw socket created"') && l.includes('"proc.exepath":"/sbin/dhclient"')).length;
  beforeAll(() => {
    requireBuilt();
    const r = cli(['replay', FIXTURE, '--state-dir', state]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('explains an allowlisted packet socket: entry and allow entry with file:line, the condition that held, the statistics', () => {
    const file = join(dir, 'alert.json');
    writeFileSync(file, JSON.stringify(JSON.parse(first), null, 2)); // a pretty-printed alert file
    const r = cli(['explain', file, '--state-dir', state]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^signal raw_socket\/af_packet from signals\[0\] "Companion signal: packet or raw socket created" \(.*companion-rules\.yaml:\d+\)$/m);
    expect(r.stdout).toMatch(/^ {2}socket_filter: suppressed \(allowlist\)$/m);
    expect(r.stdout).toMatch(/^ {4}allow "dhcp-clients" \(.*companion-rules\.yaml:\d+\): MATCHES$/m);
    expect(r.stdout).toMatch(/^ {6}yes exe \[\*\/dhclient, .*\] vs \/sbin\/dhclient \/ dhclient$/m);
    expect(r.stdout).toContain(`statistics (last 24 h): socket_filter allowlist ${same}x over 1h`);
    expect(r.stdout).toMatch(/detector state: no detector state checkpoint in .*: fresh detector states/);
  });

  it('reads one line on stdin and answers JSON for scripts', () => {
    const r = cli(['explain', '--state-dir', state, '--json'], first + '\n');
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { signals: { kind: string; detectors: { detector: string; suppressed: string | null }[] }[]; statistics: { kind: string; rows: { count: number }[] }[] };
    expect(j.signals.map((s) => s.kind)).toEqual(['raw_socket']);
    expect(j.signals[0]?.detectors.find((d) => d.detector === 'socket_filter')?.suppressed).toBe('allowlist');
    expect(j.statistics[0]?.rows[0]?.count).toBe(same);
    expect(same).toBeGreaterThan(0);
  });

  it('refuses what is not a Falco alert (exit 2, the reason)', () => {
    const r = cli(['explain', '--state-dir', state], '{"hello": 1}\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/falco-companion explain: stdin: not a Falco JSON alert: missing required keys "rule", "priority", "time"/);
  });
});
