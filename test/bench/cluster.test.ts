/**
 * Smoke run of the cluster-store sizing simulation (bench/cluster.ts, not its figures): a tiny
 * cluster on a real redis-server (Debian package), checking that every part is driven at the
 * daemon's cadence and reported. Needs the build and redis-server; times nothing.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const js = fileURLToPath(new URL('../../dist/bench/cluster.js', import.meta.url));
const redis = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].some((p) => existsSync(p));

function run(args: string[]): Promise<string> {
  return new Promise((ok, fail) => execFile(process.execPath, [js, ...args], { timeout: 100_000 }, (err, out) => (err ? fail(err) : ok(out))));
}

const num = (s: string | undefined, re: RegExp): number => Number(re.exec(s ?? '')?.[1]);

describe.skipIf(!existsSync(js) || !redis)('bench:cluster (tiny)', () => {
  it('drives resource baselines (every sample of every metric of every pod) and pooled series (every connection), each measured alone', async () => {
    // 6 nodes, 60 images × 3 replicas: 30 images per node, 2 workloads each = 60 pods per node.
    const out = await run(['--nodes', '6', '--images', '60', '--dests', '10', '--minutes', '1', '--rb-minutes', '1', '--bs-minutes', '1', '--beacon-share', '0.5', '--beacon-period', '20']);
    const lines = out.split('\n');
    const rbAt = lines.findIndex((l) => l.startsWith('resource baselines: 120 workloads'));
    expect(rbAt, out).toBeGreaterThan(0);
    // A hash and a version index per workload, one index of the namespace.
    expect(lines[rbAt + 1]).toMatch(/Redis: 241 keys, 120 groups, 840 baselines/);
    // 60 pods × 7 metrics, 6 samples each in the minute, merged per baseline until the flush: one entry each.
    expect(num(lines[rbAt + 3], /([\d.]+) entries written/)).toBe(420);
    const bsAt = lines.findIndex((l) => l.startsWith('pooled beacon series:'));
    expect(bsAt, out).toBeGreaterThan(rbAt);
    const series = num(lines[bsAt], /= (\d+) series/);
    const recorded = num(lines[bsAt], /(\d+) connections recorded/);
    expect(series).toBeGreaterThan(0);
    // Every connection is its own second on its node here (timers 18–22 s apart): one point each.
    expect(lines[bsAt + 1]).toContain(`Redis: ${2 * series + 1} keys, ${recorded} points`);
    expect(num(lines[bsAt + 3], /([\d.]+) entries written/)).toBeCloseTo(recorded / 6, 5);
    // Each node pulls the other nodes' points: the pulls exceed the writes.
    expect(num(lines[bsAt + 3], /([\d.]+) entries pulled/)).toBeGreaterThan(num(lines[bsAt + 3], /([\d.]+) entries written/));
  }, 120_000);

  it('leaves a part out when it is turned off', async () => {
    const out = await run(['--nodes', '3', '--images', '6', '--dests', '5', '--minutes', '1', '--workloads-per-image', '0', '--beacon-share', '0']);
    expect(out).toMatch(/^steady state, 1 min/m);
    expect(out).not.toContain('resource baselines:');
    expect(out).not.toContain('pooled beacon series:');
  }, 120_000);
});
