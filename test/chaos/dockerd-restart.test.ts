/**
 * Chaos: the container runtime stopped and restarted mid-enrichment. A real dockerd
 * (test/support/dockerd.ts: no bridge, no iptables, `--network none`) runs one container; alerts
 * naming it arrive over HTTP without a cache in between (`cache_ttl: 0`), so lookups are in flight
 * when dockerd gets SIGTERM. While it is down, alerts go on without the container fields
 * (`companion.enrich_error` says why, within the enrichment budget); once it is back on the same
 * socket, lookups and the event stream resume on their own. Every accepted alert is delivered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isJsonObject, type JsonObject } from '../../src/json/lossless.js';
import { deliveries } from '../e2e/spool-support.js';
import { dockerSkipReason, startDockerd, type Dockerd } from '../support/dockerd.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { until } from '../support/wait.js';
import { chaosScope, endsHealthyNothingLost, load, markedAlert, metricValue, STRETCH } from './support.js';

const skip = dockerSkipReason();
if (skip) process.stderr.write(`test/chaos/dockerd-restart.test.ts skipped: ${skip}\n`);

const s = chaosScope('fc-chaos-dockerd-');

const fieldsOf = (a: { parsed: JsonObject }): JsonObject => {
  const f = a.parsed['output_fields'];
  if (!isJsonObject(f)) throw new Error('no output_fields');
  return f;
};

describe.skipIf(skip !== null)('chaos: dockerd stopped and restarted mid-enrichment', () => {
  let d: Dockerd;
  let id = '';

  beforeAll(async () => {
    d = await startDockerd();
    await d.importImage('fc/chaos:1');
    // PID 1 exits on SIGTERM, so dockerd stops it (and itself) at once
    id = (await d.docker('run', '-d', '--network', 'none', 'fc/chaos:1', '/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1 & wait $!; done')).slice(0, 12);
  }, 120_000);

  afterAll(async () => {
    await d?.close();
  }, 60_000);

  it('alerts go on without container fields while it is down, lookups resume when it is back, nothing accepted is lost', async () => {
    const { sidekick: sk, cli, base } = await s.httpCompanion({
      FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'true',
      FALCO_COMPANION_ENRICH_CONTAINER_RUNTIME: 'docker',
      FALCO_COMPANION_ENRICH_CONTAINER_DOCKER_SOCKET: d.socket,
      FALCO_COMPANION_ENRICH_CONTAINER_CACHE_TTL: '0',
      FALCO_COMPANION_ENRICH_CONTAINER_ERROR_TTL: '200ms',
      FALCO_COMPANION_ENRICH_CONTAINER_REQUEST_TIMEOUT: '1s',
      FALCO_COMPANION_ENRICH_CONTAINER_EVENTS_RECONNECT_MAX: '500ms',
      FALCO_COMPANION_ENRICH_BUDGET: '200ms',
    });
    const body = (n: number): string => withOutputFields(markedAlert(n), { 'container.id': id });
    const enriched = (from: number): boolean => sk.accepted.some((a) => Number(String(fieldsOf(a)['test.seq'])) >= from && fieldsOf(a)['companion.container.runtime'] === 'docker');

    // Before: enriched from the runtime.
    const before = await load({ base, perSecond: 40, durationMs: 500, body });
    await until(() => enriched(0), 10_000, 'an alert enriched from dockerd');

    // During: dockerd stops (SIGTERM; in-flight lookups cut) and comes back after a while.
    const phaseMs = 3000 * STRETCH;
    const [during] = await Promise.all([
      load({ base, perSecond: 40, durationMs: phaseMs, first: 10_000, body }),
      (async () => {
        await new Promise((r) => setTimeout(r, 300));
        await d.restart({ downMs: phaseMs / 2 });
      })(),
    ]);
    // After: lookups work again without a companion restart.
    const after = await load({ base, perSecond: 40, durationMs: 1000, first: 20_000, body });
    await until(() => enriched(20_000), 10_000, 'alerts enriched again after dockerd came back');

    for (const l of [before, during, after]) expect(l.refused).toEqual([]);
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: [...before.acked, ...during.acked, ...after.acked], probeSeq: 1_000_000 });
    // while it was down: alerts went on, saying why they carry no container fields
    const down = sk.accepted.filter((a) => /docker|runtime/i.test(String(fieldsOf(a)['companion.enrich_error'] ?? '')));
    expect(down.length, 'alerts marked with the runtime failure').toBeGreaterThan(0);
    expect(deliveries(sk).length).toBeGreaterThanOrEqual(before.acked.length + during.acked.length + after.acked.length);
    expect(await metricValue(base, /^falco_companion_errors_total\{component="enrich\/container",code="[^"]+"\} (\d+)$/)).toBeGreaterThan(0);
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
