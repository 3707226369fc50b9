/** Recordings of resource samples and Falco alerts (src/resource/recording.ts), and the one the demo replays. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { demoResourcePath } from '../../src/emulator/demo-stream.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { formatTick, replayRecording, type ReplayOptions } from '../../src/resource/recording.js';
import { analyserSettings } from '../../src/sources/metrics.js';
import { testSettings, TEST_BASELINE } from './sim.js';

function defaultsOptions(): ReplayOptions {
  const mc = loadConfig<Config>(configSchema, { file: null, env: {}, overrides: {} }).metrics;
  return {
    analyser: analyserSettings(mc),
    baseline: { windowMs: mc.baseline.window, slots: mc.baseline.slots, learningPeriodMs: mc.baseline.learning_period, minSamples: mc.baseline.min_samples, maxKeys: mc.baseline.max_keys },
    logger: silentLogger(),
    metrics: new Metrics({ collectDefault: false }),
  };
}

describe('the demo recording, replayed with the default settings', () => {
  it('gives three load signals for the fleet-wide spike, the Falco alert, then one lone signal for the miner', () => {
    const r = replayRecording(readFileSync(demoResourcePath(), 'utf8'), defaultsOptions());
    expect(r.header.name).toBe('resource-hijack');
    expect(r.ticks).toBe(91);
    const summary = r.items.map((i) => {
      const o = JSON.parse(i.line) as { rule: string; output_fields: Record<string, unknown> };
      return i.kind === 'alert' ? o.rule : `${String(o.output_fields['k8s.pod.name'])} ${String(o.output_fields['resource.metric'])} ${String(o.output_fields['resource.verdict'])}`;
    });
    expect(summary).toEqual([
      'api-6b8f9d7c5-x7k2p cpu load',
      'api-6b8f9d7c5-q9zt2 cpu load',
      'api-6b8f9d7c5-m4pln cpu load',
      'Companion signal: execution from tmpfs',
      'api-6b8f9d7c5-x7k2p cpu lone',
    ]);
  });
});

describe('replayRecording', () => {
  const opts = (): ReplayOptions => ({ analyser: testSettings(), baseline: TEST_BASELINE, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });

  it('names the line of anything it cannot read', () => {
    expect(() => replayRecording('# c\n{"tick":"yesterday","samples":[]}\n', opts())).toThrow(/recording line 2: "tick" is not an RFC 3339 time/);
    expect(() => replayRecording('{"tick":"2026-03-02T00:00:00Z","samples":{}}', opts())).toThrow(/line 1: "samples" must be an array/);
    expect(() => replayRecording('\n\nnot json', opts())).toThrow(/line 3: not JSON/);
    expect(() => replayRecording('{"what":1}', opts())).toThrow(/line 1: neither a recording header, a container, a tick nor a Falco alert/);
    expect(() => replayRecording('{"container":{"name":"x"}}', opts())).toThrow(/line 1: container without "id"/);
  });

  it('formatTick writes what replayRecording reads (missing counters left out)', () => {
    const line = formatTick('2026-03-02T00:00:00.000000000Z', [{ id: 'a', timeNs: 0n, source: 'cri', cpuNs: 1.4, memoryBytes: 10, pids: null, rxBytes: null, txBytes: null, rxPackets: null, txPackets: null }]);
    expect(JSON.parse(line)).toEqual({ tick: '2026-03-02T00:00:00.000000000Z', samples: [{ id: 'a', cpu_ns: 1, memory: 10 }] });
    expect(replayRecording(line, opts()).ticks).toBe(1);
  });
});
