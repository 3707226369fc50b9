/**
 * `falco-companion test DIR|FILE... [--junit FILE] [--verbose]`: run detection test cases offline
 * (src/cases/): each case's recorded Falco alerts through the detection engine, held to its
 * expected outcome. Prints a table, writes JUnit XML for CI, exits 0 when every case passes, 1 when
 * one fails or cannot run, 2 when no case was found.
 */
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Argv } from 'yargs';
import { errorMessage } from '../errors.js';
import { findCases } from '../cases/load.js';
import { junitXml, table } from '../cases/report.js';
import { runCase, type CaseResult } from '../cases/run.js';

export interface TestFlags {
  paths: string[];
  junit?: string;
  verbose?: boolean;
}

export interface TestRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly results: readonly CaseResult[];
}

/** The command without process side effects. */
export function testCases(f: TestFlags, now: () => number = Date.now): TestRun {
  const { cases, problems } = findCases(f.paths);
  if (cases.length === 0) return { code: 2, stdout: '', stderr: `${problems.join('\n') || 'no test case given'}\n`, results: [] };
  const t0 = performance.now();
  const started = now();
  const results = cases.map((c) => runCase(c));
  const totalMs = performance.now() - t0;
  let stderr = problems.length > 0 ? `${problems.join('\n')}\n` : '';
  if (f.junit !== undefined) {
    try {
      writeFileSync(f.junit, junitXml(results, { timestampMs: started, hostname: hostname(), totalMs }));
    } catch (err) {
      stderr += `cannot write ${f.junit}: ${errorMessage(err)}\n`;
      return { code: 1, stdout: table(results, totalMs, f.verbose), stderr, results };
    }
  }
  const ok = problems.length === 0 && results.every((r) => r.status === 'pass');
  return { code: ok ? 0 : 1, stdout: table(results, totalMs, f.verbose), stderr, results };
}

export const testCommand = {
  command: 'test <paths..>',
  describe: 'Run detection test cases offline (recorded Falco alerts + expected detections): prints a table, exits non-zero on any failure',
  builder: (c: Argv): Argv =>
    c
      .positional('paths', { type: 'string', array: true, describe: 'Case files (*.yaml) or folders searched for case.yaml, *.case.yaml and scenario folders' })
      .options({
        junit: { type: 'string', describe: 'Also write JUnit XML to FILE (for CI)' },
        verbose: { type: 'boolean', describe: 'List every detection of every case, not only of failed ones' },
      }) as unknown as Argv,
  handler: (a: unknown): void => {
    const r = testCases(a as TestFlags);
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(r.stderr);
    process.exitCode = r.code;
  },
};
