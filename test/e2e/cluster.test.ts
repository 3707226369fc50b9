/**
 * Three nodes, one Redis: three built companions (`run`, each its own state directory) share
 * what they learn through a real redis-server started here, and forward to one Falcosidekick
 * stand-in. A destination learned on node A is not first-seen on node B; with Redis killed
 * mid-run every alert is still forwarded, and once an (empty) Redis is back the baselines
 * converge; a Redis that answers nothing (SIGSTOP) adds no latency to the alert path.
 *
 * Beacon series pooled across nodes: test/e2e/cluster-beacon.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from '../../src/json/lossless.js';
import { metricValue as metric, postAlert as post, startNodes, type ClusterNode as Node } from '../support/cluster-nodes.js';
import { falcoAlertJson, secNs, BASE_NS } from '../support/falco-alerts.js';
import { redisSkipReason, startRedis, type RedisServer } from '../support/redis.js';
import { FakeSidekick } from '../support/sidekick.js';
import { poll } from '../support/wait.js';

const skip = redisSkipReason();
if (skip) process.stderr.write(`test/e2e/cluster.test.ts: ${skip}\n`);

let seq = 0;
/** An outbound connect alert of image `image` to `ip:port`, marked with `test.seq`. */
function connectAlert(image: string, ip: string, port: number): { body: string; seq: number } {
  const n = ++seq;
  const body = falcoAlertJson({
    rule: 'Outbound connection (test)',
    priority: 'Notice',
    tags: [],
    ns: BASE_NS + secNs(n),
    defaults: false,
    fields: {
      'evt.type': 'connect',
      'evt.time': Number(BASE_NS / 1_000_000_000n) * 1e9 + n * 1e9,
      'fd.name': `10.244.1.5:40000->${ip}:${port}`,
      'fd.sip': ip,
      'fd.sport': port,
      'container.id': 'abcdef123456',
      'container.image.repository': image,
      'proc.exepath': '/usr/bin/curl',
      'test.seq': n,
    },
  });
  return { body, seq: n };
}

describe.skipIf(skip !== null)('e2e: three companions sharing one Redis', () => {
  let dir: string;
  let redis: RedisServer;
  let sidekick: FakeSidekick;
  let nodes: Node[] = [];

  const forwarded = (s: number): Record<string, unknown> | undefined =>
    sidekick.accepted.find((a) => stringify((a.parsed['output_fields'] as Record<string, unknown>)['test.seq'] as never) === String(s))?.parsed['output_fields'] as Record<string, unknown> | undefined;
  const newForImage = async (n: Node, image: string, ip: string, port: number): Promise<unknown> => {
    const a = connectAlert(image, ip, port);
    expect(await post(n, a.body)).toBe(200);
    const f = await poll(() => forwarded(a.seq), { timeoutMs: 10_000, what: `alert ${a.seq} forwarded` });
    return f['companion.dest.new_for_image'];
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-e2e-cluster-'));
    redis = await startRedis();
    sidekick = await new FakeSidekick().start();
    nodes = await startNodes({
      dir,
      names: ['node-a', 'node-b', 'node-c'],
      sidekickUrl: () => sidekick.url,
      redisAddress: redis.address,
      env: {
        FALCO_COMPANION_ENRICH_EGRESS_BASELINE_LEARNING_PERIOD: '0',
        FALCO_COMPANION_ENRICH_EGRESS_BASELINE_FLUSH_INTERVAL: '100',
        FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false',
      },
    });
  }, 60_000);

  afterAll(async () => {
    for (const n of nodes) await n.cli.stop('SIGTERM');
    await sidekick?.close();
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('a destination learned on node A is not first-seen on node B', async () => {
    const [a, b] = nodes as [Node, Node, Node];
    expect(await newForImage(a, 'shop/api', '203.0.113.7', 443)).toBe(true);
    await poll(async () => ((await metric(b, 'falco_companion_egress_baseline_entries')) >= 1 ? true : null), { timeoutMs: 15_000, intervalMs: 50, what: 'B pulled A\'s destination' });
    expect(await newForImage(b, 'shop/api', '203.0.113.7', 443)).toBe(false);
    expect(await newForImage(b, 'shop/api', '203.0.113.8', 443)).toBe(true);
    const health = (await (await fetch(`${b.base}/readyz`)).json()) as { components: Record<string, { detail?: string }> };
    expect(health.components['store/redis']?.detail).toMatch(/redis connected; 3 nodes/);
  }, 30_000);

  it('Redis killed mid-run: every alert is still forwarded; baselines converge once Redis is back', async () => {
    const before = sidekick.accepted.length;
    await redis.stop('SIGKILL');
    for (const n of nodes) await n.cli.waitForLog((l) => l['msg'] === 'shared store disconnected; working on local state, reconnecting');
    const sent: number[] = [];
    for (const [i, n] of nodes.entries()) {
      for (let k = 1; k <= 5; k++) {
        const a = connectAlert('shop/api', `198.51.100.${i * 10 + k}`, 443);
        expect(await post(n, a.body)).toBe(200);
        sent.push(a.seq);
      }
    }
    await sidekick.waitForAccepted(before + sent.length, 15_000);
    for (const s of sent) expect(forwarded(s)?.['companion.dest.new_for_image'], `alert ${s}`).toBe(true);
    expect(await metric(nodes[0] as Node, 'falco_companion_store_connected')).toBe(0);
    await redis.start(); // the same port, empty (no persistence): a new epoch
    // 2 destinations from the first test + 15 learned during the outage, on every node
    await poll(
      async () => {
        const sizes = await Promise.all(nodes.map((n) => metric(n, 'falco_companion_egress_baseline_entries')));
        return sizes.every((s) => s === 17) ? sizes : null;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: 'baselines converged on 17 destinations' },
    );
    expect(Number(redis.cli('HLEN', '{falco-companion}:eg:h:shop/api'))).toBe(18); // 17 + the image record
    // What A learned while Redis was away is known on C.
    expect(await newForImage(nodes[2] as Node, 'shop/api', '198.51.100.1', 443)).toBe(false);
  }, 60_000);

  it('a Redis that answers nothing (SIGSTOP) adds no latency to the alert path', async () => {
    const a = nodes[0] as Node;
    const measure = async (prefix: string, count: number): Promise<{ ack: number[]; e2e: number[] }> => {
      const ack: number[] = [];
      const e2e: number[] = [];
      for (let i = 0; i < count; i++) {
        const al = connectAlert('latency/app', `${prefix}.${i + 1}`, 8443);
        const t0 = performance.now();
        expect(await post(a, al.body)).toBe(200);
        ack.push(performance.now() - t0);
        await poll(() => forwarded(al.seq), { timeoutMs: 10_000, intervalMs: 1, what: `alert ${al.seq}` });
        e2e.push(performance.now() - t0);
      }
      return { ack, e2e };
    };
    const p = (xs: number[], q: number): number => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(q * xs.length))] as number;
    await measure('192.0.2', 10); // warm-up
    const before = await measure('203.0.113', 40);
    redis.pause();
    let during: { ack: number[]; e2e: number[] };
    try {
      during = await measure('198.51.100', 40);
      // the sync really was stuck on Redis meanwhile
      await poll(async () => ((await metric(a, 'falco_companion_store_pending_changes')) > 0 ? true : null), { timeoutMs: 5000, what: 'changes waiting for Redis' });
    } finally {
      redis.resume();
    }
    const report = `ack p50/p95 before ${p(before.ack, 0.5).toFixed(1)}/${p(before.ack, 0.95).toFixed(1)} ms, while stopped ${p(during.ack, 0.5).toFixed(1)}/${p(during.ack, 0.95).toFixed(1)} ms; ` +
      `forwarded p50/p95 before ${p(before.e2e, 0.5).toFixed(1)}/${p(before.e2e, 0.95).toFixed(1)} ms, while stopped ${p(during.e2e, 0.5).toFixed(1)}/${p(during.e2e, 0.95).toFixed(1)} ms`;
    process.stderr.write(`cluster e2e latency: ${report}\n`);
    // An alert path that waited for Redis would take the command timeout (1 s) per alert. The
    // bounds leave room for a loaded machine (the same noise hits both runs).
    expect(p(during.e2e, 0.5), report).toBeLessThan(Math.max(100, p(before.e2e, 0.5) * 3));
    expect(p(during.e2e, 0.95), report).toBeLessThan(Math.max(500, p(before.e2e, 0.95) * 3));
    expect(p(during.ack, 0.95), report).toBeLessThan(Math.max(500, p(before.ack, 0.95) * 3));
    await poll(async () => ((await metric(a, 'falco_companion_store_pending_changes')) === 0 ? true : null), { timeoutMs: 15_000, intervalMs: 100, what: 'writes resumed' });
  }, 60_000);
});
