/**
 * Model-based checks over random signal streams for the beacon, first-seen egress, escape,
 * unexpected-image and Kubernetes-spread detectors: state stays bounded, findings cite only
 * evidence inside the detector's window, and results depend only on event time (a whole-day shift
 * of every time gives the same findings).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatTimeNs } from '../../../src/alert.js';
import { createBeaconDetector } from '../../../src/detect/detectors/beacon.js';
import { createEscapeDetector } from '../../../src/detect/detectors/escape.js';
import { createFirstSeenEgressDetector } from '../../../src/detect/detectors/first-seen-egress.js';
import { createK8sSpreadDetector } from '../../../src/detect/detectors/k8s-spread.js';
import { createUnexpectedImageDetector } from '../../../src/detect/detectors/unexpected-image.js';
import { ESCAPE_SUBTYPES, type Detector, type Finding, type Signal, type SignalKind } from '../../../src/detect/types.js';
import { BASE_NS, runDetector, secNs, sig } from '../../support/signals.js';

const KINDS: SignalKind[] = ['connect', 'escape', 'container_start', 'sa_token_read', 'k8s_api_contact', 'kubelet_contact', 'shell_spawn', 'shell_socket', 'network_tool'];

interface Ev {
  dt: number;
  kind: SignalKind;
  sub: number;
  c: number;
  d: number;
  port: number;
  fresh: number;
  newDest: boolean;
}

const evArb: fc.Arbitrary<Ev> = fc.record({
  dt: fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 55, max: 65 }), fc.integer({ min: 0, max: 2000 })),
  kind: fc.constantFrom(...KINDS),
  sub: fc.integer({ min: 0, max: ESCAPE_SUBTYPES.length - 1 }),
  c: fc.integer({ min: 0, max: 6 }),
  d: fc.integer({ min: 0, max: 8 }),
  port: fc.constantFrom(443, 80, 4444, 10250),
  fresh: fc.integer({ min: -1, max: 3600 }),
  newDest: fc.boolean(),
});

function build(evs: readonly Ev[], shiftDays: number): Signal[] {
  let t = shiftDays * 86400;
  return evs.map((e) => {
    t += e.dt;
    const companion = {
      'dest.new_for_image': e.newDest,
      ...(e.fresh >= 0 ? { 'image.pulled_at': formatTimeNs(BASE_NS + secNs(t - e.fresh)) } : {}),
    };
    return sig({ kind: e.kind, subtype: e.kind === 'escape' ? ESCAPE_SUBTYPES[e.sub]! : null, t, container: e.c === 0 ? null : `c${e.c}`, dest: `203.0.113.${e.d}`, port: e.port, companion, keys: e.kind === 'container_start' ? { privileged: e.sub % 2 === 0 } : {} });
  });
}

interface Case {
  name: string;
  make: () => Detector<unknown>;
  windowNs: bigint;
  size: (s: unknown) => number;
  bound: number;
}

const cases: Case[] = [
  { name: 'beacon', make: () => createBeaconDetector({ max_series: 4, max_points: 16, window: 3_600_000, threshold: 0.5 }) as Detector<unknown>, windowNs: secNs(3600), size: (s) => (s as ReturnType<ReturnType<typeof createBeaconDetector>['init']>).series.size, bound: 4 },
  { name: 'first_seen_egress', make: () => createFirstSeenEgressDetector({ max_keys: 5, learning_period: 0 }) as Detector<unknown>, windowNs: 0n, size: (s) => (s as ReturnType<ReturnType<typeof createFirstSeenEgressDetector>['init']>).reported.size, bound: 5 },
  { name: 'escape', make: () => createEscapeDetector({ max_containers: 3 }) as Detector<unknown>, windowNs: secNs(60), size: (s) => (s as ReturnType<ReturnType<typeof createEscapeDetector>['init']>).boxes.size, bound: 3 },
  { name: 'unexpected_image', make: () => createUnexpectedImageDetector({ max_containers: 3 }) as Detector<unknown>, windowNs: secNs(900), size: (s) => (s as ReturnType<ReturnType<typeof createUnexpectedImageDetector>['init']>).containers.size, bound: 3 },
  { name: 'k8s_spread', make: () => createK8sSpreadDetector({ max_containers: 3 }) as Detector<unknown>, windowNs: secNs(600), size: (s) => (s as ReturnType<ReturnType<typeof createK8sSpreadDetector>['init']>).tokens.size, bound: 3 },
];

const summary = (fs: readonly Finding[], shiftNs: bigint) => fs.map((f) => ({ rule: f.rule, key: f.key, priority: f.priority, score: f.score, t: f.timeNs - shiftNs, ev: f.evidence.map((e) => e.timeNs - shiftNs) }));

describe.each(cases)('$name model', (c) => {
  it('stays bounded, cites evidence only inside the window, depends only on event time', () => {
    fc.assert(
      fc.property(fc.array(evArb, { minLength: 1, maxLength: 120 }), (evs) => {
        const det = c.make();
        const consumed = build(evs, 0).filter((s) => det.consumes.includes(s.kind));
        let st = det.init();
        let now = 0n;
        const all: Finding[] = [];
        for (const s of consumed) {
          if (s.timeNs > now) now = s.timeNs;
          const r = det.step(st, s, now);
          st = r.state;
          expect(c.size(st)).toBeLessThanOrEqual(c.bound);
          for (const f of r.findings) {
            for (let i = 1; i < f.evidence.length; i++) expect(f.evidence[i]!.timeNs >= f.evidence[i - 1]!.timeNs).toBe(true);
            for (const e of f.evidence) {
              expect(e.timeNs <= f.timeNs).toBe(true);
              expect(f.timeNs - e.timeNs <= c.windowNs).toBe(true);
            }
            for (const v of Object.values(f.fields)) if (typeof v === 'string') expect(v.length).toBeLessThan(512);
          }
          all.push(...r.findings);
        }
        expect(det.evictions(st)).toBeGreaterThanOrEqual(0);
        const shift = 3;
        const det2 = c.make();
        const shifted = runDetector(det2, build(evs, shift).filter((s) => det2.consumes.includes(s.kind)));
        expect(summary(shifted.findings, secNs(shift * 86400))).toEqual(summary(all, 0n));
      }),
      { numRuns: 150 },
    );
  });
});
