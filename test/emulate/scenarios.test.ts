/**
 * The scenario declarations hold together: names, detectors, MITRE techniques, rule names (ours
 * from COMPANION_RULES, the official ones from the rules files Falco ships), role templates, a
 * plan per scenario; and `emulate list` prints them (the built CLI).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRIORITIES } from '../../src/alert.js';
import { BEACON_MITRE } from '../../src/detect/detectors/beacon.js';
import { ESCAPE_MITRE } from '../../src/detect/detectors/escape.js';
import { K8S_TOKEN_MITRE } from '../../src/detect/detectors/k8s-spread.js';
import { KNOCK_MITRE } from '../../src/detect/detectors/knock.js';
import { SOCKET_FILTER_MITRE } from '../../src/detect/detectors/socket-filter.js';
import { UNEXPECTED_IMAGE_MITRE, UNEXPECTED_IMAGE_RULES } from '../../src/detect/detectors/unexpected-image.js';
import { DETECTOR_MODULES } from '../../src/detect/registry.js';
import { COMPANION_RULES } from '../../src/detect/types.js';
import { PLANS } from '../../src/emulate/plans.js';
import { ROLE_VARIABLES, SCENARIOS, scenarioByName } from '../../src/emulate/scenarios.js';
import { createBeaconDetector } from '../../src/detect/detectors/beacon.js';
import { atLeast } from '../../src/alert.js';
import { DEFAULTS } from '../../src/emulate/context.js';
import { sig } from '../support/signals.js';
import { emulate } from './helpers.js';

const REF = resolve('../shared/falco-reference');
const OFFICIAL: Record<string, string> = {
  'official-stable': 'falco_rules.yaml',
  'official-incubating': 'falco-incubating_rules.yaml',
  'official-sandbox': 'falco-sandbox_rules.yaml',
};
const MITRE: Record<string, readonly string[]> = {
  socket_filter: SOCKET_FILTER_MITRE,
  knock: KNOCK_MITRE,
  beacon: BEACON_MITRE,
  escape_chain: ESCAPE_MITRE,
  k8s_spread: K8S_TOKEN_MITRE,
  unexpected_image: UNEXPECTED_IMAGE_MITRE,
};

describe('scenario declarations', () => {
  it('names are unique, kebab-case, and every scenario has a plan', () => {
    const names = SCENARIOS.map((s) => s.name);
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
    expect(Object.keys(PLANS).sort()).toEqual([...names].sort());
    expect(scenarioByName('socket-filter-bind')?.where).toBe('container');
    expect(scenarioByName('nope')).toBeUndefined();
  });

  it('benign twins declare no detection, attacks at least one, with a real detector, its MITRE technique and a priority', () => {
    const ids = new Set(DETECTOR_MODULES.map((m) => m.id));
    for (const s of SCENARIOS) {
      if (s.benign) expect(s.detections, s.name).toEqual([]);
      else expect(s.detections.length, s.name).toBeGreaterThan(0);
      for (const d of s.detections) {
        expect(ids.has(d.detector), `${s.name}: ${d.detector}`).toBe(true);
        expect(MITRE[d.detector], `${s.name}: MITRE list of ${d.detector}`).toContain(d.mitre);
        expect(PRIORITIES).toContain(d.minPriority);
        if (d.rule !== undefined) expect(Object.values(UNEXPECTED_IMAGE_RULES)).toContain(d.rule);
      }
    }
    expect(SCENARIOS.filter((s) => s.benign).map((s) => s.name).sort()).toEqual(['capture-netdebug', 'dhcp-client', 'kube-proxy-sync', 'metrics-scraper']);
  });

  it('companion rule names are the shipped rules (COMPANION_RULES)', () => {
    for (const s of SCENARIOS) for (const r of s.rules.filter((x) => x.source === 'companion')) expect(COMPANION_RULES[r.rule], `${s.name}: ${r.rule}`).toBeDefined();
  });

  it.skipIf(!existsSync(REF))('official rule names exist in the rules file they are declared from (../shared/falco-reference)', () => {
    for (const s of SCENARIOS) {
      for (const r of s.rules.filter((x) => x.source !== 'companion')) {
        const file = OFFICIAL[r.source] as string;
        const text = readFileSync(resolve(REF, file), 'utf8');
        expect(text.includes(`- rule: ${r.rule}\n`), `${s.name}: "${r.rule}" in ${file}`).toBe(true);
      }
    }
  });

  it('role templates only use documented placeholders and start with a helper command', () => {
    const commands = new Set(['idle', 'drop', 'implant', 'magic', 'client', 'serve', 'beacon', 'scrape', 'knockd', 'knock', 'unix-serve', 'escape', 'capture', 'dhcp', 'fwsync']);
    const helperSource = readFileSync(resolve('native/fc-emulate.c'), 'utf8');
    for (const s of SCENARIOS) {
      const roles = s.roles.map((r) => r.role);
      expect(new Set(roles).size, s.name).toBe(roles.length);
      for (const r of s.roles) {
        expect(commands.has(r.argv[0] as string), `${s.name}/${r.role}: ${r.argv[0]}`).toBe(true);
        expect(helperSource).toContain(`strcmp(cmd, "${r.argv[0]}")`);
        for (const a of r.argv) for (const m of a.matchAll(/\{([a-z_]+)\}/g)) expect(ROLE_VARIABLES[m[1] as string], `${s.name}/${r.role}: {${m[1]}}`).toBeDefined();
      }
      expect(s.steps.length, s.name).toBeGreaterThan(1);
      expect(s.timeoutS).toBeGreaterThan(0);
    }
  });

  it('capabilities are the ones the runner checks, pending entries say why', () => {
    for (const s of SCENARIOS) {
      for (const c of s.capabilities) expect(['NET_RAW', 'NET_ADMIN', 'SYS_ADMIN'], s.name).toContain(c);
      for (const x of [...s.rules, ...s.detections]) if (x.pending !== undefined) expect(x.pending.length, s.name).toBeGreaterThan(10);
    }
  });
});

describe('the beacon’s fast mode is a beacon to the real detector', () => {
  it('18 connects at 1 s ± 10 % (the helper’s cadence) score at or above the declared priority; the default mode too', () => {
    const decl = scenarioByName('beacon')?.detections[0];
    expect(decl?.detector).toBe('beacon');
    for (const mode of [DEFAULTS.beaconFast, DEFAULTS.beacon]) {
      for (const seed of [1, 7, 42]) {
        const d = createBeaconDetector({});
        let st = d.init();
        let state = seed;
        const rnd = (): number => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
        let t = 0;
        let best: string | null = null;
        for (let i = 0; i < mode.count; i++) {
          const r = d.step(st, sig({ kind: 'connect', t, dest: '203.0.113.1', port: 8443, container: 'c1' }), 0n);
          st = r.state;
          for (const f of r.findings) if (best === null || atLeast(f.priority, best as never)) best = f.priority;
          t += (mode.intervalMs / 1000) * (1 + (rnd() * 2 - 1) * (mode.jitterPct / 100));
        }
        expect(best, `mode ${mode.intervalMs} ms, seed ${seed}`).not.toBeNull();
        expect(atLeast(best as never, decl?.minPriority ?? 'Emergency')).toBe(true);
      }
    }
  });
});

describe('emulate list (built CLI)', () => {
  it('prints every scenario with where it runs and what it must cause', async () => {
    const r = await emulate(['list']);
    expect(r.code).toBe(0);
    for (const s of SCENARIOS) expect(r.stdout).toMatch(new RegExp(`^${s.name}\\s+${s.where}\\s`, 'm'));
    expect(r.stdout).toContain('socket_filter T1205.002 ≥ Critical');
    expect(r.stdout).toMatch(/^capture-netdebug .*benign: nothing at Warning or above$/m);
  });

  it('docs/emulation.md carries `emulate list --markdown` verbatim', async () => {
    const r = await emulate(['list', '--markdown']);
    expect(r.code).toBe(0);
    const doc = readFileSync(resolve('docs/emulation.md'), 'utf8');
    const m = /<!-- generated by `falco-companion emulate list --markdown`: do not edit by hand -->\n\n([\s\S]*?)\n\n<!-- end of the generated scenarios -->/.exec(doc);
    expect(m, 'generated section markers in docs/emulation.md').not.toBeNull();
    expect(m?.[1], 'regenerate with: node dist/src/cli.js emulate list --markdown').toBe(r.stdout.trimEnd());
    for (const s of SCENARIOS) expect(doc).toContain(`### ${s.name}\n`);
    expect(doc).not.toMatch(/PLACEHOLDER/);
  });

  it('--json is the declarations', async () => {
    const r = await emulate(['list', '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout) as { name: string; detections: unknown[] }[];
    expect(v.map((s) => s.name)).toEqual(SCENARIOS.map((s) => s.name));
  });

  it('run with an unknown scenario, or a host scenario under --docker, exits 2 and says why', async () => {
    const a = await emulate(['run', 'no-such-thing']);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('unknown scenario no-such-thing');
    const b = await emulate(['run', 'dhcp-client', '--docker', '--image', 'x', '--json']);
    expect(b.code).toBe(2);
    expect(b.report?.error?.code).toBe('E_EMULATE_PREFLIGHT');
    expect(b.report?.error?.message).toContain('host scenario');
  });

  it('without the native helper: exit 2, E_EMULATE_HELPER naming how to build it', async () => {
    const r = await emulate(['run', 'metrics-scraper', '--helper', '/nonexistent/fc-emulate', '--json']);
    expect(r.code).toBe(2);
    expect(r.report?.error?.code).toBe('E_EMULATE_HELPER');
    expect(r.report?.error?.message).toContain('npm run build:native');
  });
});
