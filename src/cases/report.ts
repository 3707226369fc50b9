/**
 * What `falco-companion test` prints and writes: a table (one row per case, the differences of a
 * failed case and the problems of a broken one under its row, a summary line), and JUnit XML in
 * the format CI systems read (Jenkins/Surefire `testsuites` > `testsuite` > `testcase` with
 * `failure` for an unmet expectation and `error` for a case that could not run).
 */
import { showInvisible } from '../report/escape.js';
import type { CaseResult } from './run.js';

const LABEL: Record<CaseResult['status'], string> = { pass: 'pass', fail: 'FAIL', error: 'ERROR' };

function ms(n: number): string {
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`;
}

export function summary(results: readonly CaseResult[]): { passed: number; failed: number; errors: number } {
  return {
    passed: results.filter((r) => r.status === 'pass').length,
    failed: results.filter((r) => r.status === 'fail').length,
    errors: results.filter((r) => r.status === 'error').length,
  };
}

/**
 * The table, with the differences under each failed case (and the detections it made with
 * `verbose`). Control characters are shown as escapes: nothing from a case reaches the terminal raw.
 */
export function table(results: readonly CaseResult[], totalMs: number, verbose = false): string {
  return showInvisible(rawTable(results, totalMs, verbose));
}

function rawTable(results: readonly CaseResult[], totalMs: number, verbose: boolean): string {
  const w = Math.min(60, Math.max(4, ...results.map((r) => r.name.length)));
  const lines = [`${'RESULT'.padEnd(7)} ${'CASE'.padEnd(w)} ${'ALERTS'.padStart(7)} ${'DETECTIONS'.padStart(10)} ${'TIME'.padStart(9)}`];
  for (const r of results) {
    lines.push(`${LABEL[r.status].padEnd(7)} ${r.name.padEnd(w)} ${String(r.alerts).padStart(7)} ${String(r.detections.length).padStart(10)} ${ms(r.durationMs).padStart(9)}`);
    for (const e of r.errors) lines.push(`        ${e}`);
    for (const f of r.failures) lines.push(...f.split('\n').map((l) => `        ${l}`));
    if (r.status === 'fail' || verbose) {
      for (const d of r.detections) lines.push(`        detection: ${d.priority} ${JSON.stringify(d.rule)} detector=${d.detector ?? '?'} score=${d.score ?? '?'} at ${d.time}`);
    }
  }
  const s = summary(results);
  lines.push(`${results.length} case(s): ${s.passed} passed, ${s.failed} failed, ${s.errors} error(s) in ${ms(totalMs)}`);
  return lines.join('\n') + '\n';
}

/** XML text: the five entities, and characters XML 1.0 cannot hold replaced by U+FFFD. */
export function xmlEscape(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string);
}

const secs = (ms: number): string => (ms / 1000).toFixed(3);

export interface JunitOptions {
  /** Suite name (default `falco-companion test`). */
  readonly name?: string;
  readonly timestampMs: number;
  readonly hostname: string;
  readonly totalMs: number;
}

export function junitXml(results: readonly CaseResult[], o: JunitOptions): string {
  const s = summary(results);
  const name = o.name ?? 'falco-companion test';
  const ts = new Date(o.timestampMs).toISOString().slice(0, 19);
  const cases = results.map((r) => {
    const attrs = `name="${xmlEscape(r.name)}" classname="${xmlEscape(`falco-companion.${r.file.replace(/\\/g, '/')}`)}" time="${secs(r.durationMs)}"`;
    const out = r.detections.map((d) => `${d.priority} ${d.rule} detector=${d.detector ?? '?'} score=${d.score ?? '?'} at ${d.time}`).join('\n');
    const body: string[] = [];
    if (r.status === 'fail') {
      const first = (r.failures[0] ?? '').split('\n')[0] ?? '';
      body.push(`<failure type="expectation" message="${xmlEscape(`${r.failures.length} difference(s): ${first}`)}">${xmlEscape(r.failures.join('\n'))}</failure>`);
    }
    if (r.status === 'error') body.push(`<error type="case" message="${xmlEscape(r.errors[0] ?? 'error')}">${xmlEscape(r.errors.join('\n'))}</error>`);
    if (out) body.push(`<system-out>${xmlEscape(out)}</system-out>`);
    return body.length === 0 ? `    <testcase ${attrs}/>` : `    <testcase ${attrs}>\n      ${body.join('\n      ')}\n    </testcase>`;
  });
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<testsuites name="${xmlEscape(name)}" tests="${results.length}" failures="${s.failed}" errors="${s.errors}" time="${secs(o.totalMs)}">\n` +
    `  <testsuite name="${xmlEscape(name)}" tests="${results.length}" failures="${s.failed}" errors="${s.errors}" skipped="0" time="${secs(o.totalMs)}" timestamp="${ts}" hostname="${xmlEscape(o.hostname)}">\n` +
    (cases.length > 0 ? `${cases.join('\n')}\n` : '') +
    '  </testsuite>\n</testsuites>\n'
  );
}
