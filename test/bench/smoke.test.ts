/**
 * Smoke run of the benchmark runner (not the benchmark): the quick file-replay path in child
 * processes, checking the report structure. Needs the build (npm test runs it first).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const runJs = fileURLToPath(new URL('../../dist/bench/run.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'fc-bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!existsSync(runJs))('bench runner (quick, file path only)', () => {
  it('writes a report with the machine, the companion figure next to its baseline, ratio, target and CPU per 1 k alerts', async () => {
    const out = join(dir, 'bench.md');
    await new Promise<void>((ok, fail) =>
      execFile(process.execPath, [runJs, '--quick', '--only', 'file', '--out', out], { timeout: 90_000 }, (err) => (err ? fail(err) : ok())),
    );
    const md = readFileSync(out, 'utf8');
    expect(md).toMatch(/^# Benchmarks/);
    expect(md).toMatch(/- CPU: .+\n- cores: \d+\n- memory: .+GiB/);
    expect(md).toMatch(/- Node: v\d+/);
    const row = md.split('\n').find((l) => l.startsWith('| JSON-lines file replay'));
    expect(row, 'file replay row').toBeDefined();
    const cells = (row as string).split('|').map((c) => c.trim());
    // path | metric | companion | baseline | ratio | target | met | cpu
    expect(Number(cells[3]?.replaceAll(',', ''))).toBeGreaterThan(0);
    expect(cells[4]).toMatch(/^[\d,]+ \(readline \+ JSON\.parse\)$/);
    expect(Number(cells[5])).toBeGreaterThan(0);
    expect(cells[6]).toBe('≥ 0.5 × baseline');
    expect(cells[7]).toMatch(/\*\*(met|not met)\*\*/);
    expect(cells[8]).toMatch(/^\d+\.\d{3} \/ \d+\.\d{3}$/);
  }, 120_000);
});
