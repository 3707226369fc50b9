/**
 * Secret redaction (src/redact.ts) on attacker-controlled text: secrets planted anywhere in a
 * command line, environment or log line never survive; redaction is idempotent, keeps JSON log
 * lines valid, and stays linear on hostile text.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { Redactor } from '../../../src/redact.js';
import { longRun, nastyString } from '../arbitraries.js';
import type { FuzzTarget } from '../harness.js';

const alnum = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'), minLength: min, maxLength: max });
const upperNum = (n: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'), minLength: n, maxLength: n });
const b64url = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'), minLength: min, maxLength: max });
const kvValue = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@:/!#%+._~-'), minLength: 8, maxLength: 40 }).filter((v) => !v.startsWith('-') && v !== '[REDACTED]');

/** A secret in one of the shapes the built-in patterns promise to catch: [the text, the secret part that must disappear]. */
export const planted: fc.Arbitrary<readonly [string, string]> = fc.oneof(
  fc.tuple(fc.constantFrom('password', 'passwd', 'PASSWORD', 'db_password', 'MYSQL_ROOT_PASSWORD', 'secret', 'client_secret', 'token', 'GITHUB_TOKEN', 'api_key', 'apiKey', 'x-api-key', 'AWS_SECRET_ACCESS_KEY', 'private_key', 'auth_key', 'credentials'), fc.constantFrom('=', ': ', ':', ' = ', '="', "='", '": "'), kvValue).map(([k, sep, v]) => {
    const close = sep.endsWith('"') ? '"' : sep.endsWith("'") ? "'" : '';
    return [`${k}${sep}${v}${close}`, v] as const;
  }),
  fc.tuple(fc.constantFrom('--password', '--db-password', '--token', '--registry-token', '--client-secret', '--api-key'), fc.constantFrom(' ', '='), kvValue).map(([k, sep, v]) => [`${k}${sep}${v}`, v] as const),
  fc.tuple(fc.constantFrom('Authorization: Bearer ', 'bearer ', 'Authorization: Basic '), alnum(16, 60)).map(([p, v]) => [`${p}${v}1=`, `${v}1=`] as const),
  fc.tuple(fc.constantFrom('AKIA', 'ASIA'), upperNum(16)).map(([p, v]) => [p + v, p + v] as const),
  fc.tuple(b64url(10, 40), b64url(10, 80), b64url(0, 60)).map(([h, p, s]) => [`eyJ${h}.eyJ${p}.${s}`, `eyJ${h}.eyJ${p}`] as const),
  fc.tuple(fc.constantFrom('ghp_', 'gho_', 'ghs_'), alnum(36, 40)).map(([p, v]) => [p + v, p + v] as const),
  fc.tuple(fc.constantFrom('glpat-'), alnum(20, 30)).map(([p, v]) => [p + v, p + v] as const),
  fc.tuple(fc.constantFrom('https', 'postgres', 'redis', 'mongodb+srv', 'ftp'), alnum(1, 12), alnum(6, 30), fc.constantFrom('db.example', '10.0.0.5:5432', 'h')).map(([s, u, p, h]) => [`${s}://${u}:${p}@${h}/x`, p] as const),
  fc.tuple(fc.constantFrom('RSA ', 'EC ', 'OPENSSH ', ''), fc.array(b64url(20, 64), { minLength: 1, maxLength: 4 }), fc.boolean()).map(([kind, body, end]) => {
    const inner = body.join('\n');
    return [`-----BEGIN ${kind}PRIVATE KEY-----\n${inner}${end ? `\n-----END ${kind}PRIVATE KEY-----` : ''}`, inner] as const;
  }),
);

const context = fc.oneof(nastyString.map((s) => s.replace(/[\s"']/g, '')), fc.constantFrom('', 'curl -s', 'mysql -h db', 'env', 'docker login', 'HOME=/root', 'PATH=/usr/bin:/bin', 'sh -c', '{"x":1}'));

type RedactInput = { readonly kind: 'planted'; readonly secrets: readonly (readonly [string, string])[]; readonly ctx: readonly string[] } | { readonly kind: 'any'; readonly text: string };

const redactor = new Redactor(['/corp-[0-9a-f]{12}/i', '(?<secret>k3y_[a-z]{6})']);

export const redaction: FuzzTarget<RedactInput> = {
  name: 'secret redaction',
  module: 'src/redact.ts',
  arb: fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('planted' as const), secrets: fc.array(planted, { minLength: 1, maxLength: 3 }), ctx: fc.array(context, { minLength: 4, maxLength: 4 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('any' as const), text: fc.oneof(nastyString, longRun, fc.string({ unit: 'binary', maxLength: 300 }), fc.array(fc.constantFrom('password', '=', ':', ' ', '--token', '"', "'", 'eyJ', '.', 'AKIA', 'Bearer', '://', '@', '-----BEGIN PRIVATE KEY-----', '\n', 'x', ')', ']', '(', '[', '[REDACTED]', '/'), { maxLength: 40 }).map((a) => a.join(''))) }) },
  ),
  check: (x) => {
    const text = x.kind === 'any' ? x.text : x.secrets.map(([t], i) => `${x.ctx[i] ?? ''} ${t}`).join(' ') + ` ${x.ctx[3] ?? ''}`;
    const out = redactor.redact(text);
    expect(redactor.redact(out)).toBe(out); // idempotent
    // As a log line: still one valid JSON line with the same keys.
    const line = JSON.stringify({ level: 'info', msg: 'x', cmdline: text, nested: { env: [text] } }) + '\n';
    const red = redactor.redactLogLine(line);
    expect(red.endsWith('\n')).toBe(true);
    const parsed = JSON.parse(red) as { cmdline: string; nested: { env: string[] } };
    expect(parsed.cmdline).toBe(out);
    expect(parsed.nested.env[0]).toBe(out);
    if (x.kind === 'any') return;
    for (const [, secret] of x.secrets) expect(out, `planted ${JSON.stringify(secret)} survived in ${JSON.stringify(out)}`).not.toContain(secret);
  },
  shortRuns: 400,
};
