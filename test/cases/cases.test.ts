/**
 * Detection test cases (`falco-companion test`): the case format (every problem of a malformed
 * case as file:line:col), expectations (a wrong one fails with a diff naming what was expected and
 * what came), enrichment facts (the real egress classifier and baseline), settings merged over the
 * rules file, the older scenario layout and its converter.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertLegacy, findCases, loadCase, loadYamlCase } from '../../src/cases/load.js';
import { mergeSettings, runCase } from '../../src/cases/run.js';
import { configProblems } from '../support/config-problems.js';

const EX = resolve('examples/detection-tests');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-cases-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = join(dir, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

describe('case files', () => {
  it('reports every problem of a malformed case at its file:line:col', () => {
    const file = write(
      'bad.case.yaml',
      [
        'name: bad', // 1
        'alerts: x.jsonl', // 2
        'facts:', // 3
        '  containers:', // 4
        '    - repository: acme/web', // 5: id missing
        '  destinations:', // 6
        '    - ip: 203.0.113.7', // 7
        '      asn: many', // 8
        'settings:', // 9
        '  detectors:', // 10
        '    beacon:', // 11
        '      min-points: 3', // 12: typo
        'expect:', // 13
        '  detections:', // 14
        '    - min_priority: Loud', // 15
        '      count: -1', // 16
        '  other_detections: sometimes', // 17
        'colour: blue', // 18
      ].join('\n'),
    );
    const problems = configProblems(() => loadYamlCase(file));
    const at = (line: number): string | undefined => problems.find((p) => p.startsWith(`${file}:${line}:`));
    expect(at(5), problems.join('\n')).toMatch(/facts\.containers\[0\]\.id: is required/);
    expect(at(8)).toMatch(/facts\.destinations\[0\]\.asn: must be a number/);
    expect(at(12)).toMatch(/settings\.detectors\.beacon\.min-points: unknown key \(did you mean "min_points"\?\)/);
    expect(at(15)).toMatch(/expect\.detections\[0\]\.min_priority: must be a Falco priority/);
    expect(at(16)).toMatch(/expect\.detections\[0\]\.count: must be ≥ 0/);
    expect(at(17)).toMatch(/expect\.other_detections: must be fail, ignore or a Falco priority/);
    expect(at(18)).toMatch(/colour: unknown key/);
    expect(problems.length).toBe(7);
  });

  it('YAML syntax errors and a missing expect are file:line problems too', () => {
    const syntax = write('syntax.case.yaml', 'alerts: a.jsonl\nexpect: [\n');
    expect(configProblems(() => loadYamlCase(syntax))[0]).toMatch(new RegExp(`^${syntax}:\\d+:\\d+: `));
    const missing = write('missing.case.yaml', 'alerts: a.jsonl\n');
    expect(configProblems(() => loadYamlCase(missing))).toEqual([`${missing}:1:1: expect: is required`]);
  });

  it('a bad alert line or enrichment file is an error result naming file:line, not a crash', () => {
    const alerts = write('badline/alerts.jsonl', `${readFileSync(join(EX, 'escape-chain/alerts.jsonl'), 'utf8').split('\n')[0]}\n{"rule": "x"}\nnot json, skipped like Falco's log lines\n`);
    const c = write('badline/case.yaml', 'alerts: alerts.jsonl\nexpect:\n  detections: []\n');
    const r = runCase(c);
    expect(r.status).toBe('error');
    expect(r.errors).toEqual([`${alerts}:2: missing required keys "priority", "time"`]);
    write('badenrich/alerts.jsonl', '');
    write('badenrich/enrichment.json', '{"first": {}}');
    const r2 = runCase(write('badenrich/case.yaml', 'alerts: alerts.jsonl\nenrichment: enrichment.json\nexpect:\n  detections: []\n'));
    expect(r2.status).toBe('error');
    expect(r2.errors[0]).toMatch(/enrichment\.json: "first": keys must be 1-based line numbers/);
  });

  it('finds case.yaml, *.case.yaml and folders in the older layout; names them', () => {
    const { cases, problems } = findCases([EX, join(dir, 'nowhere')]);
    expect(problems).toEqual([`${join(dir, 'nowhere')}: no such file or directory`]);
    expect(cases.length).toBeGreaterThanOrEqual(16);
    expect(cases.every((c) => c.endsWith('case.yaml'))).toBe(true);
    expect(loadCase(join(EX, 'c2-beacon')).name).toBe('c2-beacon');
    expect(loadCase(write('named/my-beacon.case.yaml', 'alerts: a.jsonl\nexpect: {}\n')).name).toBe('my-beacon');
    expect(findCases([resolve('test/fixtures/scenarios')]).cases.every((c) => !c.endsWith('.yaml'))).toBe(true);
  });
});

describe('expectations', () => {
  it('a wrong expectation fails with a diff of expected and got', () => {
    const c = write(
      'wrong/case.yaml',
      [
        `alerts: ${join(EX, 'knock-chain/alerts.jsonl')}`,
        'expect:',
        '  detections:',
        '    - detector: knock',
        '      rule: "Port knocking: firewall opened for one source, then it connected"',
        '      min_priority: Critical', // it is Error
        '      count: 1',
        '    - detector: beacon', // none
        '      mitre: T1071',
      ].join('\n'),
    );
    const r = runCase(c);
    expect(r.status).toBe('fail');
    expect(r.failures).toEqual([
      'expect.detections[0] (detector=knock rule="Port knocking: firewall opened for one source, then it connected" min_priority=Critical count=1):\n' +
        '    - expected priority Critical or higher\n' +
        '    + got Error "Port knocking: firewall opened for one source, then it connected" detector=knock score=0.8 mitre=T1205.001,T1205 at 2025-06-10T14:00:02.400000000Z',
      'expect.detections[1] (detector=beacon mitre=T1071 count≥1):\n    - expected at least one detection\n    + got none',
      'unexpected detection:\n    + Critical "Port knocking: firewall opened for one source, connection accepted, rule removed" detector=knock score=0.9 mitre=T1205.001,T1205 at 2025-06-10T14:01:35.000000000Z',
    ]);
  });

  it('other_detections: a priority lets lower ones through, ignore lets every one', () => {
    const base = [`alerts: ${join(EX, 'knock-chain/alerts.jsonl')}`, 'expect:', '  detections: []'];
    expect(runCase(write('o1/case.yaml', [...base, '  other_detections: Critical'].join('\n'))).failures).toEqual([
      expect.stringMatching(/^unexpected detection at Critical or higher:\n {4}\+ Critical "Port knocking: firewall opened for one source, connection accepted, rule removed"/),
    ]);
    expect(runCase(write('o2/case.yaml', [...base, '  other_detections: Emergency'].join('\n'))).status).toBe('pass');
    expect(runCase(write('o3/case.yaml', [...base, '  other_detections: ignore'].join('\n'))).status).toBe('pass');
    expect(runCase(write('o4/case.yaml', [...base].join('\n'))).status).toBe('fail');
  });

  it('min_score and count hold both ways', () => {
    const c = (score: number, count: number): string =>
      write(`s-${score}-${count}/case.yaml`, [`alerts: ${join(EX, 'c2-beacon/alerts.jsonl')}`, 'expect:', '  detections:', '    - detector: beacon', `      min_score: ${score}`, `      count: ${count}`].join('\n'));
    expect(runCase(c(0.99, 1)).status).toBe('pass');
    expect(runCase(c(0.999, 1)).failures[0]).toMatch(/expected score ≥ 0\.999\n {4}\+ got [A-Z][a-z]+ "C2 beaconing: periodic outbound connections" detector=beacon score=0\.99\d/);
    expect(runCase(c(0.5, 2)).failures[0]).toMatch(/- expected 2 detection\(s\)\n {4}\+ got 1/);
  });
});

describe('facts, settings and rules files', () => {
  it('facts feed the real egress classifier and first-seen baseline (a known destination is not new)', () => {
    const enriched = runCase(join(EX, 'c2-beacon-enriched'), { records: true });
    expect(enriched.status, enriched.failures.join('\n')).toBe('pass');
    const beacon = enriched.records.find((r) => r.detector === 'beacon');
    const e = beacon?.evidence[0]?.enrichment ?? {};
    expect(e).toMatchObject({ 'dest.ip': '203.0.113.77', 'dest.class': 'public', 'dest.rdns': 'vps-77.hosting.example', 'dest.asn': 64511, 'dest.new_for_image': true, 'dest.learning': false, 'image.digest': expect.stringMatching(/^sha256:9c4e/) });
    // The same stream when the baseline already knows the destination: nothing is first seen, so
    // neither the first-seen detection nor the fresh image's "new egress" comes; the beacon does.
    const text = readFileSync(join(EX, 'c2-beacon-enriched/case.yaml'), 'utf8')
      .replace('dest: 198.51.100.10', 'dest: 203.0.113.77')
      .replace('port: 443', 'port: 8443')
      .replace('../c2-beacon/alerts.jsonl', join(EX, 'c2-beacon/alerts.jsonl'))
      .replace(/\nexpect:[\s\S]*$/, '\nexpect:\n  detections:\n    - detector: beacon\n      count: 1\n  other_detections: ignore\n');
    const known = runCase(write('known/case.yaml', text), { records: true });
    expect(known.status, known.failures.join('\n')).toBe('pass');
    expect(known.detections.map((d) => d.rule)).not.toContain('First-seen egress: new destination for this image');
    expect(known.detections.map((d) => d.rule)).not.toContain('Unexpected image: freshly pulled image ran a shell, network tool or new egress');
    expect(known.records.find((r) => r.detector === 'beacon')?.evidence[0]?.enrichment['dest.new_for_image']).toBe(false);
  });

  it('settings merge over the rules file (mappings key by key, lists replace)', () => {
    expect(mergeSettings({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 })).toEqual({ a: { b: 1, c: [3] }, d: 1, e: 2 });
    expect(runCase(join(EX, 'settings-disable-knock')).status).toBe('pass');
    // The same stream with the built-in settings does detect.
    expect(runCase(join(EX, 'knock-chain')).detections.length).toBe(2);
  });

  it('rules_file: a case can bring its own companion rules file; its problems are reported', () => {
    const rules = write('rules/rules.yaml', 'extends: builtin\ndetectors:\n  knock:\n    enabled: false\n');
    const c = write('rules/case.yaml', `alerts: ${join(EX, 'knock-chain/alerts.jsonl')}\nrules_file: rules.yaml\nexpect:\n  detections: []\n`);
    expect(runCase(c).status).toBe('pass');
    writeFileSync(rules, 'detectors:\n  knok: {}\n');
    const r = runCase(c);
    expect(r.status).toBe('error');
    expect(r.errors[0]).toMatch(new RegExp(`^${rules}:2:3: detectors\\.knok: unknown detector`));
  });
});

describe('the older scenario layout', () => {
  it('reads gzipped streams, tolerate_below and cluster.json', () => {
    const src = join(dir, 'legacy-gz', 'knock');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'alerts.jsonl.gz'), gzipSync(readFileSync(join(EX, 'knock-chain/alerts.jsonl'))));
    const expected = (extra: object): void => writeFileSync(join(src, 'expected.json'), JSON.stringify({ description: 'knock', detections: [], generated_by: 'hand', ...extra }));
    expected({ tolerate_below: 'Critical' }); // the Error one is tolerated, the Critical one is not
    const r = runCase(src);
    expect(r.alerts).toBe(3);
    expect(r.failures).toEqual([expect.stringMatching(/^unexpected detection at Critical or higher:\n {4}\+ Critical "Port knocking: firewall opened for one source, connection accepted, rule removed"/)]);
    expected({ tolerate_below: 'Emergency' });
    expect(runCase(src).status).toBe('pass');
    expected({ tolerate_below: 'Loud' });
    expect(runCase(src).errors).toEqual([`${join(src, 'expected.json')}: tolerate_below: not a Falco priority`]);
    expected({});
    writeFileSync(join(src, 'cluster.json'), JSON.stringify({ config: { discover: true }, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } }));
    // The converter keeps the gzipped stream and the cluster facts.
    const out = join(dir, 'legacy-gz-out');
    expect(convertLegacy(src, out)).toBe(join(out, 'knock', 'case.yaml'));
    expect(readFileSync(join(out, 'knock', 'case.yaml'), 'utf8')).toMatch(/alerts: alerts\.jsonl\.gz\ncluster: cluster\.json\n/);
    expect(loadCase(join(out, 'knock')).clusterFile).toBe(join(out, 'knock', 'cluster.json'));
  });


  it('is read as a case and converted to case.yaml without changing the outcome', () => {
    const src = join(dir, 'legacy');
    cpSync(resolve('test/fixtures/scenarios/unexpected-image'), join(src, 'unexpected-image'), { recursive: true });
    cpSync(resolve('test/fixtures/scenarios/benign-dhclient'), join(src, 'benign-dhclient'), { recursive: true });
    const legacy = runCase(join(src, 'unexpected-image'));
    expect(legacy.status).toBe('pass');
    const out = join(dir, 'converted');
    const file = convertLegacy(join(src, 'unexpected-image'), out);
    expect(file).toBe(join(out, 'unexpected-image', 'case.yaml'));
    expect(convertLegacy(join(src, 'unexpected-image'), out)).toBeNull(); // kept unless forced
    expect(convertLegacy(join(src, 'benign-dhclient'), out)).not.toBeNull();
    expect(runCase(join(out, 'benign-dhclient')).status).toBe('pass');
    const converted = runCase(file as string);
    expect(converted.status).toBe('pass');
    expect(converted.detections.map((d) => [d.rule, d.priority])).toEqual(legacy.detections.map((d) => [d.rule, d.priority]));
    expect(readFileSync(join(out, 'benign-dhclient', 'case.yaml'), 'utf8')).not.toMatch(/enrichment/); // {} is not copied
  });
});
