/**
 * Secrets planted in proc.cmdline / proc.env (and in what a sender gets wrong) never reach the
 * built CLI's logs at info level or above, whatever path logs them (rejections, limits, sink
 * failures); Falcosidekick receives them masked with `redact.forwarded: true`, exact without it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isJsonObject, type JsonObject } from '../../src/json/lossless.js';
import { MASK } from '../../src/redact.js';
import { startHttpCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';

const PASSWORD = 'Pl4nted-Passw0rd-7f3a';
const AWS_KEY = 'AKIAIOSFODNN7PLANTED';
const GH_TOKEN = 'ghp_PlantedToken0123456789abcdefghijklmn';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlcGxhbnRlZA';
const SECRETS = [PASSWORD, AWS_KEY, GH_TOKEN, JWT];
/** Not a secret: shows whether alert payloads reach the logs at all. */
const MARKER = 'payload-marker-5b1c';

const CMDLINE = `mysql -u root --password=${PASSWORD} -h db.internal ${MARKER}`;
const ENV = `HOME=/root AWS_ACCESS_KEY_ID=${AWS_KEY} GITHUB_TOKEN=${GH_TOKEN} PATH=/usr/bin`;
const TIME = '2026-03-01T10:00:00.123456789Z';
const RULE = 'Terminal shell in container';

function alertBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    hostname: 'node-1',
    output: `10:00:00.123456789: Notice A shell was spawned (user=root cmdline=${CMDLINE} token=${JWT})`,
    output_fields: { 'container.id': 'host', 'proc.name': 'mysql', 'proc.cmdline': CMDLINE, 'proc.env': ENV, 'proc.args': `-u root --password=${PASSWORD}`, 'fd.name': `https://svc:${PASSWORD}@db.internal/`, 'proc.pid': 4242 },
    priority: 'Notice',
    rule: RULE,
    source: 'syscall',
    tags: ['shell'],
    time: TIME,
    ...extra,
  });
}

/** What a sender gets wrong, with the secrets in the parts the receiver quotes back in its 400 reason (and its log line). */
const BAD_BODIES = [
  JSON.stringify({ rule: RULE, priority: 'Notice', time: `password=${PASSWORD}`, output_fields: { a: 1 } }),
  JSON.stringify({ rule: RULE, priority: `Bearer ${JWT}`, time: TIME, output_fields: { a: 1 } }),
  `10:00:00.123456789: Notice shell cmdline=mysql --password=${PASSWORD} ${AWS_KEY}`,
];

interface Run {
  readonly cli: RunningCli;
  readonly sidekick: FakeSidekick;
  readonly dir: string;
}

async function runWith(forwarded: boolean): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-secrets-'));
  const sidekick = await new FakeSidekick().start();
  const cli = startHttpCli(sidekick.url, join(dir, 'state'), {
    FALCO_COMPANION_LOG_LEVEL: 'info',
    FALCO_COMPANION_REDACT_FORWARDED: String(forwarded),
    FALCO_COMPANION_LIMITS_MAX_VALUE_LENGTH: '512',
    FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_INITIAL: '20ms',
  });
  const base = `http://${await cli.httpAddress()}`;
  const post = (body: string): Promise<Response> => fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  // An accepted alert with secrets in its command line and environment.
  expect((await post(alertBody())).status).toBe(200);
  await sidekick.waitForAccepted(1, 15_000);
  // Rejected bodies quote the offending value in their reason (logged at warn).
  for (const b of BAD_BODIES) expect((await post(b)).status).toBe(400);
  // An alert over the value limit (logged: the keys cut, never the values).
  expect((await post(alertBody({ output_fields: { 'container.id': 'host', 'proc.cmdline': `${CMDLINE} ${'x'.repeat(600)}` } }))).status).toBe(200);
  await sidekick.waitForAccepted(2, 15_000);
  // A Falcosidekick that refuses the alert and quotes it in its error (logged at error).
  sidekick.failNext(1, 400, { body: `{"error":"bad alert: cmdline=mysql --password=${PASSWORD} env=${ENV}"}` });
  expect((await post(alertBody({ rule: 'Echoed by sidekick' }))).status).toBe(200);
  await cli.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('falcosidekick rejected the alert permanently'));
  expect(await cli.stop('SIGTERM')).toBe(0);
  return { cli, sidekick, dir };
}

async function cleanup(r: Run | undefined): Promise<void> {
  if (!r) return;
  await r.cli.stop('SIGKILL');
  await r.sidekick.close();
  rmSync(r.dir, { recursive: true, force: true });
}

function fieldsOf(raw: JsonObject): JsonObject {
  const f = raw['output_fields'];
  if (!isJsonObject(f)) throw new Error('no output_fields');
  return f;
}

describe('e2e: secrets in command lines and environments', () => {
  let on: Run | undefined;
  let off: Run | undefined;

  beforeAll(async () => {
    on = await runWith(true);
    off = await runWith(false);
  }, 90_000);

  afterAll(async () => {
    await cleanup(on);
    await cleanup(off);
  });

  it('never reach the logs at info level or above, whichever path logs them', () => {
    for (const r of [on, off]) {
      if (!r) throw new Error('not started');
      const text = r.cli.logs.map((l) => JSON.stringify(l)).join('\n');
      for (const s of SECRETS) expect(text, `secret ${s} in the logs`).not.toContain(s);
      // The paths that quote input were taken, and masked what they quoted.
      const rejected = r.cli.logs.filter((l) => l['msg'] === 'alert rejected');
      expect(rejected.map((l) => l['code'])).toEqual(expect.arrayContaining(['bad_time', 'bad_priority', 'text_output']));
      expect(rejected.filter((l) => String(l['reason']).includes(MASK)).length).toBeGreaterThanOrEqual(3);
      expect(r.cli.logs.some((l) => l['msg'] === 'alert over an input limit: truncated and forwarded (companion.truncated)' && l['truncated'] === 'proc.cmdline')).toBe(true);
      const echoed = r.cli.logs.find((l) => String(l['msg']).startsWith('falcosidekick rejected the alert permanently'));
      expect(String(echoed?.['body'])).toContain(MASK);
      // No alert payload above debug: the accepted alerts' command line never shows.
      expect(text).not.toContain(MARKER);
    }
  });

  it('reach Falcosidekick masked with redact.forwarded: true (the rule and time intact)', () => {
    if (!on) throw new Error('not started');
    const got = on.sidekick.accepted[0];
    if (!got) throw new Error('nothing forwarded');
    for (const s of SECRETS) expect(got.raw).not.toContain(s);
    expect(got.parsed['rule']).toBe(RULE);
    expect(got.parsed['time']).toBe(TIME);
    const f = fieldsOf(got.parsed);
    expect(f['proc.cmdline']).toBe(`mysql -u root --password=${MASK} -h db.internal ${MARKER}`);
    expect(f['proc.env']).toBe(`HOME=/root AWS_ACCESS_KEY_ID=${MASK} GITHUB_TOKEN=${MASK} PATH=/usr/bin`);
    expect(f['proc.args']).toBe(`-u root --password=${MASK}`);
    expect(f['fd.name']).toBe(`https://svc:${MASK}@db.internal/`);
    expect(f['proc.pid']).toBe(4242);
    expect(got.parsed['output']).toBe(`10:00:00.123456789: Notice A shell was spawned (user=root cmdline=mysql -u root --password=${MASK} -h db.internal ${MARKER} token=${MASK})`);
  });

  it('reach Falcosidekick exactly as Falco sent them without it', () => {
    if (!off) throw new Error('not started');
    const got = off.sidekick.accepted[0];
    if (!got) throw new Error('nothing forwarded');
    const f = fieldsOf(got.parsed);
    expect(f['proc.cmdline']).toBe(CMDLINE);
    expect(f['proc.env']).toBe(ENV);
    expect(got.parsed['output']).toContain(JWT);
  });
});
