/**
 * Secret redaction (src/redact.ts): the built-in patterns, user patterns from the config, the
 * log hook (src/logger.ts) and the forwarded-alert proxy of the sinks.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createAlert, serializeAlert, type Alert } from '../src/alert.js';
import { configSchema } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { createLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import type { Sink } from '../src/pipeline/types.js';
import { MASK, Redactor, compilePattern, redactingSink } from '../src/redact.js';
import { StdoutSink } from '../src/sinks/stdout.js';

const r = new Redactor();

describe('built-in patterns', () => {
  const cases: [string, string][] = [
    ['mysql -u root --password=S3cr3t! -h db', `mysql -u root --password=${MASK} -h db`],
    ['mysql --password S3cr3t! -h db', `mysql --password ${MASK} -h db`],
    ['MYSQL_ROOT_PASSWORD=hunter2 HOME=/root PWD=/srv', `MYSQL_ROOT_PASSWORD=${MASK} HOME=/root PWD=/srv`],
    ['curl -H "Authorization: Bearer abcdef0123456789xyz" https://api', `curl -H "Authorization: Bearer ${MASK}" https://api`],
    ['Authorization: Basic dXNlcjpwYXNzd29yZA==', `Authorization: Basic ${MASK}`],
    ['AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE', `AWS_ACCESS_KEY_ID=${MASK}`],
    ['key AKIAIOSFODNN7EXAMPLE in text', `key ${MASK} in text`],
    ['aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', `aws_secret_access_key: ${MASK}`],
    ['jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end', `jwt ${MASK} end`],
    ['git clone https://x-access-token:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r', `git clone https://x-access-token:${MASK}@github.com/o/r`],
    ['GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789', `GITHUB_TOKEN=${MASK}`],
    ['redis-cli -u redis://default:s3cr3tpass@10.0.0.5:6379', `redis-cli -u redis://default:${MASK}@10.0.0.5:6379`],
    ['{"password": "p@ss w0rd", "user": "bob"}', `{"password": "${MASK}", "user": "bob"}`],
    ["docker login -u bob -p 'x' --password-stdin", "docker login -u bob -p 'x' --password-stdin"],
    ['echo -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY----- done', `echo ${MASK} done`],
    ['cut short: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA', `cut short: ${MASK}`],
    ['slack xoxb-123456789012-abcdefghij', `slack ${MASK}`],
  ];
  it.each(cases)('%s', (input, want) => {
    expect(r.redact(input)).toBe(want);
    expect(r.redact(want)).toBe(want);
  });

  it('keeps what is not a secret: rule names, paths, prose, ordinary flags', () => {
    for (const s of [
      'Search Private Keys or Passwords',
      'Companion signal: service account token read',
      '/var/run/secrets/kubernetes.io/serviceaccount/token',
      'nginx -g daemon off;',
      'Basic configuration loaded',
      'the token expired',
      'kubectl get pods -n kube-system',
      '2024-01-01T00:00:00.000000000Z',
    ]) expect(r.redact(s)).toBe(s);
  });

  it('adds the user patterns of redact.patterns (a `secret` group masks only that part)', () => {
    const u = new Redactor(['/corp-[0-9a-f]{8}/i', 'session=(?<secret>[a-z]+)']);
    expect(u.redact('id CORP-DEADBEEF and session=abcdef ok')).toBe(`id ${MASK} and session=${MASK} ok`);
    expect(() => compilePattern('(')).toThrow(/not a regular expression/);
    expect(() => compilePattern('a*')).toThrow(/matches the empty string/);
    expect(() => compilePattern('/x/g')).toThrow(/flag "g"/);
    expect(() => loadConfig(configSchema, { file: 'c.yaml', text: 'redact:\n  patterns: ["("]', env: {} })).toThrow(/c\.yaml:2:\d+: redact\.patterns\[0\]: not a regular expression/);
  });
});

describe('log lines', () => {
  function logs(level: 'info' | 'debug' = 'info', redactor?: Redactor): { lines: string[]; logger: ReturnType<typeof createLogger> } {
    const lines: string[] = [];
    const destination = new Writable({
      write(c: Buffer, _e, cb) {
        lines.push(c.toString());
        cb();
      },
    });
    return { lines, logger: createLogger({ level, destination: destination as unknown as import('pino').DestinationStream, ...(redactor ? { redactor } : {}) }) };
  }

  it('are redacted whatever a log call includes: message, fields, child bindings, errors, values under a secret key', () => {
    const { lines, logger } = logs();
    const child = logger.child({ component: 'source/http', url: 'https://bob:hunter2@sidekick:2801/' });
    child.warn({ reason: 'bad "time" "password=hunter2"', token: 'opaque-value', nested: { authorization: 'Negotiate abc' } }, 'rejected password=hunter2');
    child.error({ error: new Error('connect failed: Bearer abcdefghijklmnop') }, 'failed');
    const text = lines.join('');
    expect(text).not.toMatch(/hunter2|opaque-value|Negotiate abc|abcdefghijklmnop/);
    const first = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(first).toMatchObject({ level: 'warn', component: 'source/http', msg: `rejected password=${MASK}`, token: MASK, nested: { authorization: MASK }, url: `https://bob:${MASK}@sidekick:2801/` });
    expect(JSON.parse(lines[1] as string)).toMatchObject({ error: { message: `connect failed: Bearer ${MASK}` } });
  });

  it('keep big integers and non-secret lines byte for byte', () => {
    const { lines, logger } = logs();
    logger.info({ n: 12345678901234567890n, s: 'plain' }, 'hello');
    expect(lines[0]).toMatch(/"n":12345678901234567890,"s":"plain","msg":"hello"\}\n$/);
  });
});

describe('forwarded alerts (redact.forwarded)', () => {
  const alert = (): Alert =>
    createAlert({
      time: '2024-01-01T00:00:00.123456789Z',
      rule: 'Read password file token=rule-name-stays',
      priority: 'Warning',
      source: 'syscall',
      hostname: 'node-1',
      output: '00:00:00.123456789: Warning shell (cmdline=mysql --password=S3cr3t!)',
      tags: ['password=tag-stays'],
      outputFields: { 'proc.cmdline': 'mysql --password=S3cr3t!', 'proc.env': 'HOME=/root API_KEY=abc123def456', 'fd.name': 'https://u:pw123456@x/', 'proc.pid': 42, 'password=key-stays': 'v' },
      extra: { uuid: 'x', note: { token: 'nested secret' } },
      companion: { detector: 'x', 'cmd': 'curl -H "Authorization: Bearer abcdefghijklmn"' },
      origin: { kind: 'http', component: 'source/http' },
      receivedAtMs: 7,
    });

  it('mask output, field values, extra and companion values; never the rule, time, tags, keys', () => {
    const a = alert();
    const b = r.redactAlert(a);
    expect(b).not.toBe(a);
    expect(Object.isFrozen(b)).toBe(true);
    expect(b.rule).toBe(a.rule);
    expect(b.time).toBe(a.time);
    expect(b.timeNs).toBe(a.timeNs);
    expect(b.tags).toEqual(a.tags);
    expect(b.output).toBe(`00:00:00.123456789: Warning shell (cmdline=mysql --password=${MASK})`);
    expect(b.outputFields).toEqual({ 'proc.cmdline': `mysql --password=${MASK}`, 'proc.env': `HOME=/root API_KEY=${MASK}`, 'fd.name': `https://u:${MASK}@x/`, 'proc.pid': 42, 'password=key-stays': 'v' });
    expect(b.extra).toEqual({ uuid: 'x', note: { token: MASK } });
    expect(b.companion['cmd']).toBe(`curl -H "Authorization: Bearer ${MASK}"`);
    expect(b.receivedAtMs).toBe(7);
    expect(r.redactAlert(b)).toBe(b);
    expect(serializeAlert(b)).not.toMatch(/S3cr3t|abc123def456|pw123456|nested secret|abcdefghijklmn/);
  });

  it('through a sink proxy that keeps the sink itself (id, instanceof, other methods)', async () => {
    const out: string[] = [];
    const stream = new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c.toString());
        cb();
      },
    });
    const sink = new StdoutSink({ logger: createLogger({ level: 'silent' }), metrics: new Metrics({ collectDefault: false }), stream });
    const wrapped: Sink = redactingSink(sink, r);
    expect(wrapped).toBeInstanceOf(StdoutSink);
    expect(wrapped.id).toBe('sink/stdout');
    await wrapped.start();
    await wrapped.write(alert());
    expect(wrapped.pending()).toBe(0);
    expect(out.join('')).toContain(`mysql --password=${MASK}`);
    expect(out.join('')).not.toContain('S3cr3t');
    await wrapped.stop(Date.now() + 1000);
  });
});
