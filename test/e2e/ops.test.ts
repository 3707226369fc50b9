/**
 * End to end with the built CLI: a gRPC-only companion (the HTTP input off, as for a Falco that
 * only speaks gRPC) still serves /healthz, /readyz and /metrics, on http.listen by default.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { startCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';
import { markedAlert, metric, until } from './spool-support.js';

describe('e2e: falco-companion run --grpc with the HTTP input off', () => {
  let dir: string;
  let emulator: FalcoGrpcEmulator;
  let sidekick: FakeSidekick;
  let cli: RunningCli;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-ops-'));
    const sock = `unix://${join(dir, 'falco.sock')}`;
    emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.0', jsonOutput: true });
    await emulator.start();
    sidekick = await new FakeSidekick().start();
    cli = startCli(['run', '--grpc', sock, '--sidekick-url', sidekick.url, '--state-dir', join(dir, 'state')], {
      env: { FALCO_COMPANION_HTTP_ENABLED: 'false', FALCO_COMPANION_HTTP_LISTEN: '127.0.0.1:0', FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', FALCO_COMPANION_GRPC_REQUEST_INTERVAL: '20ms' },
    });
    const l = await cli.waitForLog((x) => x['msg'] === 'listening' && x['component'] === 'server/ops');
    base = `http://127.0.0.1:${String(l['port'])}`;
  });

  afterAll(async () => {
    await cli?.stop('SIGKILL');
    await emulator?.stop();
    await sidekick?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the operations endpoints on a port of their own, and no receiver', async () => {
    expect(cli.logs.some((l) => l['msg'] === 'listening' && l['component'] === 'source/http')).toBe(false);
    expect((await fetch(base + '/healthz')).status).toBe(200);
    await until(async () => (await fetch(base + '/readyz')).status === 200, 10_000, '/readyz 200 with the gRPC stream up');
    emulator.push(markedAlert(7));
    await sidekick.waitForAccepted(1, 10_000);
    await until(async () => (await metric(base, /falco_companion_received_total\{component="source\/grpc"\} (\d+)/)) === 1, 5000, 'the gRPC alert counted in /metrics');
    const post = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body: markedAlert(8) });
    expect(post.status).toBe(404);
  });

  it('drains and exits 0 on SIGTERM', async () => {
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
