// `npm run fuzz [-- RUNS [NAME-FILTER]]`: every fuzz target of test/fuzz/ with RUNS cases (default
// 10^5), outside CI. Prints the results table for docs/security-parsers.md ("Fuzzing results").
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';

const runs = Number(process.argv[2] ?? 100_000);
const filter = process.argv[3];
if (!Number.isInteger(runs) || runs <= 0) {
  console.error('usage: npm run fuzz -- [RUNS] [NAME-FILTER]');
  process.exit(2);
}
const out = new URL('../fuzz-results.jsonl', import.meta.url).pathname;
rmSync(out, { force: true });
const args = ['vitest', 'run', 'test/fuzz/parsers.test.ts', '--maxWorkers=1', ...(filter ? ['-t', filter] : [])];
const started = Date.now();
const r = spawnSync('npx', args, { stdio: 'inherit', env: { ...process.env, FUZZ_RUNS: String(runs), FUZZ_OUT: out } });
const rows = existsSync(out) ? readFileSync(out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
console.log(`\nFuzzing results (${new Date().toISOString().slice(0, 10)}, node ${process.version}, ${cpus()[0]?.model ?? 'cpu'}; ${Math.round((Date.now() - started) / 1000)} s in all):\n`);
console.log('| target | module | cases | time (s) | slowest input (ms) | heap growth (MiB) | peak heap (MiB) | seed |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const x of rows) console.log(`| ${x.name} | ${x.module} | ${x.cases} | ${x.seconds} | ${x.maxMsPerInput} | ${x.heapGrowthMiB} | ${x.peakHeapMiB} | ${x.seed} |`);
process.exit(r.status ?? 1);
