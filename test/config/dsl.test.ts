import { describe, expect, it } from 'vitest';
import { checked, cidrs, days, int, list, obj, opt, req, scalar, strings, text, utcTime } from '../../src/config/dsl.js';
import { checkSpec, parseYaml, type Problem } from '../../src/config/validate.js';
import { formatCidr, type Cidr } from '../../src/net/cidr.js';

/** Validate YAML text against a spec: the value and the problems as `file:line:col: path: message`. */
function run(spec: Parameters<typeof checkSpec>[3], yaml: string): { value: unknown; problems: string[] } {
  const y = parseYaml('f.yaml', yaml);
  const problems: Problem[] = [...y.problems];
  const value = checkSpec('f.yaml', y.lc, problems, spec, y.raw ?? {}, y.root);
  return { value, problems: problems.map((p) => `${p.where}: ${p.message}`) };
}

const window = checked(obj('w', { days: days('d'), from: req(utcTime('f')), to: req(utcTime('t')) }), (v, report) => {
  if (v['from'] === v['to']) report('empty window', ['to']);
});
const spec = obj('root', {
  names: strings('globs'),
  maybe: opt(strings('nullable globs')),
  nets: cidrs('cidrs'),
  value: opt(scalar('a scalar')),
  windows: list('windows', window),
  n: int('n', 1, { check: (x) => (x % 2 === 1 ? null : 'must be odd') }),
  nested: { ...obj('detector settings', { a: opt(text('a')) }), keyNoun: 'detector' },
});

describe('config DSL (the pieces the rules file needs)', () => {
  it('reads lone scalars as one item, keeps YAML scalar types, converts CIDRs, days and times', () => {
    const { value, problems } = run(spec, 'names: "a,b"\nnets: ::ffff:1.2.3.0/120\nvalue: 7\nwindows:\n  - {days: fri-mon, from: "22:00", to: "02:00"}\n');
    expect(problems).toEqual([]);
    const v = value as { names: string[]; maybe: null; nets: Cidr[]; value: number; windows: { days: number[]; from: number; to: number }[] };
    expect(v.names).toEqual(['a,b']); // not split: a rule name may hold a comma
    expect(v.maybe).toBeNull();
    expect(v.nets.map(formatCidr)).toEqual(['1.2.3.0/24']);
    expect(v.value).toBe(7);
    expect(v.windows).toEqual([{ days: [0, 1, 5, 6], from: 22 * 60, to: 2 * 60 }]);
  });

  it('reports every problem with file:line:col and list indices in brackets', () => {
    const { problems } = run(
      spec,
      ['names: [ok, ""]', 'nets: [10.0.0.0/8, 010.0.0.1]', 'value: {a: 1}', 'windows:', '  - {days: mon-fry, from: "25:00"}', '  - {from: "01:00", to: "01:00"}', 'n: 2', 'nested: {b: 1}'].join('\n'),
    );
    expect(problems).toEqual([
      'f.yaml:1:13: names[1]: must be a non-empty string',
      'f.yaml:2:20: nets[1]: "010.0.0.1" is not an IPv4/IPv6 address or CIDR',
      'f.yaml:3:8: value: must be a string, number or boolean',
      'f.yaml:5:12: windows[0].days: "mon-fry" is not a day or day range (sun, mon, tue, wed, thu, fri, sat)',
      'f.yaml:5:27: windows[0].from: must be a UTC time "HH:MM" (got "25:00")',
      'f.yaml:5:5: windows[0].to: is required',
      'f.yaml:6:25: windows[1].to: empty window',
      'f.yaml:7:4: n: must be odd',
      'f.yaml:8:10: nested.b: unknown detector; known detectors: a',
    ]);
  });
});
