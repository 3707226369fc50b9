/**
 * Replays every alert a real Falco 0.40 printed with this project's rules pack
 * (../shared/falco-reference/recorded/, see its README) through the real detection engine, every
 * shipped detector and the built-in rules file, and holds the detections to what ran there: the
 * BPFDoor-like chain is one socket_filter chain at Critical (the official rule's pid-less copy of the
 * packet socket folded in, no second arm), the escape attempts are an escape chain without runc's
 * start-up /proc/sys writes as evidence, and the benign runs stay below Warning. These recordings
 * come from the older rules pack (d3b06a5), so they also prove that the runtime's own start-up
 * never counts with users who have not updated their rules.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { alertFromJson, atLeast, type Alert } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { DetectionEngine } from '../../src/detect/engine.js';
import { compileMapping } from '../../src/detect/mapping.js';
import { buildDetectors, DETECTOR_MODULES } from '../../src/detect/registry.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';

const DIR = '../shared/falco-reference/recorded';
const present = existsSync(DIR);
if (!present) console.warn(`skipping the recorded-alert replay: ${DIR} is absent (the shared reference material is not checked out next to this worktree)`);

function alertsOf(name: string): Alert[] {
  return readFileSync(join(DIR, `${name}.jsonl`), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => alertFromJson(parse(l), { kind: 'replay', component: 'test' }));
}

function replay(name: string): Alert[] {
  const rules = loadRulesFile(null, { detectors: DETECTOR_MODULES });
  const engine = new DetectionEngine({ rules, detectors: buildDetectors(rules), logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: new ManualClock(0) });
  const out: Alert[] = [];
  for (const a of alertsOf(name)) out.push(...engine.process(a).detections);
  return out;
}

const warningOrAbove = (ds: readonly Alert[]): string[] => ds.filter((d) => atLeast(d.priority, 'Warning')).map((d) => `${d.priority} ${d.rule}: ${d.output}`);

describe.skipIf(!present)('recorded real Falco alerts replayed through the engine', () => {
  it('covers every recorded file', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).map((f) => f.replace(/\.jsonl$/, '')).sort();
    expect(files).toEqual(['beacon-container', 'bind-shell-container', 'capture-container', 'capture-host', 'escape-attempts', 'plain-start', 'shell-reads-shadow']);
  });

  it('bind-shell-container: one socket_filter chain (T1205.002) at Critical; the pid-less official packet socket makes no second arm', () => {
    const ds = replay('bind-shell-container');
    const sf = ds.filter((d) => d.companion['detector'] === 'socket_filter');
    expect(sf.some((d) => d.priority === 'Critical' && d.tags?.includes('T1205.002'))).toBe(true);
    // Every detection is about the armed process itself, none "container_only" from a pid-less arm.
    expect(sf.map((d) => d.companion['socket_filter.armed_pid'])).toEqual(sf.map(() => 13924));
    expect(sf.filter((d) => String(d.companion['socket_filter.escalations'] ?? '').includes('container_only'))).toEqual([]);
    // Arming alone already said so: tmpfs executable, kernel-thread name, unusual packet socket.
    expect(sf[0]?.rule).toBe('Traffic signaling: socket filter armed by a suspicious process');
    expect(sf[0]?.companion['socket_filter.factors']).toBe('tmpfs_exe,disguised_name,unusual_socket');
    expect(ds.filter((d) => d.companion['detector'] !== 'socket_filter').map((d) => d.rule)).toEqual([]);
  });

  it('escape-attempts: an escape chain from the release_agent write and the Docker socket mount, never runc\'s start-up sysctl writes', () => {
    const ds = replay('escape-attempts');
    const esc = ds.filter((d) => d.companion['detector'] === 'escape_chain');
    expect(esc.length).toBeGreaterThan(0);
    for (const d of esc) {
      expect(d.companion['escape.indicators']).toBe('release_agent,sensitive_mount');
      expect(atLeast(d.priority, 'Error')).toBe(true);
      expect(d.tags).toContain('T1611');
    }
    // The runtime's renames and /proc/sys writes map to nothing at all.
    const mapping = compileMapping(loadRulesFile(null, { detectors: DETECTOR_MODULES }).signals);
    const runtime = alertsOf('escape-attempts').filter((a) => String(a.outputFields?.['proc.exepath'] ?? '').endsWith('runc'));
    expect(runtime.length).toBe(5);
    for (const a of runtime) expect(mapping.mapAlert(a)).toEqual([]);
  });

  for (const name of ['plain-start', 'capture-container', 'capture-host', 'shell-reads-shadow', 'beacon-container']) {
    it(`${name}: nothing at Warning or above`, () => {
      expect(warningOrAbove(replay(name))).toEqual([]);
    });
  }
});
