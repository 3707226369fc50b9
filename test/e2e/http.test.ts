/**
 * End to end over HTTP: Falco-shaped alerts of several versions POSTed like Falco's http_output
 * to the built CLI, forwarded to a strict Falcosidekick stand-in, digits intact.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LosslessNumber, isJsonObject, parse, stringify, type JsonObject } from '../../src/json/lossless.js';
import { FakeSidekick } from '../support/sidekick.js';
import { startHttpCli, type RunningCli } from '../support/cli.js';

const SHARED = '../shared/falco-reference/falco-alerts.jsonl';
const TEST_TOKEN = 'e2e-http-test-token-0123';

function fixtureLines(): string[] {
  const dir = 'test/fixtures/alerts';
  const lines: string[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.jsonl')).sort()) {
    lines.push(...readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l.trim().startsWith('{')));
  }
  if (existsSync(SHARED)) lines.push(...readFileSync(SHARED, 'utf8').split('\n').filter((l) => l.trim() !== ''));
  return lines;
}

describe('e2e: falco-companion run --http-listen', () => {
  let dir: string;
  let sidekick: FakeSidekick;
  let cli: RunningCli;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-http-'));
    sidekick = await new FakeSidekick().start();
    cli = startHttpCli(sidekick.url, join(dir, 'state'), { FALCO_COMPANION_OPS_TEST_TOKEN: TEST_TOKEN });
    base = `http://${await cli.httpAddress()}`;
  });

  afterAll(async () => {
    await cli?.stop('SIGKILL');
    await sidekick?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('forwards alerts of every Falco version with every field and digit intact', async () => {
    const lines = fixtureLines();
    expect(lines.length).toBeGreaterThan(20);
    for (const l of lines) {
      const res = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: l });
      expect(res.status, l.slice(0, 200)).toBe(200);
    }
    await sidekick.waitForAccepted(lines.length, 20_000);
    const got = new Map<string, JsonObject>();
    for (const a of sidekick.accepted) got.set(`${String(a.parsed['rule'])}|${String(a.parsed['time'])}`, a.parsed);
    for (const l of lines) {
      const sent = parse(l) as JsonObject;
      const key = `${String(sent['rule'])}|${String(sent['time']).replace(/\.(\d+)Z$/, (_m, f: string) => `.${f.padEnd(9, '0')}Z`)}`;
      const out = got.get(key);
      expect(out, key).toBeDefined();
      if (!out) continue;
      expect(out['priority']).toBe(sent['priority']);
      expect(out['output']).toBe(sent['output'] ?? '');
      for (const k of ['hostname', 'source', 'tags'] as const) if (sent[k] !== undefined) expect(stringify(out[k]), k).toBe(stringify(sent[k]));
      const sf = sent['output_fields'];
      const of = out['output_fields'];
      if (isJsonObject(sf) && isJsonObject(of)) {
        expect(Object.keys(of).filter((k) => !k.startsWith('companion.')).sort(), key).toEqual(Object.keys(sf).sort());
        for (const [k, v] of Object.entries(sf)) {
          const nested = v !== null && typeof v === 'object' && !(v instanceof LosslessNumber);
          // Falco never nests values; a nested one is forwarded as its JSON text. All else is exact.
          expect(nested ? of[k] : stringify(of[k]), `${key} ${k}`).toBe(stringify(v));
        }
      }
    }
  });

  it('answers 400 with a reason to garbage and keeps serving', async () => {
    for (const body of ['not json', '[]', '{"rule":"x"}', '{"rule":"x","priority":"Loud","time":"2026-01-01T00:00:00Z","output_fields":{"a":1}}', '']) {
      const res = await fetch(base + '/', { method: 'POST', body });
      expect(res.status, body).toBe(400);
      const j = (await res.json()) as { reason?: string };
      expect(j.reason, body).toBeTruthy();
    }
    expect((await fetch(base + '/healthz')).status).toBe(200);
    const ready = await fetch(base + '/readyz');
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(base + '/metrics')).text();
    expect(metrics).toMatch(/falco_companion_received_total\{component="source\/http"\} \d+/);
  });

  it('POST /test (with ops.test_token) travels end to end to the sink', async () => {
    const before = sidekick.accepted.length;
    expect((await fetch(base + '/test', { method: 'POST' })).status).toBe(401);
    expect((await fetch(base + '/test', { method: 'POST', headers: { authorization: `Bearer ${TEST_TOKEN}` } })).status).toBe(200);
    await sidekick.waitForAccepted(before + 1);
    expect(sidekick.accepted.at(-1)?.parsed['rule']).toBe('Test rule');
  });

  it('drains and exits 0 on SIGTERM', async () => {
    const code = await cli.stop('SIGTERM');
    expect(code).toBe(0);
  });
});
