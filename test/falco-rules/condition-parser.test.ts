/** The Falco condition parser used by the rules tests, and its self-test over the official rules. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConditionSyntaxError, collectRefs, fieldBase, outputFields, parseCondition, type Node } from './falco-condition.js';
import { HAVE_REF, NO_REF_MESSAGE, REF_DIR, loadFieldList, loadYamlItems } from './support.js';

describe('Falco condition parser', () => {
  it('parses boolean structure with precedence not > and > or', () => {
    const n = parseCondition('a or b and not c');
    expect(n).toEqual({
      type: 'or',
      children: [
        { type: 'macro', name: 'a' },
        { type: 'and', children: [{ type: 'macro', name: 'b' }, { type: 'not', child: { type: 'macro', name: 'c' } }] },
      ],
    });
  });

  it('parses every comparison operator and operand form', () => {
    const cond = [
      'evt.dir=<',
      'evt.rawres>=0',
      'evt.rawres<=-1',
      'fd.num>0',
      'fd.num<3',
      'proc.name!=sh',
      'proc.name==sh',
      'fd.typechar=\'f\'',
      'proc.cmdline contains "a b"',
      'proc.name icontains SH',
      'evt.buffer bcontains 414243',
      'fd.name startswith /etc/',
      'proc.name istartswith Py',
      'evt.buffer bstartswith 7f454c46',
      'fd.name endswith .pid',
      'fd.name glob "/home/*/.ssh/*"',
      'proc.name regex "^sh$"',
      'proc.name in (sh, "ba sh", companion_shell_binaries)',
      'proc.args intersects (a, b)',
      'fd.name pmatch (/dev/shm, /run)',
      'container.image.repository exists',
      'proc.aname[2]=sshd',
      'container.mount.dest[/proc*] in ("<NA>","N/A")',
      'k8s.pod.label[app.kubernetes.io/name]=x',
      'tolower(proc.name)=sh',
      'proc.name=val(proc.pname)',
      'evt.arg.domain contains AF_PACKET',
      'evt.arg[0]=3',
      'proc.name in ()',
    ].join(' and ');
    const refs = collectRefs(parseCondition(cond));
    expect(new Set(refs.operators)).toEqual(
      new Set(['=', '>=', '<=', '>', '<', '!=', '==', 'contains', 'icontains', 'bcontains', 'startswith', 'istartswith', 'bstartswith', 'endswith', 'glob', 'regex', 'in', 'intersects', 'pmatch', 'exists']),
    );
    const raws = refs.fields.map((f) => f.raw);
    expect(raws).toContain('proc.aname[2]');
    expect(raws).toContain('container.mount.dest[/proc*]');
    expect(raws).toContain('k8s.pod.label[app.kubernetes.io/name]');
    expect(raws).toContain('proc.pname'); // from val()
    expect(raws).toContain('evt.arg[0]');
    expect(refs.listItems).toContain('companion_shell_binaries');
    expect(refs.listItems).not.toContain('ba sh'); // quoted items are values, never list references
  });

  it('keeps "<" after "=" as a value, not an operator', () => {
    const n = parseCondition('evt.dir=<') as Extract<Node, { type: 'check' }>;
    expect(n.op).toBe('=');
    expect(n.operands).toEqual([{ kind: 'value', text: '<', quoted: false }]);
  });

  it.each([
    ['(a and b', 'unbalanced "("'],
    ['a and b)', 'unbalanced ")"'],
    ['proc.name', 'without an operator'],
    ['proc.name ~= x', 'without an operator'],
    ['proc.name in sh', '"(" expected'],
    ['proc.name = ', 'operand expected'],
    ['a and', 'field or macro expected'],
    ['', 'empty condition'],
    ['proc.name in (a b)', '"," or ")" expected'],
    ['proc.name = "x', 'unterminated string'],
    ['proc.aname[2 = x', 'unbalanced "["'],
    ['and a', 'operand expected before'],
  ])('rejects %j (%s)', (cond, message) => {
    expect(() => parseCondition(cond)).toThrow(ConditionSyntaxError);
    expect(() => parseCondition(cond)).toThrow(message);
  });

  it('extracts output fields with argument forms', () => {
    const f = outputFields('x=%proc.aname[2] y=%evt.arg.domain z=%container.mount.dest[/var/run/docker.sock] end=%proc.name.');
    expect(f.map((x) => x.raw)).toEqual(['proc.aname[2]', 'evt.arg.domain', 'container.mount.dest[/var/run/docker.sock]', 'proc.name']);
  });
});

describe.skipIf(!HAVE_REF)('Falco condition parser: self-test over the official rules files', () => {
  const cases = [
    // container.info: an output-only placeholder of Falco <= 0.40 (expanded by -pc/-pk), not a filter field.
    { file: 'falco_rules-3.2.0.yaml', fields: '0.40.0', base: [] as string[], placeholders: ['container.info'] },
    { file: 'falco_rules.yaml', fields: '0.44.0', base: [] as string[], placeholders: [] as string[] },
    { file: 'falco-incubating_rules.yaml', fields: '0.44.0', base: ['falco_rules.yaml'], placeholders: [] as string[] },
    { file: 'falco-sandbox_rules.yaml', fields: '0.44.0', base: ['falco_rules.yaml'], placeholders: [] as string[] },
  ] as const;
  for (const c of cases) {
    it(HAVE_REF ? `${c.file}: every condition parses; macros defined; fields in the ${c.fields} list` : NO_REF_MESSAGE, () => {
      const items = loadYamlItems(join(REF_DIR, c.file));
      const all = [...c.base.flatMap((b) => loadYamlItems(join(REF_DIR, b))), ...items];
      const macros = new Set(all.filter((i) => typeof i.macro === 'string').map((i) => String(i.macro)));
      const known = loadFieldList(c.fields);
      const knownNames = new Set(known.keys());
      const problems: string[] = [];
      let conditions = 0;
      for (const it of items) {
        if (typeof it.condition !== 'string') continue;
        conditions++;
        const where = String(it.rule ?? it.macro);
        let refs;
        try {
          refs = collectRefs(parseCondition(it.condition));
        } catch (e) {
          problems.push(`${where}: ${(e as Error).message}`);
          continue;
        }
        for (const m of refs.macros) if (!macros.has(m)) problems.push(`${where}: undefined macro ${m}`);
        for (const f of refs.fields) if (!known.has(fieldBase(f.name, knownNames))) problems.push(`${where}: unknown field ${f.raw}`);
        for (const f of outputFields(String(it.output ?? ''))) if (!(c.placeholders as readonly string[]).includes(f.name) && !known.has(fieldBase(f.name, knownNames))) problems.push(`${where}: unknown output field ${f.raw}`);
      }
      expect(conditions).toBeGreaterThan(20);
      expect(problems).toEqual([]);
    });
  }

  it('the placeholder allowance is needed only for the 0.40 file (container.info is really absent)', () => {
    expect(loadFieldList('0.40.0').has('container.info')).toBe(false);
    expect(loadFieldList('0.44.0').has('container.info')).toBe(false);
  });
});
