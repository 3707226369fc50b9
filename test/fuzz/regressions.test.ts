/**
 * One regression test per bug the fuzzers found (test/fuzz/targets/*), with the input that showed it.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatTimeNs, parseTime } from '../../src/alert.js';
import { loadYamlCase } from '../../src/cases/load.js';
import { configSchema } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { parseFirewallCmdline } from '../../src/detect/firewall-cmdline.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { compileGlob, compileGlobs } from '../../src/detect/suppress.js';
import { ConfigError } from '../../src/errors.js';
import { JsonSyntaxError, parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { FileSource } from '../../src/sources/file.js';
import { decodeFalcoBody } from '../../src/sources/http.js';
import { responseToAlert } from '../../src/sources/grpc-convert.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { SMALL_LIMITS } from './targets/http.js';

const ORIGIN = { kind: 'http', component: 'source/http' } as const;
const ALERT = '{"rule":"r","priority":"Warning","time":"2024-01-01T00:00:00.000000000Z","output_fields":{"proc.name":"x"}}';
const deep = (n: number, leaf = '123456789012345678901'): string => '['.repeat(n) + leaf + ']'.repeat(n);

describe('lossless JSON: unbounded nesting', () => {
  it('refuses nesting past 256 levels with a JsonSyntaxError instead of overflowing the stack', () => {
    // A big number takes the revive path (recursive): 20 000 levels used to throw RangeError.
    for (const text of [deep(20_000), deep(20_000, '1'), `{"a":${deep(5000, '"\\u0000"')}}`]) {
      let err: unknown;
      try {
        parse(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(JsonSyntaxError);
      expect((err as Error).message).toMatch(/^nesting too deep/);
    }
    expect(parse(deep(200))).toBeDefined();
  });

  it('answers a deep body with 400 too_deep', () => {
    const r = decodeFalcoBody(Buffer.from(`{"rule":"r","priority":"Warning","time":"2024-01-01T00:00:00Z","x":${deep(20_000)}}`), 'application/json', ORIGIN);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.rejection.error).toBe('too_deep');
  });

  it('skips a deep JSON line and reads on (the file input used to fail for good)', async () => {
    const intake = new MemoryIntake(100, new Metrics({ collectDefault: false }));
    const metrics = new Metrics({ collectDefault: false });
    const src = new FileSource({ path: '-', fromStart: true, follow: false, pollIntervalMs: 10, maxLineBytes: 1 << 20, intake, logger: silentLogger(), metrics, stdin: Readable.from([Buffer.from(`{"a":${deep(20_000)}}\n${ALERT}\n`)]) });
    await src.start();
    expect(await src.done()).toEqual({ lines: 2, alerts: 1, skipped: 1 });
    expect(await metrics.text()).toMatch(/falco_companion_discarded_total\{component="source\/stdin",reason="too_deep"\} 1/);
    await src.stop(Date.now() + 1000);
  });
});

describe('alert times', () => {
  it('reads years 0000-0099 as written (Date.UTC made 0006 into 1906)', () => {
    const t = parseTime('0006-03-03T03:00:05.752195727Z');
    expect(t?.text).toBe('0006-03-03T03:00:05.752195727Z');
    expect(formatTimeNs(t?.ns as bigint)).toBe('0006-03-03T03:00:05.752195727Z');
    expect(parseTime('0099-12-31T23:59:59Z')?.text).toBe('0099-12-31T23:59:59.000000000Z');
  });

  it('accepts the leap second at the end of a day like any other 60th second', () => {
    expect(parseTime('2016-12-31T23:59:60Z')?.text).toBe('2017-01-01T00:00:00.000000000Z');
    expect(parseTime('2016-12-31T12:00:60Z')?.text).toBe('2016-12-31T12:01:00.000000000Z');
  });

  it('refuses times whose UTC form is outside years 0000-9999 (their text came out broken)', () => {
    expect(parseTime('9999-12-31T23:00:00-07:00')).toBeNull();
    expect(parseTime('0000-01-01T00:00:00+01:00')).toBeNull();
    expect(parseTime('9999-12-31T23:59:59.999999999Z')?.text).toBe('9999-12-31T23:59:59.999999999Z');
    const r = decodeFalcoBody(Buffer.from('{"rule":"r","priority":"Warning","time":"9999-12-31T23:00:00-07:00"}'), 'application/json', ORIGIN);
    expect(r.ok === false && r.rejection.error).toBe('bad_time');
  });
});

describe('YAML alias bombs', () => {
  const bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(',')}]`)].join('\n');

  it('are a ConfigError with file:line:col in the config, rules and case files (a plain ReferenceError before)', () => {
    const loaders: [string, () => unknown][] = [
      ['c.yaml', () => loadConfig(configSchema, { file: 'c.yaml', text: bomb, env: {} })],
      ['r.yaml', () => loadRulesFile('r.yaml', { text: bomb })],
      ['/x/t.case.yaml', () => loadYamlCase('/x/t.case.yaml', bomb)],
    ];
    for (const [file, load] of loaders) {
      let err: unknown;
      try {
        load();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems[0]).toMatch(new RegExp(`^${file.replace(/[.]/g, '\\.')}:1:1: .*aliases expand too much`));
    }
  });
});

describe('glob lists on hostile text', () => {
  it('match a long text against globs with several stars in linear time (a regular expression took minutes)', () => {
    const text = 'a'.repeat(8192);
    // With the old regular expressions each of these ran for seconds to hours (the test times out).
    expect(compileGlob('*a*a*a*a*b')(text)).toBe(false);
    expect(compileGlobs(['*a*a*b', '/usr/*/bin/*sh', 'x*y*z'])(text)).toBe(false);
    expect(compileGlob('*a*a*a*a*a')(text)).toBe(true);
    expect(compileGlobs(['*/bin/*sh', 'q'])('/usr/bin/bash')).toBe(true);
  });

  it('let `*` match line breaks too, like the substring fast paths always did', () => {
    expect(compileGlob('/tmp/*/x?y')('/tmp/a\nb/x\ny')).toBe(true);
    expect(compileGlob('*a*\n*b')('xa\n\nb')).toBe(true);
    expect(compileGlobs(['a*b', 'c?d'])('a\nb')).toBe(true);
  });
});

describe('firewall command lines behind wrappers', () => {
  it('skips the values of the wrapper options (nsenter -t 1, sudo -u root) to find the firewall tool', () => {
    expect(parseFirewallCmdline('nsenter -t 1 -n iptables -t nat -A PREROUTING -p tcp --dport 80 -j REDIRECT --to-ports 4444')).toMatchObject({
      'fw.tool': 'iptables',
      'fw.table': 'nat',
      'fw.chain': 'PREROUTING',
      'fw.dport': 80,
      'fw.target': 'REDIRECT',
      'fw.to_ports': 4444,
    });
    expect(parseFirewallCmdline('sudo -u root ip6tables -I INPUT -s 2001:db8::1 -j ACCEPT')).toMatchObject({ 'fw.tool': 'ip6tables', 'fw.action': 'insert', 'fw.single_source': true });
    expect(parseFirewallCmdline('env -u LANG iptables -A INPUT -j DROP')).toMatchObject({ 'fw.tool': 'iptables', 'fw.target': 'DROP' });
  });
});

describe('gRPC messages and the input limits', () => {
  it('cuts an over-long rule name, hostname and source like the JSON path does', () => {
    const a = responseToAlert({ time: { seconds: '1700000000', nanos: 0 }, priority: 4, rule: 'r'.repeat(500), hostname: 'h'.repeat(500), source: 's'.repeat(500), output: 'o', output_fields: {} }, { limits: SMALL_LIMITS });
    expect(a.rule).toHaveLength(SMALL_LIMITS.maxValueLength);
    expect(a.hostname).toHaveLength(SMALL_LIMITS.maxValueLength);
    expect(a.source).toHaveLength(SMALL_LIMITS.maxValueLength);
    expect(a.companion['truncated']).toBe('rule,source,hostname');
  });
});
