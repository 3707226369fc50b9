import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createKnockDetector } from '../../../src/detect/detectors/knock.js';
import type { Finding, Signal } from '../../../src/detect/types.js';
import { runDetector } from '../../support/signals.js';
import { s, tuple } from './chain-helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

const fw = (sec: number, cmd: string, container?: string): Signal => s('fw', sec, { pid: 2000 + sec, name: 'iptables', exe: '/usr/sbin/iptables', cmd, ...(container ? { container } : {}) });
const acc = (sec: number, peer: string, port: number, container?: string): Signal =>
  s('accept', sec, { pid: 3000, name: 'sshd', exe: '/usr/sbin/sshd', ...(container ? { container } : {}) }, tuple(`${peer}:51000`, `172.17.0.2:${port}`));

describe('knock detector (T1205.001)', () => {
  it('single-source ACCEPT then a connection from that source; rule deletion escalates', () => {
    const det = createKnockDetector();
    const { findings } = runDetector(det, [
      fw(0, 'iptables -I INPUT -s 198.51.100.7 -p tcp --dport 2222 -j ACCEPT'),
      acc(3, '198.51.100.9', 2222), // another source: nothing
      acc(4, '198.51.100.7', 2222),
      fw(60, 'iptables -D INPUT -s 198.51.100.7 -p tcp --dport 2222 -j ACCEPT'),
    ]);
    expect(findings.map((f) => [f.rule, f.priority])).toEqual([
      ['Port knocking: firewall opened for one source, then it connected', 'Error'],
      ['Port knocking: firewall opened for one source, connection accepted, rule removed', 'Critical'],
    ]);
    expect(findings[1]?.fields['knock.escalations']).toBe('rule_deleted,port_matches');
    expect(findings[1]?.evidence.map((e) => e.kind)).toEqual(['firewall_exec', 'accept', 'firewall_exec']);
    expect(findings[0]?.mitre).toContain('T1205.001');
  });

  it('matches a source however either side writes it (one address parser)', () => {
    for (const [rule, peer] of [
      ['198.51.100.7/32', '[::ffff:198.51.100.7]'],
      ['::ffff:198.51.100.7', '198.51.100.7'],
      ['2001:DB8::7/128', '[2001:db8:0::7]'],
    ] as const) {
      const { findings } = runDetector(createKnockDetector(), [fw(0, `iptables -I INPUT -s ${rule} -j ACCEPT`), acc(2, peer, 22)]);
      expect(findings, `${rule} / ${peer}`).toHaveLength(1);
    }
  });

  it('nat REDIRECT to the bind-shell range', () => {
    const { findings } = runDetector(createKnockDetector(), [
      fw(0, 'iptables -t nat -A PREROUTING -s 203.0.113.66 -p tcp --dport 80 -j REDIRECT --to-ports 42400'),
      acc(2, '203.0.113.66', 42400),
    ]);
    // A single-source REDIRECT into the bind-shell range is a detection by itself; the connection
    // from that source then completes the chain at Critical (one key: one chain).
    expect(findings.map((f) => [f.rule, f.priority])).toEqual([
      ['Port knocking: firewall opened for one source by a suspicious rule', 'Warning'],
      ['Port knocking: firewall opened for one source, then it connected', 'Critical'],
    ]);
    expect(findings[0]?.key).toBe(findings[1]?.key);
    expect(findings[1]?.fields['knock.escalations']).toBe('port_matches,bind_shell_port,redirect');
  });

  it('stays silent for networks, wildcards, late connections and other containers', () => {
    const { findings } = runDetector(createKnockDetector({ window: 60_000 }), [
      fw(0, 'iptables -A INPUT -s 10.0.0.0/8 -j ACCEPT'),
      acc(1, '10.1.1.1', 22),
      fw(2, 'iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001'),
      acc(3, '10.1.1.2', 15001),
      fw(10, 'iptables -I INPUT -s 198.51.100.7 -j ACCEPT'),
      acc(80, '198.51.100.7', 22), // after the window
      fw(100, 'iptables -I INPUT -s 198.51.100.8 -j ACCEPT', 'c-a'),
      acc(101, '198.51.100.8', 22, 'c-b'), // other container
      fw(200, 'iptables -L -n'),
    ]);
    expect(findings).toEqual([]);
  });

  // --- model-based: compare with a reference model over random sequences ---
  const stepArb = fc.record({
    op: fc.constantFrom('add', 'del', 'acc', 'addnet'),
    gap: fc.integer({ min: 0, max: 400 }),
    src: fc.integer({ min: 1, max: 4 }),
    container: fc.constantFrom('c1', 'c2'),
  });
  type Step = typeof stepArb extends fc.Arbitrary<infer T> ? T : never;
  const windowS = 600;
  const deleteS = 900;
  const toSignals = (steps: Step[]): Signal[] => {
    let t = 0;
    return steps.map((x) => {
      t += x.gap;
      const ip = `198.51.100.${x.src}`;
      if (x.op === 'add') return fw(t, `iptables -I INPUT -s ${ip} -j ACCEPT`, x.container);
      if (x.op === 'addnet') return fw(t, `iptables -I INPUT -s 198.51.${x.src}.0/24 -j ACCEPT`, x.container);
      if (x.op === 'del') return fw(t, `iptables -D INPUT -s ${ip} -j ACCEPT`, x.container);
      return acc(t, ip, 22, x.container);
    });
  };
  /** Reference: count of (first accept per open rule within window) + (delete within delete window after an accepted open). */
  function model(steps: Step[]): { opens: number; deletes: number } {
    let t = 0;
    const open = new Map<string, { at: number; accepted: boolean; deleted: boolean }>();
    let opens = 0;
    let deletes = 0;
    for (const x of steps) {
      t += x.gap;
      const k = `${x.container}|${x.src}`;
      for (const [kk, o] of open) if (o.at + Math.max(windowS, deleteS) < t) open.delete(kk);
      const o = open.get(k);
      if (x.op === 'add') {
        if (!(o && !o.deleted && t - o.at <= windowS)) open.set(k, { at: t, accepted: false, deleted: false });
      } else if (x.op === 'acc') {
        if (o && !o.accepted && !o.deleted && t - o.at <= windowS) {
          o.accepted = true;
          opens++;
        }
      } else if (x.op === 'del') {
        if (o && !o.deleted && t - o.at <= deleteS) {
          o.deleted = true;
          if (o.accepted) deletes++;
        }
      }
    }
    return { opens, deletes };
  }

  it('matches the reference model and keeps state bounded', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 40 }), (steps) => {
        const det = createKnockDetector({ window: windowS * 1000, delete_window: deleteS * 1000 });
        const { findings, state } = runDetector(det, toSignals(steps));
        const m = model(steps);
        const deleted = findings.filter((f) => f.fields['knock.rule_deleted'] === true).length;
        expect({ opens: findings.length - deleted, deletes: deleted }).toEqual(m);
        expect(state.open.size).toBeLessThanOrEqual(8);
        for (const f of findings) {
          const first = f.evidence[0] as Signal;
          const accept = f.evidence.find((e) => e.kind === 'accept') as Signal;
          expect(accept.timeNs - first.timeNs).toBeLessThanOrEqual(BigInt(windowS) * 1_000_000_000n);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('evicts (and counts) beyond max_rules', () => {
    const det = createKnockDetector({ max_rules: 2 });
    const { state } = runDetector(det, [1, 2, 3, 4].map((i) => fw(i, `iptables -I INPUT -s 198.51.100.${i} -j ACCEPT`)));
    expect(state.open.size).toBe(2);
    expect(det.evictions(state)).toBe(2);
  });

  it('gives the same findings whatever the wall clock says', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 4_000_000_000_000 }), (steps, wall) => {
        const sigs = toSignals(steps);
        const summary = (fs: Finding[]): string => JSON.stringify(fs.map((f) => [f.rule, f.priority, f.score, f.key, String(f.timeNs)]));
        vi.useFakeTimers({ now: 0 });
        const a = summary(runDetector(createKnockDetector(), sigs).findings);
        vi.setSystemTime(wall);
        const b = summary(runDetector(createKnockDetector(), sigs).findings);
        vi.useRealTimers();
        expect(b).toBe(a);
      }),
      { numRuns: 60 },
    );
  });
});
