/**
 * `falco-companion test` as users run it (the built CLI): the shipped examples pass with exit 0;
 * a wrong expectation and a malformed case give exit 1, a table with the diff and the file:line
 * problems; --junit writes XML that validates against the JUnit report schema
 * (test/fixtures/junit/junit.xsd, with xmllint from Debian libxml2-utils; the structure is also
 * checked here without it). Every case runs in well under a second.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, requireBuilt } from '../support/cli.js';

const EX = resolve('examples/detection-tests');
const XSD = resolve('test/fixtures/junit/junit.xsd');
const XMLLINT = spawnSync('xmllint', ['--version']).status === 0;

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  requireBuilt();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Structure of the JUnit file, checked without a validator: counts agree with the testcases. */
function checkJunit(xml: string): { tests: number; failures: number; errors: number } {
  expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')).toBe(true);
  const suite = /<testsuite name="[^"]*" tests="(\d+)" failures="(\d+)" errors="(\d+)" skipped="0" time="\d+\.\d{3}" timestamp="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" hostname="[^"]*">/.exec(xml);
  expect(suite, xml.slice(0, 400)).not.toBeNull();
  const [tests, failures, errors] = [Number(suite?.[1]), Number(suite?.[2]), Number(suite?.[3])];
  expect((xml.match(/<testcase /g) ?? []).length).toBe(tests);
  expect((xml.match(/<failure /g) ?? []).length).toBe(failures);
  expect((xml.match(/<error /g) ?? []).length).toBe(errors);
  expect(xml.trimEnd().endsWith('</testsuite>\n</testsuites>')).toBe(true);
  // eslint-disable-next-line no-control-regex
  expect(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(xml)).toBe(false);
  return { tests, failures, errors };
}

function validate(file: string): void {
  if (!XMLLINT) {
    console.warn('xmllint not installed (Debian libxml2-utils): JUnit checked structurally only');
    return;
  }
  const out = execFileSync('xmllint', ['--noout', '--schema', XSD, file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(out).toBe('');
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-test-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('falco-companion test', () => {
  it('passes on the shipped examples, exit 0, with a table and valid JUnit XML', () => {
    const junit = join(dir, 'examples.xml');
    const r = cli(['test', EX, '--junit', junit]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^RESULT +CASE +ALERTS +DETECTIONS +TIME$/);
    const rows = lines.slice(1, -1);
    expect(rows.length).toBeGreaterThanOrEqual(16);
    const ms = rows.map((row) => {
      const m = /^pass +\S+ +\d+ +\d+ +(\d+(?:\.\d+)?) (ms|s)$/.exec(row);
      expect(m, row).not.toBeNull();
      return Number(m?.[1]) * (m?.[2] === 's' ? 1000 : 1);
    });
    // Well under a second per case (the median: the machine running the tests is shared and busy).
    expect([...ms].sort((a, b) => a - b)[Math.floor(ms.length / 2)]).toBeLessThan(500);
    expect(lines[lines.length - 1]).toMatch(/^\d+ case\(s\): \d+ passed, 0 failed, 0 error\(s\) in /);
    const xml = readFileSync(junit, 'utf8');
    expect(checkJunit(xml)).toEqual({ tests: rows.length, failures: 0, errors: 0 });
    validate(junit);
  });

  it('a wrong expectation and a malformed case: exit 1, the diff and file:line in the table and in JUnit', () => {
    const cases = join(dir, 'mine');
    mkdirSync(join(cases, 'wrong'), { recursive: true });
    writeFileSync(
      join(cases, 'wrong', 'case.yaml'),
      `name: "wrong <&> \u0001 expectation"\nalerts: ${join(EX, 'escape-chain/alerts.jsonl')}\nexpect:\n  detections:\n    - detector: escape_chain\n      min_priority: Critical\n`,
    );
    writeFileSync(join(cases, 'broken.case.yaml'), `alerts: a.jsonl\nexpect:\n  detections:\n    - count: many\n`);
    const junit = join(dir, 'mine.xml');
    const r = cli(['test', cases, '--junit', junit]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^ERROR +broken +0 +0 /m);
    expect(r.stdout).toContain(`${join(cases, 'broken.case.yaml')}:4:14: expect.detections[0].count: must be a number, got "many"`);
    expect(r.stdout).toMatch(/^FAIL +wrong <&> \\x01 expectation +2 +1 /m);
    expect(r.stdout).toContain('expect.detections[0] (detector=escape_chain min_priority=Critical count≥1):\n            - expected priority Critical or higher\n            + got Error "Container escape: multiple escape indicators in one container" detector=escape_chain');
    expect(r.stdout).toMatch(/2 case\(s\): 0 passed, 1 failed, 1 error\(s\)/);
    const xml = readFileSync(junit, 'utf8');
    expect(checkJunit(xml)).toEqual({ tests: 2, failures: 1, errors: 1 });
    expect(xml).toContain('name="wrong &lt;&amp;&gt; \ufffd expectation"');
    expect(xml).toMatch(/<failure type="expectation" message="1 difference\(s\): expect\.detections\[0\] \(detector=escape_chain min_priority=Critical count≥1\):">/);
    expect(xml).toMatch(/<error type="case" message="[^"]*broken\.case\.yaml:4:14: expect\.detections\[0\]\.count: must be a number, got &quot;many&quot;">/);
    validate(junit);
  });

  it('exit 2 when nothing is found; a file is taken as a case whatever its name', () => {
    const r = cli(['test', join(dir, 'none')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(dir, 'none')}: no such file or directory`);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(cli(['test', empty]).stderr).toMatch(/no test case \(case\.yaml, \*\.case\.yaml, or a folder with expected\.json\)/);
    const one = join(dir, 'k8s.yml');
    writeFileSync(one, `alerts: ${join(EX, 'k8s-spread/alerts.jsonl')}\nexpect:\n  detections:\n    - detector: k8s_spread\n      mitre: T1552.007\n      count: 1\n`);
    const ok = cli(['test', one, '--verbose']);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/detection: Error "Kubernetes spread: service-account token read, then API server contact" detector=k8s_spread/);
  });
});
