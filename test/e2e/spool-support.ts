/** Shared helpers for the spool end-to-end tests (built CLI, fake sidekick, marked alerts). */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { stringify, type JsonObject } from '../../src/json/lossless.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { FakeSidekick } from '../support/sidekick.js';
import { until as untilEvery } from '../support/wait.js';

/** The shared `until`, checking every 50 ms (checks here may scrape the CLI's /metrics). */
export const until = (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> => untilEvery(cond, timeoutMs, what, 50);

const FIXTURE = 'test/fixtures/alerts/falco-0.40.jsonl';

/** A Falco alert (JSON text) carrying `test.seq: n` so deliveries can be counted exactly. */
export function markedAlert(n: number, pad = 0): string {
  const lines = readFileSync(FIXTURE, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
  return withOutputFields(lines[n % lines.length] as string, { 'test.seq': n, ...(pad > 0 ? { 'test.pad': 'x'.repeat(pad) } : {}) });
}

export interface Delivery {
  readonly seq: number;
  readonly alertId: string;
}

/** What the sidekick stand-in accepted, by `test.seq` and `companion.alert_id`. */
export function deliveries(s: FakeSidekick): Delivery[] {
  return s.accepted.map((a) => {
    const f = a.parsed['output_fields'] as JsonObject;
    return { seq: Number(stringify(f['test.seq'])), alertId: String(f['companion.alert_id']) };
  });
}

/** Every seq in `acked` delivered; duplicates of one seq always share one alert id. Returns the duplicate count. */
export function checkCovered(s: FakeSidekick, acked: Iterable<number>): { missing: number[]; duplicates: number; idConflicts: number[] } {
  const byseq = new Map<number, Set<string>>();
  let total = 0;
  for (const d of deliveries(s)) {
    total++;
    let ids = byseq.get(d.seq);
    if (!ids) byseq.set(d.seq, (ids = new Set()));
    ids.add(d.alertId);
  }
  const missing = [...acked].filter((n) => !byseq.has(n));
  const idConflicts = [...byseq.entries()].filter(([, ids]) => ids.size > 1).map(([n]) => n);
  return { missing, duplicates: total - byseq.size, idConflicts };
}

export async function post(base: string, body: string): Promise<number> {
  try {
    const res = await fetch(base + '/', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0; // connection failed (killed): not acked
  }
}

export async function metric(base: string, re: RegExp): Promise<number> {
  const text = await (await fetch(base + '/metrics')).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}


/**
 * Cleanups run after each test of the calling file (registered with afterEach, last first), with
 * the temporary directories and sidekick stand-ins most e2e tests need.
 */
export function e2eScope(prefix: string): { cleanup: (() => Promise<void> | void)[]; tmp(): string; sidekick(): Promise<FakeSidekick> } {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  return {
    cleanup,
    tmp() {
      const d = mkdtempSync(join(tmpdir(), prefix));
      cleanup.push(() => rmSync(d, { recursive: true, force: true }));
      return d;
    },
    async sidekick() {
      const s = await new FakeSidekick().start();
      cleanup.push(() => s.close());
      return s;
    },
  };
}
