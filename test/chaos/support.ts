/**
 * Shared pieces of the chaos suite (test/chaos/**): the built CLI as a child process, a bounded
 * load of marked Falco alerts, and the one verdict every case ends with: the companion is healthy
 * (ready, accepting, delivering) and every alert it accepted reached the Falcosidekick stand-in at
 * least once, counted by `companion.alert_id` (a redelivery carries the same id).
 *
 * Durations are short by default (the whole suite stays well under 90 s on two cores);
 * `FALCO_COMPANION_CHAOS_LONG=1` stretches every chaos phase ten times (outside CI).
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { checkCovered, deliveries, e2eScope, markedAlert } from '../e2e/spool-support.js';
import { startCli, type RunningCli } from '../support/cli.js';
import { FakeSidekick } from '../support/sidekick.js';
import { until } from '../support/wait.js';

export { markedAlert };

/** Every chaos phase length is multiplied by this (1; 10 with FALCO_COMPANION_CHAOS_LONG=1). */
export const STRETCH = process.env['FALCO_COMPANION_CHAOS_LONG'] === '1' ? 10 : 1;

/** Settings every chaos companion shares: fast retries, no runtime, no rDNS, quiet logs. */
export const BASE_ENV: Readonly<Record<string, string>> = {
  FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false',
  FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false',
  FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_INITIAL: '50ms',
  FALCO_COMPANION_SINKS_FALCOSIDEKICK_RETRY_MAX: '400ms',
  FALCO_COMPANION_SINKS_FALCOSIDEKICK_TIMEOUT: '2s',
  FALCO_COMPANION_SHUTDOWN_DEADLINE: '5s',
  FALCO_COMPANION_LOG_LEVEL: 'info',
};

export interface HttpCompanion {
  readonly dir: string;
  /** The state directory (`<dir>/state`). */
  readonly state: string;
  readonly sidekick: FakeSidekick;
  readonly cli: RunningCli;
  /** http://HOST:PORT of the receiver (and, on loopback, of the operations endpoints). */
  readonly base: string;
  /** The `run` arguments, to start it again on the same state. */
  readonly args: string[];
}

/** Temp dirs, sidekick stand-ins and CLIs of the calling file (test/e2e's scope), cleaned after each test. */
export function chaosScope(prefix: string): ReturnType<typeof e2eScope> & {
  companion(args: string[], env?: Record<string, string>): RunningCli;
  /** A temp dir, a sidekick stand-in and a companion receiving on 127.0.0.1:0, forwarding to it. */
  httpCompanion(env?: Record<string, string>): Promise<HttpCompanion>;
} {
  const scope = e2eScope(prefix);
  const companion = (args: string[], env: Record<string, string> = {}): RunningCli => {
    const cli = startCli(['run', ...args], { env: { ...BASE_ENV, ...env } });
    scope.cleanup.push(async () => void (await cli.stop('SIGKILL')));
    return cli;
  };
  return {
    ...scope,
    companion,
    async httpCompanion(env = {}) {
      const dir = scope.tmp();
      const sidekick = await scope.sidekick();
      const state = join(dir, 'state');
      const args = ['--http-listen', '127.0.0.1:0', '--sidekick-url', sidekick.url, '--state-dir', state];
      const cli = companion(args, env);
      return { dir, state, sidekick, cli, base: `http://${await cli.httpAddress()}`, args };
    },
  };
}

/** POST one alert; the status, or 0 when the connection failed (nothing acked). */
export async function postAlert(base: string, body: string, timeoutMs = 15_000): Promise<number> {
  try {
    const res = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

export interface LoadResult {
  /** Sequence numbers answered 200 (accepted: the companion must deliver them). */
  readonly acked: number[];
  /** Sequence numbers refused (503) or failed (0): Falco would have dropped them; not owed. */
  readonly refused: number[];
  readonly statuses: Map<number, number>;
}

/**
 * Post marked alerts (`test.seq` = first, first+1, ...) at about `perSecond`, `parallel` at a
 * time, for `durationMs` (bounded in count too), while `during` runs its chaos.
 */
export async function load(o: { base: string; perSecond: number; durationMs: number; first?: number; parallel?: number; body?: (seq: number) => string }): Promise<LoadResult> {
  const acked: number[] = [];
  const refused: number[] = [];
  const statuses = new Map<number, number>();
  const parallel = o.parallel ?? 4;
  const body = o.body ?? ((n: number) => markedAlert(n));
  const max = Math.ceil((o.perSecond * o.durationMs) / 1000);
  const started = Date.now();
  let next = o.first ?? 0;
  const last = next + max;
  const worker = async (): Promise<void> => {
    while (next < last && Date.now() - started < o.durationMs + 30_000) {
      const seq = next++;
      // pace: alert k is due at k / perSecond
      const due = started + ((seq - (o.first ?? 0)) * 1000) / o.perSecond;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const s = await postAlert(o.base, body(seq));
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
      (s === 200 ? acked : refused).push(seq);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { acked: acked.sort((a, b) => a - b), refused, statuses };
}

/** Run `step` every `everyMs` until `untilMs` passes (bounded in count). */
export async function every(everyMs: number, forMs: number, step: (i: number) => Promise<void> | void): Promise<number> {
  const end = Date.now() + forMs;
  let i = 0;
  for (; i < Math.ceil(forMs / everyMs) + 1 && Date.now() < end; i++) {
    await step(i);
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(everyMs, end - Date.now()))));
  }
  return i;
}

/**
 * The verdict: every accepted alert delivered at least once (a redelivery with the same
 * `companion.alert_id`, never two ids for one alert), and the companion healthy: /readyz 200, a
 * fresh alert accepted and delivered.
 */
export async function endsHealthyNothingLost(o: { cli: RunningCli; base: string; opsBase?: string; sidekick: FakeSidekick; acked: Iterable<number>; probeSeq: number; timeoutMs?: number }): Promise<{ duplicates: number; delivered: number }> {
  const acked = [...o.acked];
  const timeout = o.timeoutMs ?? 30_000;
  await until(() => checkCovered(o.sidekick, acked).missing.length === 0, timeout, 'every accepted alert delivered').catch((err: unknown) => {
    const c = checkCovered(o.sidekick, acked);
    throw new Error(`${(err as Error).message}: ${c.missing.length} of ${acked.length} missing (first: ${c.missing.slice(0, 10).join(', ')})`);
  });
  const c = checkCovered(o.sidekick, acked);
  expect(c.missing).toEqual([]);
  // (deliveries without test.seq, e.g. detections, are not load alerts)
  expect(c.idConflicts.filter((n) => !Number.isNaN(n)), 'a redelivered alert keeps its companion.alert_id').toEqual([]);
  expect(o.cli.child.exitCode, 'the companion is still running').toBeNull();
  const ops = o.opsBase ?? o.base;
  await until(async () => (await fetch(ops + '/readyz').catch(() => null))?.status === 200, timeout, '/readyz 200');
  expect(await postAlert(o.base, markedAlert(o.probeSeq))).toBe(200);
  await until(() => deliveries(o.sidekick).some((d) => d.seq === o.probeSeq), timeout, 'a fresh alert delivered after the chaos');
  const ids = new Set(deliveries(o.sidekick).map((d) => d.alertId));
  return { duplicates: c.duplicates, delivered: ids.size };
}

/** A `falco_companion_*` sample from /metrics (0 when absent). */
export async function metricValue(base: string, re: RegExp): Promise<number> {
  const text = await (await fetch(base + '/metrics')).text();
  let sum = 0;
  for (const m of text.matchAll(new RegExp(re.source, 'gm'))) sum += Number(m[1]);
  return sum;
}
