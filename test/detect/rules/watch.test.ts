import { mkdtempSync, rmSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/logger.js';
import { Metrics } from '../../../src/metrics.js';
import { loadRulesFile } from '../../../src/detect/rules/load.js';
import { RulesWatcher } from '../../../src/detect/rules/watch.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fc-rules-'));
  dirs.push(d);
  return d;
}

describe('RulesWatcher', () => {
  it('reloads a good file, keeps the old rules on a bad one, and counts both', async () => {
    const d = tmp();
    const f = join(d, 'rules.yaml');
    writeFileSync(f, 'signals:\n  - rule: A\n    emit: {kind: listen}\n');
    const metrics = new Metrics({ collectDefault: false });
    const seen: number[] = [];
    const w = new RulesWatcher({ path: f, initial: loadRulesFile(f), logger: silentLogger(), metrics, onReload: (r) => seen.push(r.signals.length), pollMs: 0 });
    expect(w.rules.signals.length).toBe(1);

    writeFileSync(f, 'signals:\n  - rule: A\n    emit: {kind: listen}\n  - rule: B\n    emit: {kind: accept}\n');
    expect(w.reload()).toBe(true);
    expect(w.rules.signals.length).toBe(2);

    writeFileSync(f, 'signals:\n  - rule: A\n    emit: {kind: bogus}\n');
    expect(w.reload()).toBe(false);
    expect(w.rules.signals.length).toBe(2);
    expect(w.error).toMatch(/rules\.yaml:3:\d+: .*must be one of/);
    // A Component: still ready (the old rules run), the detail says why.
    expect(w.health()).toMatchObject({ ready: true, detail: expect.stringMatching(/^last reload invalid, old rules kept: .*rules\.yaml:3:/) as unknown });
    expect(seen).toEqual([2]);
    const text = await metrics.text();
    expect(text).toMatch(/falco_companion_rules_reloads_total\{result="ok"\} 1/);
    expect(text).toMatch(/falco_companion_rules_reloads_total\{result="invalid"\} 1/);
  });

  it('picks up a file change by polling', async () => {
    const d = tmp();
    const f = join(d, 'rules.yaml');
    writeFileSync(f, 'signals: []\n');
    const seen: number[] = [];
    const w = new RulesWatcher({ path: f, initial: loadRulesFile(f), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), onReload: (r) => seen.push(r.signals.length), pollMs: 20 });
    await w.start();
    try {
      writeFileSync(f, 'signals:\n  - rule: A\n    emit: {kind: listen}\n');
      const later = new Date(Date.now() + 5000);
      utimesSync(f, later, later);
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual([1]);
    } finally {
      await w.stop();
    }
  });
});
