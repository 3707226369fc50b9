/**
 * Chaos: the gRPC peer cutting streams mid-message. The companion subscribes (sub mode) to the
 * Falco gRPC emulator through a byte-level proxy on unix sockets that, while cutting, closes each
 * connection after a random number of bytes from Falco's side: inside an HTTP/2 frame, inside a
 * gRPC message, often inside a message split over several frames. The companion must reconnect
 * each time, never crash on the truncated frames, and deliver every alert it received (counted by
 * `falco_companion_received_total{component="source/grpc"}` against the distinct alerts the
 * Falcosidekick stand-in got, by companion.alert_id). What Falco popped from its queue and wrote
 * into a connection that was then cut is lost on Falco's side, as with a real Falco (Falco keeps
 * no acknowledgements): counted here, not owed.
 */
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { checkCovered, deliveries } from '../e2e/spool-support.js';
import { until } from '../support/wait.js';
import { chaosScope, endsHealthyNothingLost, markedAlert, metricValue, STRETCH } from './support.js';

const s = chaosScope('fc-chaos-grpc-');

/** A unix-socket proxy that, while `cutting`, cuts each connection after a random byte count from the server. */
class CuttingProxy {
  cutting = false;
  cuts = 0;
  connections = 0;
  private server: net.Server | null = null;
  private readonly open = new Set<net.Socket>();
  private seed: number;

  constructor(
    private readonly listenPath: string,
    private readonly targetPath: string,
    seed: number,
    private readonly minBytes = 2_000,
    private readonly maxBytes = 40_000,
  ) {
    this.seed = seed;
  }

  /** mulberry32: reproducible cut points for one seed. */
  private random(): number {
    this.seed = (this.seed + 0x6d2b79f5) | 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  start(): Promise<void> {
    this.server = net.createServer((client) => {
      this.connections++;
      const upstream = net.connect(this.targetPath);
      this.open.add(client).add(upstream);
      const budget = this.minBytes + Math.floor(this.random() * (this.maxBytes - this.minBytes));
      let sent = 0;
      const kill = (): void => {
        client.destroy();
        upstream.destroy();
      };
      client.on('data', (d: Buffer) => upstream.write(d));
      upstream.on('data', (d: Buffer) => {
        if (this.cutting && sent + d.length > budget) {
          // the part of this chunk up to the budget, then the connection is gone: mid-frame
          client.write(d.subarray(0, Math.max(0, budget - sent)), () => kill());
          this.cuts++;
          sent = budget;
          upstream.pause();
          return;
        }
        sent += d.length;
        client.write(d);
      });
      for (const sock of [client, upstream]) {
        sock.on('error', kill);
        sock.on('close', () => {
          this.open.delete(sock);
          kill();
        });
      }
    });
    return new Promise((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.listenPath, () => resolve());
    });
  }

  async close(): Promise<void> {
    for (const sock of this.open) sock.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

describe('chaos: the Falco gRPC peer cutting streams mid-message', () => {
  it('reconnects after every cut, never crashes on a truncated frame, delivers everything it received', async () => {
    const dir = s.tmp();
    const falcoSock = join(dir, 'falco.sock');
    const proxySock = join(dir, 'proxy.sock');
    const emulator = new FalcoGrpcEmulator({ address: `unix://${falcoSock}`, version: '0.40.0', jsonOutput: true });
    await emulator.start();
    s.cleanup.push(() => emulator.stop());
    const seed = Number(process.env['FALCO_COMPANION_CHAOS_SEED'] ?? Date.now() % 100_000);
    const proxy = new CuttingProxy(proxySock, falcoSock, seed);
    await proxy.start();
    s.cleanup.push(() => proxy.close());
    const sk = await s.sidekick();
    const cli = s.companion(['--grpc', `unix://${proxySock}`, '--http-listen', '127.0.0.1:0', '--sidekick-url', sk.url, '--state-dir', join(dir, 'state')], {
      FALCO_COMPANION_GRPC_REQUEST_INTERVAL: '20ms',
      FALCO_COMPANION_GRPC_RECONNECT_INITIAL: '20ms',
      FALCO_COMPANION_GRPC_RECONNECT_MAX: '200ms',
    });
    const base = `http://${await cli.httpAddress()}`;
    await until(async () => (await fetch(base + '/readyz')).status === 200, 15_000, 'the gRPC stream up');

    // Chaos: alerts queued in Falco at ~100/s (several per write, big ones too), cut connections.
    proxy.cutting = true;
    const chaosMs = 4000 * STRETCH;
    let seq = 0;
    const end = Date.now() + chaosMs;
    while (Date.now() < end && seq < 100_000) {
      for (let i = 0; i < 5; i++, seq++) emulator.push(markedAlert(seq, seq % 7 === 0 ? 3000 : 0));
      await new Promise((r) => setTimeout(r, 50));
    }
    proxy.cutting = false;
    const chaosSeqs = seq;
    // Afterwards, with the stream steady: every one of these arrives.
    await until(async () => (await fetch(base + '/readyz')).status === 200, 15_000, 'the gRPC stream back up');
    const after: number[] = [];
    for (let i = 0; i < 30; i++, seq++) {
      after.push(seq);
      emulator.push(markedAlert(seq));
    }
    await until(() => checkCovered(sk, after).missing.length === 0, 20_000, 'the alerts sent after the chaos delivered');

    const received = await metricValue(base, /^falco_companion_received_total\{component="source\/grpc"\} (\d+)$/);
    const grpcSeqs = new Set(deliveries(sk).map((d) => d.seq).filter((n) => n < seq));
    const lostAtFalco = seq - received;
    process.stderr.write(`[grpc-cut] seed ${seed}: ${proxy.cuts} cuts over ${proxy.connections} connections; ${seq} alerts queued in Falco, ${received} received, ${grpcSeqs.size} delivered; ${lostAtFalco} lost in cut streams (Falco side)\n`);
    expect(proxy.cuts, 'the proxy really cut streams').toBeGreaterThanOrEqual(3);
    expect(proxy.connections, 'the companion reconnected after the cuts').toBeGreaterThan(proxy.cuts);
    // everything the companion received was delivered (at least once, one alert_id per alert) ...
    expect(grpcSeqs.size).toBe(received);
    expect(checkCovered(sk, [...grpcSeqs]).idConflicts).toEqual([]);
    // ... and alerts kept flowing between the cuts
    expect(received).toBeGreaterThan(after.length);
    expect(chaosSeqs).toBeGreaterThan(0);
    // no truncated message was ever taken for an alert
    expect(await metricValue(base, /^falco_companion_discarded_total\{component="source\/grpc",reason="invalid"\} (\d+)$/)).toBe(0);
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: [...grpcSeqs], probeSeq: 1_000_000 });
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
