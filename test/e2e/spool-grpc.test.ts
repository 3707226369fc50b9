/**
 * gRPC source + durable spool under the built CLI: stream errors and a Falco restart between
 * batches, then SIGKILL of the companion while sidekick is down. After a restart every alert
 * Falco handed over (and the spool took) reaches the sidekick stand-in, each exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { startCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';
import { checkCovered, markedAlert, metric, until } from './spool-support.js';

const RECEIVED = /falco_companion_received_total\{component="spool"\} (\d+)/;

describe('e2e: gRPC source into the spool, Falco restarts, stream errors, SIGKILL', () => {
  let dir: string;
  let sock: string;
  let emulator: FalcoGrpcEmulator;
  let sk: FakeSidekick;
  const clis: RunningCli[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-spool-grpc-'));
    sock = `unix://${join(dir, 'falco.sock')}`;
    emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.0', jsonOutput: true });
    await emulator.start();
    sk = await new FakeSidekick().start();
  });

  afterAll(async () => {
    for (const c of clis) await c.stop('SIGKILL');
    await emulator?.stop();
    await sk?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function run(): RunningCli {
    const cli = startCli(['run', '--grpc', sock, '--sidekick-url', sk.url, '--http-listen', '127.0.0.1:0', '--state-dir', join(dir, 'state')], {
      env: {
        FALCO_COMPANION_GRPC_RECONNECT_MAX: '300ms',
        FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false',
        FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_MAX: '300ms',
      },
    });
    clis.push(cli);
    return cli;
  }

  it('delivers every alert Falco handed over, exactly once, across stream errors, a Falco restart and a companion SIGKILL', async () => {
    await sk.down();
    const first = run();
    const base = `http://${await first.httpAddress()}`;
    const pushed: number[] = [];
    const push = (from: number, n: number): void => {
      for (let i = from; i < from + n; i++) {
        emulator.push(markedAlert(i));
        pushed.push(i);
      }
    };
    const received = (n: number) => until(async () => (await metric(base, RECEIVED)) >= n, 20_000, `${n} alerts in the spool`);

    push(0, 100);
    await received(100);
    expect(emulator.abortStreams()).toBeGreaterThan(0); // stream error: the source reconnects
    push(100, 100);
    await received(200);

    await emulator.stop(); // Falco restarts
    await new Promise((r) => setTimeout(r, 300));
    emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.1', jsonOutput: true });
    await emulator.start();
    push(200, 100);
    await received(300);
    expect(await metric(base, RECEIVED)).toBe(300);

    first.child.kill('SIGKILL');
    await first.exited;
    expect(sk.accepted).toHaveLength(0);

    const second = run();
    const l = await second.waitForLog((x) => typeof x['resumed'] === 'number');
    expect(l['resumed']).toBe(300);
    await sk.up();
    await until(() => checkCovered(sk, pushed).missing.length === 0, 20_000, 'all 300 delivered');
    await new Promise((r) => setTimeout(r, 300));
    const c = checkCovered(sk, pushed);
    expect(c.duplicates).toBe(0);
    expect(c.idConflicts).toEqual([]);
    expect(sk.accepted).toHaveLength(300);
  });
  it('SIGKILL while delivering: after a restart every alert the spool had accepted is delivered; only what was on the wire at the kill can be missing', async () => {
    for (const c of clis) await c.stop('SIGTERM'); // one companion per state dir and Falco
    sk.accepted.length = 0;
    sk.delay(10);
    const first = run();
    const base = `http://${await first.httpAddress()}`;
    const written0 = emulator.stats().written;
    const pushed: number[] = [];
    for (let i = 5000; i < 5400; i++) {
      emulator.push(markedAlert(i));
      pushed.push(i);
    }
    await until(async () => (await metric(base, RECEIVED)) >= 200 && sk.accepted.length > 20, 20_000, 'alerts flowing');
    const acceptedBeforeKill = await metric(base, RECEIVED);
    first.child.kill('SIGKILL');
    await first.exited;
    const handedOver = emulator.stats().written - written0;
    expect(sk.accepted.length).toBeLessThan(acceptedBeforeKill);
    sk.delay(0);
    const second = run();
    const resumed = await second.waitForLog((x) => typeof x['resumed'] === 'number');
    expect(Number(resumed['resumed'])).toBeGreaterThan(0);
    // Falco's queue goes to the new process; the spool's rows are delivered.
    const distinctNow = (): number => 400 - checkCovered(sk, pushed).missing.length;
    await until(() => emulator.queued() === 0 && distinctNow() >= acceptedBeforeKill, 20_000, 'the accepted alerts delivered');
    let last = -1;
    await until(async () => {
      await new Promise((r) => setTimeout(r, 500));
      const n = sk.accepted.length;
      const stable = n === last;
      last = n;
      return stable;
    }, 20_000, 'deliveries to settle');
    const c = checkCovered(sk, pushed);
    expect(c.idConflicts).toEqual([]);
    const distinct = 400 - c.missing.length;
    // Everything the spool had accepted before the kill (a lower bound: the metric was read first) was delivered.
    expect(distinct).toBeGreaterThanOrEqual(acceptedBeforeKill);
    // Missing: at most what Falco had written to the stream but the killed process had not committed.
    expect(c.missing.length).toBeLessThanOrEqual(handedOver - acceptedBeforeKill);
  });
});
