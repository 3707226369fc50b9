/**
 * End to end over gRPC: the built CLI subscribes to the Falco emulator on a unix socket, delivers
 * every alert to the sidekick stand-in, and keeps delivering after Falco restarts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { parse, stringify, type JsonObject } from '../../src/json/lossless.js';
import { FakeSidekick } from '../support/sidekick.js';
import { startCli, type RunningCli } from '../support/cli.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { wait } from '../support/wait.js';

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
}

/** Give every alert a unique marker so deliveries can be counted exactly. */
const marked = (line: string, n: number): string => withOutputFields(line, { 'test.seq': n });

describe('e2e: falco-companion run --grpc unix://', () => {
  let dir: string;
  let sock: string;
  let emulator: FalcoGrpcEmulator;
  let sidekick: FakeSidekick;
  let cli: RunningCli;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-grpc-'));
    sock = `unix://${join(dir, 'falco.sock')}`;
    emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.0', jsonOutput: true });
    await emulator.start();
    sidekick = await new FakeSidekick().start();
    cli = startCli(
      ['run', '--grpc', sock, '--sidekick-url', sidekick.url, '--http-listen', '127.0.0.1:0', '--state-dir', join(dir, 'state')],
      { env: { FALCO_COMPANION_GRPC_RECONNECT_MAX: '500ms', FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false' } },
    );
    await cli.httpAddress();
  });

  afterAll(async () => {
    await cli?.stop('SIGKILL');
    await emulator?.stop();
    await sidekick?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every alert with rule, priority, time (ns), output_fields, tags, hostname and source intact', async () => {
    const input = lines('test/fixtures/alerts/falco-0.40.jsonl').map((l, i) => marked(l, i));
    for (const l of input) emulator.push(l);
    await sidekick.waitForAccepted(input.length, 20_000);
    const bySeq = new Map(sidekick.accepted.map((a) => [stringify((a.parsed['output_fields'] as JsonObject)['test.seq']), a.parsed]));
    for (const [i, l] of input.entries()) {
      const sent = parse(l) as JsonObject;
      const out = bySeq.get(String(i));
      expect(out, `alert ${i}`).toBeDefined();
      for (const k of ['rule', 'priority', 'time', 'tags', 'hostname', 'source', 'output']) expect(stringify(out?.[k]), `${i} ${k}`).toBe(stringify(sent[k]));
      const sf = sent['output_fields'] as JsonObject;
      const of = out?.['output_fields'] as JsonObject;
      for (const [k, v] of Object.entries(sf)) expect(stringify(of[k]), `${i} ${k}`).toBe(stringify(v));
    }
  });

  it('keeps delivering after Falco is stopped and restarted', async () => {
    const before = sidekick.accepted.length;
    await emulator.stop();
    await wait(700);
    emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.1', jsonOutput: true });
    await emulator.start();
    const input = lines('test/fixtures/alerts/falco-0.40.jsonl').slice(0, 5).map((l, i) => marked(l, 1000 + i));
    for (const l of input) emulator.push(l);
    await sidekick.waitForAccepted(before + input.length, 20_000);
    await cli.waitForLog((l) => typeof l['msg'] === 'string' && /reconnect|connected/i.test(l['msg'] as string));
    const metrics = await (await fetch(`http://${await cli.httpAddress()}/metrics`)).text();
    expect(metrics).toMatch(/falco_companion_grpc_reconnects_total \d+/);
    expect(metrics).not.toMatch(/falco_companion_grpc_reconnects_total 0\n/);
  });
});
