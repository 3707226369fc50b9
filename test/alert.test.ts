import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  InvalidAlertError,
  PRIORITIES,
  alertFromJson,
  atLeast,
  createAlert,
  fieldNumber,
  fieldString,
  formatTimeNs,
  knownField,
  knownFields,
  knownSlot,
  parsePriority,
  parseTime,
  priorityRank,
  serializeAlert,
  withEnrichment,
  type Alert,
  type KnownFields,
  type Origin,
} from '../src/alert.js';
import { LosslessNumber, parse, stringify, type JsonValue } from '../src/json/lossless.js';

const origin: Origin = { kind: 'test', component: 'test' };
const from = (text: string): Alert => alertFromJson(parse(text), origin, 1);

const CURRENT =
  '{"hostname":"node-a","output":"13:44:05.478445995: Critical A shell was spawned (user=root)","output_fields":{"container.id":"ee97d9c4186f","container.privileged":false,"evt.time":1685022245478445995,"fd.num":-1,"k8s.pod.label[app.kubernetes.io/name]":"web","k8s.ns.name":null,"proc.aname[2]":"runc","proc.cmdline":"sh -c \\"echo ü\\" \\u0000","ratio":0.25,"big":-12345678901234567890},"priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","shell"],"time":"2023-05-25T13:44:05.478445995Z","message":"A shell was spawned (user=root)"}';

describe('time', () => {
  it.each([
    ['2023-05-25T13:44:05.478445995Z', '2023-05-25T13:44:05.478445995Z'],
    ['2023-05-25T13:44:05Z', '2023-05-25T13:44:05.000000000Z'],
    ['2023-05-25T13:44:05.4Z', '2023-05-25T13:44:05.400000000Z'],
    ['2023-05-25T13:44:05.123456789123Z', '2023-05-25T13:44:05.123456789Z'],
    ['2023-05-25t13:44:05.000000001z', '2023-05-25T13:44:05.000000001Z'],
    ['2023-05-25 13:44:05.5Z', '2023-05-25T13:44:05.500000000Z'],
    ['2023-05-25T15:44:05.478445995+02:00', '2023-05-25T13:44:05.478445995Z'],
    ['2023-05-25T09:14:05.000000001-0430', '2023-05-25T13:44:05.000000001Z'],
    ['2024-01-01T00:30:00.5+01:00', '2023-12-31T23:30:00.500000000Z'],
    ['2016-08-04T16:17:57.881781397+0000', '2016-08-04T16:17:57.881781397Z'],
    ['1970-01-01T00:00:00Z', '1970-01-01T00:00:00.000000000Z'],
  ])('normalises %s', (input, canonical) => {
    const t = parseTime(input);
    expect(t?.text).toBe(canonical);
    expect(formatTimeNs(t!.ns)).toBe(canonical);
  });

  it.each(['2023-02-30T00:00:00Z', '2023-05-25T24:00:00Z', '2023-05-25T13:60:00Z', '2023-05-25', '13:44:05.478445995', '2023-05-25T13:44:05', 'x', ''])(
    'rejects %s',
    (input) => {
      expect(parseTime(input)).toBeNull();
    },
  );

  it('ns and text round-trip for arbitrary instants (incl. before 1970)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -2_000_000_000_000_000_000n, max: 4_000_000_000_000_000_000n }), (ns) => {
        const text = formatTimeNs(ns);
        expect(text).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);
        expect(parseTime(text)?.ns).toBe(ns);
      }),
    );
  });
});

describe('priorities', () => {
  it('parse case-insensitively incl. info and padding', () => {
    for (const p of PRIORITIES) {
      expect(parsePriority(p)).toBe(p);
      expect(parsePriority(p.toUpperCase())).toBe(p);
      expect(parsePriority(p.toLowerCase())).toBe(p);
    }
    expect(parsePriority('INFO')).toBe('Informational');
    expect(parsePriority(' info ')).toBe('Informational');
    expect(parsePriority('warn')).toBeNull();
    expect(parsePriority('')).toBeNull();
  });
  it('rank and compare by severity', () => {
    expect(priorityRank('Emergency')).toBe(0);
    expect(priorityRank('Debug')).toBe(7);
    expect(atLeast('Critical', 'Warning')).toBe(true);
    expect(atLeast('Notice', 'Warning')).toBe(false);
    expect(atLeast('Warning', 'Warning')).toBe(true);
  });
});

describe('alertFromJson', () => {
  it('normalises a current Falco alert, keeping typed values, bracketed keys and nulls', () => {
    const a = from(CURRENT);
    expect(a.rule).toBe('Terminal shell in container');
    expect(a.priority).toBe('Critical');
    expect(a.timeNs).toBe(1685022245478445995n);
    expect(a.source).toBe('syscall');
    expect(a.hostname).toBe('node-a');
    expect(a.tags).toEqual(['container', 'shell']);
    const f = a.outputFields!;
    expect(f['evt.time']).toBeInstanceOf(LosslessNumber);
    expect(String(f['evt.time'])).toBe('1685022245478445995');
    expect(String(f['big'])).toBe('-12345678901234567890');
    expect(f['fd.num']).toBe(-1);
    expect(f['ratio']).toBe(0.25);
    expect(f['container.privileged']).toBe(false);
    expect(f['k8s.ns.name']).toBeNull();
    expect(f['proc.aname[2]']).toBe('runc');
    expect(f['k8s.pod.label[app.kubernetes.io/name]']).toBe('web');
    expect(f['proc.cmdline']).toBe('sh -c "echo ü" \u0000');
    expect(a.extra).toEqual({ message: 'A shell was spawned (user=root)' });
    expect(a.origin).toEqual(origin);
    expect(a.receivedAtMs).toBe(1);
  });

  it('accepts old alerts without source, hostname, tags (key order of Falco 0.2x)', () => {
    const a = from(
      '{"output":"18:44:25.176793748: Notice shell","priority":"Notice","rule":"Terminal shell in container","time":"2021-09-15T18:44:25.176793748Z", "output_fields": {"evt.time":1631731465176793748,"k8s.ns.name":"dev"}}',
    );
    expect(a.source).toBeNull();
    expect(a.hostname).toBeNull();
    expect(a.tags).toBeNull();
    expect(Object.keys(a.outputFields!)).toEqual(['evt.time', 'k8s.ns.name']);
  });

  it('accepts internal messages: no tags, string numbers, priority info, no output_fields', () => {
    const a = from(
      '{"hostname":"h","output":"Falco internal: syscall event drop. 815508 system calls dropped in last second.","output_fields":{"n_drops":"815508","ebpf_enabled":"1"},"priority":"info","rule":"Falco internal: syscall event drop","source":"internal","time":"2023-03-03T03:03:03.000000003Z"}',
    );
    expect(a.priority).toBe('Informational');
    expect(a.tags).toBeNull();
    expect(fieldNumber(a, 'n_drops')).toBe(815508);
    expect(fieldString(a, 'ebpf_enabled')).toBe('1');
    const b = from('{"priority":"Debug","rule":"r","time":"2023-03-03T03:03:03Z"}');
    expect(b.outputFields).toBeNull();
    expect(b.output).toBe('');
  });

  it('flattens nested values in output_fields to their JSON text', () => {
    const a = from('{"priority":"Debug","rule":"r","time":"2023-03-03T03:03:03Z","output_fields":{"x":{"a":[1,12345678901234567890]}}}');
    expect(a.outputFields!['x']).toBe('{"a":[1,12345678901234567890]}');
  });

  it.each([
    ['[]', /array/],
    ['"x"', /string/],
    ['null', /null/],
    ['12', /number/],
    ['{}', /missing required keys "rule", "priority", "time"/],
    ['{"rule":"r","priority":"Loud","time":"2023-03-03T03:03:03Z"}', /not a Falco priority/],
    ['{"rule":"","priority":"Debug","time":"2023-03-03T03:03:03Z"}', /non-empty/],
    ['{"rule":"r","priority":"Debug","time":"yesterday"}', /RFC 3339/],
    ['{"rule":"r","priority":"Debug","time":1}', /RFC 3339/],
    ['{"rule":"r","priority":"Debug","time":"2023-03-03T03:03:03Z","tags":"a"}', /tags/],
    ['{"rule":"r","priority":"Debug","time":"2023-03-03T03:03:03Z","tags":[1]}', /tags/],
    ['{"rule":"r","priority":"Debug","time":"2023-03-03T03:03:03Z","output_fields":[]}', /output_fields/],
    ['{"rule":"r","priority":"Debug","time":"2023-03-03T03:03:03Z","hostname":1}', /hostname/],
    ['{"rule":"r","priority":"Debug","time":"2023-03-03T03:03:03Z","source":false}', /source/],
    ['{"rule":"r","priority":3,"time":"2023-03-03T03:03:03Z"}', /priority/],
  ])('rejects %s with a precise reason', (text, reason) => {
    let err: unknown;
    try {
      from(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidAlertError);
    expect((err as InvalidAlertError).code).toBe('E_INVALID_ALERT');
    expect((err as Error).message).toMatch(reason);
  });

  it('hints at json_output when the body is not an alert at all', () => {
    expect(() => from('{"foo":1}')).toThrow(expect.objectContaining({ hint: expect.stringMatching(/json_output/) }) as Error);
  });

  it('produces frozen alerts that cannot be mutated', () => {
    const a = from(CURRENT);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a.outputFields)).toBe(true);
    expect(Object.isFrozen(a.tags)).toBe(true);
    expect(Object.isFrozen(a.extra)).toBe(true);
    expect(Object.isFrozen(a.origin)).toBe(true);
    expect(Object.isFrozen(a.companion)).toBe(true);
    expect(() => {
      (a as { rule: string }).rule = 'x';
    }).toThrow(TypeError);
    expect(() => {
      (a.outputFields as Record<string, unknown>)['evt.time'] = 1;
    }).toThrow(TypeError);
  });

  it('does not share mutable state with the parsed input', () => {
    const v = parse(CURRENT) as Record<string, JsonValue>;
    const a = alertFromJson(v, origin);
    (v['output_fields'] as Record<string, JsonValue>)['proc.aname[2]'] = 'changed';
    (v['tags'] as JsonValue[]).push('x');
    expect(a.outputFields!['proc.aname[2]']).toBe('runc');
    expect(a.tags).toEqual(['container', 'shell']);
  });
});

describe('serializeAlert', () => {
  function fieldByField(original: string, out: string): void {
    const o = parse(original) as Record<string, JsonValue>;
    const s = parse(out) as Record<string, JsonValue>;
    // serializeAlert always writes `output` ("" when the sender had none, as Falcosidekick expects one).
    const expectedKeys = new Set(Object.keys(o).filter((k) => o[k] !== null));
    expectedKeys.add('output');
    expect(Object.keys(s).sort()).toEqual([...expectedKeys].sort());
    if (o['output'] === undefined || o['output'] === null) expect(s['output']).toBe('');
    for (const k of Object.keys(o)) {
      if (o[k] === null) continue;
      if (k === 'output_fields') {
        const of = o[k] as Record<string, JsonValue>;
        const sf = s[k] as Record<string, JsonValue>;
        expect(Object.keys(sf)).toEqual(Object.keys(of));
        for (const f of Object.keys(of)) {
          const ov = of[f] as JsonValue;
          const expected = ov !== null && typeof ov === 'object' && !(ov instanceof LosslessNumber) ? stringify(stringify(ov)) : stringify(ov);
          expect(stringify(sf[f] as JsonValue), f).toBe(expected);
        }
      } else {
        expect(stringify(s[k] as JsonValue), k).toBe(stringify(o[k] as JsonValue));
      }
    }
  }

  it('round-trips every field and digit, keys alphabetical', () => {
    const out = serializeAlert(from(CURRENT));
    fieldByField(CURRENT, out);
    expect(Object.keys(parse(out) as object)).toEqual(['hostname', 'output', 'output_fields', 'priority', 'rule', 'source', 'tags', 'time', 'message']);
    expect(out).toContain('"evt.time":1685022245478445995');
    expect(out).toContain('"big":-12345678901234567890');
    expect(from(out)).toMatchObject({ rule: 'Terminal shell in container', timeNs: 1685022245478445995n });
  });

  it('round-trips arbitrary alerts (property)', () => {
    const fieldValue = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
      fc.boolean(),
      fc.constant(null),
      fc.bigInt({ min: -(10n ** 25n), max: 10n ** 25n }).map((b) => (Number.isSafeInteger(Number(b)) ? Number(b) : new LosslessNumber(b.toString()))),
    );
    const alertObj = fc.record(
      {
        hostname: fc.string(),
        output: fc.string(),
        output_fields: fc.dictionary(fc.string().filter((k) => k !== '__proto__'), fieldValue, { maxKeys: 8 }),
        priority: fc.constantFrom(...PRIORITIES),
        rule: fc.string({ minLength: 1 }).filter((r) => r.trim() !== ''),
        source: fc.string(),
        tags: fc.array(fc.string(), { maxLength: 4 }),
        time: fc.bigInt({ min: 0n, max: 4_000_000_000_000_000_000n }).map(formatTimeNs),
      },
      { requiredKeys: ['priority', 'rule', 'time'] },
    );
    fc.assert(
      fc.property(alertObj, (o) => {
        const text = stringify(o as unknown as JsonValue);
        fieldByField(text, serializeAlert(alertFromJson(parse(text), origin)));
      }),
      { numRuns: 500 },
    );
  });

  it('adds companion keys only when asked and keeps the original untouched', () => {
    const a = from(CURRENT);
    const b = withEnrichment(a, { 'container.owner': 'deploy/web', score: 3 });
    expect(b).not.toBe(a);
    expect(a.companion).toEqual({});
    expect(b.companion).toEqual({ 'container.owner': 'deploy/web', score: 3 });
    expect(Object.isFrozen(b)).toBe(true);
    expect(Object.isFrozen(b.companion)).toBe(true);
    expect(withEnrichment(a, {})).toBe(a);
    const c = withEnrichment(b, { score: 4 });
    expect(b.companion['score']).toBe(3);
    expect(c.companion['score']).toBe(4);
    const f = (parse(serializeAlert(c)) as Record<string, Record<string, JsonValue>>)['output_fields']!;
    expect(f['companion.container.owner']).toBe('deploy/web');
    expect(f['companion.score']).toBe(4);
    expect(serializeAlert(c, { includeCompanion: false })).toBe(serializeAlert(a));
  });

  it('writes companion keys even when the alert had no output_fields', () => {
    const a = withEnrichment(createAlert({ time: '2023-01-01T00:00:00Z', rule: 'r', priority: 'Debug', origin }), { x: 'y' });
    expect(serializeAlert(a)).toBe('{"output":"","output_fields":{"companion.x":"y"},"priority":"Debug","rule":"r","time":"2023-01-01T00:00:00.000000000Z"}');
  });
});

describe('createAlert and field helpers', () => {
  it('rejects an invalid time', () => {
    expect(() => createAlert({ time: 'now', rule: 'r', priority: 'Debug', origin })).toThrow(InvalidAlertError);
  });
  it('fieldString / fieldNumber treat <NA>, null, absent and non-numbers as null', () => {
    const a = from(
      '{"priority":"Debug","rule":"r","time":"2023-03-03T03:03:03Z","output_fields":{"na":"<NA>","n":null,"s":"12","e":"","b":true,"big":12345678901234567890,"f":-1.5}}',
    );
    expect(fieldString(a, 'na')).toBeNull();
    expect(fieldString(a, 'n')).toBeNull();
    expect(fieldString(a, 'missing')).toBeNull();
    expect(fieldString(a, 'big')).toBe('12345678901234567890');
    expect(fieldString(a, 'b')).toBe('true');
    expect(fieldNumber(a, 's')).toBe(12);
    expect(fieldNumber(a, 'e')).toBeNull();
    expect(fieldNumber(a, 'b')).toBeNull();
    expect(fieldNumber(a, 'na')).toBeNull();
    expect(fieldNumber(a, 'f')).toBe(-1.5);
    expect(fieldNumber(a, 'big')).toBe(Number('12345678901234567890')); // nearest double: fine for arithmetic, never for display
  });
});

describe('untrusted keys', () => {
  it('keeps a __proto__ key in output_fields and extra as data, never as a prototype', () => {
    const text =
      '{"priority":"Debug","rule":"r","time":"2023-03-03T03:03:03Z","output_fields":{"__proto__":{"polluted":1},"a":1},"__proto__":{"x":1}}';
    const a = from(text);
    expect(Object.keys(a.outputFields!)).toEqual(['__proto__', 'a']);
    expect(Object.getPrototypeOf(a.extra)).toBe(Object.prototype);
    const out = parse(serializeAlert(a)) as Record<string, JsonValue>;
    expect(Object.keys(out['output_fields'] as object)).toEqual(['__proto__', 'a']);
    expect(Object.keys(out)).toContain('__proto__');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('canonical time (the form Falco sends, read without a regular expression)', () => {
  it.each([
    ['2024-02-29T00:00:00.000000000Z', true],
    ['2023-02-29T00:00:00.000000000Z', false],
    ['2000-02-29T23:59:59.999999999Z', true],
    ['2100-02-29T00:00:00.000000000Z', false],
    ['2023-04-31T00:00:00.000000000Z', false],
    ['2023-12-31T23:59:59.000000001Z', true],
    ['2023-05-25T24:00:00.000000000Z', false],
    ['2023-05-25T13:44:5x.000000000Z', false],
    ['2023-05-25T13:44:05.00000000xZ', false],
  ])('%s valid: %s (as the general form says)', (text, valid) => {
    const t = parseTime(text);
    expect(t !== null).toBe(valid);
    if (t) expect(t.text).toBe(text);
  });

  it('a leap second (:60) takes the general form: the next minute', () => {
    expect(parseTime('2023-05-25T13:44:60.500000000Z')?.text).toBe('2023-05-25T13:45:00.500000000Z');
  });
});

describe('known fields (the fixed-shape record of the fields the stages read)', () => {
  const SLOT_FIELDS: Record<Exclude<keyof KnownFields, 'procApid' | 'procAname' | 'procAexepath'>, string> = {
    containerId: 'container.id',
    containerName: 'container.name',
    containerImage: 'container.image',
    imageRepository: 'container.image.repository',
    imageTag: 'container.image.tag',
    imageDigest: 'container.image.digest',
    containerMounts: 'container.mounts',
    containerPrivileged: 'container.privileged',
    containerIp: 'container.ip',
    k8sNs: 'k8s.ns.name',
    k8sPod: 'k8s.pod.name',
    k8sPodLabels: 'k8s.pod.labels',
    k8sPodIp: 'k8s.pod.ip',
    evtType: 'evt.type',
    evtRes: 'evt.res',
    procPid: 'proc.pid',
    procVpid: 'proc.vpid',
    procPpid: 'proc.ppid',
    procSid: 'proc.sid',
    procName: 'proc.name',
    procExepath: 'proc.exepath',
    procExe: 'proc.exe',
    procCmdline: 'proc.cmdline',
    procPname: 'proc.pname',
    procPexepath: 'proc.pexepath',
    procPexe: 'proc.pexe',
    fdName: 'fd.name',
    fdType: 'fd.type',
    fdL4proto: 'fd.l4proto',
    fdCip: 'fd.cip',
    fdCport: 'fd.cport',
    fdSip: 'fd.sip',
    fdSport: 'fd.sport',
    fdLip: 'fd.lip',
    fdLport: 'fd.lport',
    fdRip: 'fd.rip',
    fdRport: 'fd.rport',
    fdCipName: 'fd.cip.name',
    fdSipName: 'fd.sip.name',
    fdRipName: 'fd.rip.name',
  };

  it.each(Object.entries(SLOT_FIELDS))('slot %s holds %s exactly (and knownField reads it by name)', (slot, field) => {
    const big = new LosslessNumber('1796280154014857642');
    for (const v of ['x', 7, null, false, big]) {
      const k = knownFields({ [field]: v, other: 'y' });
      expect(k[slot as keyof KnownFields]).toBe(v);
      const others = Object.entries(k).filter(([name, x]) => name !== slot && x !== undefined && x !== null);
      expect(others).toEqual([]);
      const a = createAlert({ time: '2026-01-01T00:00:00Z', rule: 'r', priority: 'Notice', outputFields: { [field]: v }, origin });
      expect(knownField(a, knownSlot(field) as number)).toBe(v);
    }
  });

  it('ancestor fields by level (index n for [n]); null when the alert has none', () => {
    const k = knownFields({ 'proc.apid[2]': 13988, 'proc.aname[2]': 'containerd-shim', 'proc.aexepath[9]': '/x', 'proc.apid[3]': null });
    expect(k.procApid?.[2]).toBe(13988);
    expect(k.procApid?.[3]).toBeNull();
    expect(k.procApid?.[1]).toBeUndefined();
    expect(k.procAname?.[2]).toBe('containerd-shim');
    expect(k.procAexepath?.[9]).toBe('/x');
    expect(knownFields({ 'proc.name': 'sh' }).procAname).toBeNull();
    expect(knownSlot('proc.aname[10]')).toBeUndefined();
  });

  it('every alert carries the record of its output fields, frozen; enrichment keeps it', () => {
    const a = from(CURRENT);
    expect(a.known.containerId).toBe('ee97d9c4186f');
    expect(a.known.containerPrivileged).toBe(false);
    expect(a.known.k8sNs).toBeNull();
    expect(a.known.procAname?.[2]).toBe('runc');
    expect(Object.isFrozen(a.known)).toBe(true);
    expect(withEnrichment(a, { x: 1 }).known).toBe(a.known);
    expect(from('{"rule":"r","priority":"Notice","time":"2026-01-01T00:00:00Z"}').known.procPid).toBeUndefined();
  });

  it('owned: the same alert, the parse used in place (frozen) instead of copied', () => {
    const texts = [CURRENT, '{"rule":"r","priority":"Notice","time":"2026-01-01T00:00:00Z","tags":["a"],"output_fields":{"nested":{"a":[1,2]},"__proto__":{"x":1},"proc.pid":5}}'];
    for (const text of texts) {
      const mine = parse(text) as Record<string, JsonValue>;
      const owned = alertFromJson(mine, origin, 1, true);
      const copied = alertFromJson(parse(text), origin, 1);
      expect(owned).toEqual(copied);
      expect(serializeAlert(owned)).toBe(serializeAlert(copied));
      expect(owned.outputFields).toBe(mine['output_fields']);
      expect(Object.isFrozen(mine['output_fields'])).toBe(true);
    }
    const theirs = parse(texts[1] as string) as Record<string, JsonValue>;
    alertFromJson(theirs, origin, 1);
    expect(Object.isFrozen(theirs['output_fields'])).toBe(false);
    expect(Object.isFrozen(theirs['tags'])).toBe(false);
  });
});
