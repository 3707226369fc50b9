import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createSocketFilterDetector, SOCKET_FILTER_ALONE_RULE } from '../../../src/detect/detectors/socket-filter.js';
import type { Finding, Signal } from '../../../src/detect/types.js';
import { runDetector, sig } from '../../support/signals.js';
import { s, tuple, type P } from './chain-helpers.js';

afterEach(() => {
  vi.useRealTimers();
});

const door: P = { pid: 31337, ppid: 1, sid: 31337, name: 'dbus-daemon', exe: '/dev/shm/kdmtmpflush', cmd: 'dbus-daemon --system' };
const child = (pid: number, name: string, exe: string): P => ({ pid, ppid: 31337, sid: 31337, name, exe });

describe('socket-filter detector (T1205.002)', () => {
  it('BPFDoor-like chain: packet socket + filter, iptables, bind shell listener, accept → escalated to Critical', () => {
    const det = createSocketFilterDetector();
    const { findings, state } = runDetector(det, [
      s('tmpfs', 0, door),
      s('rename', 0.1, door, { 'evt.arg.arg2_str': 'dbus-daemon' }),
      s('pidfile', 0.2, door, { 'fd.name': '/var/run/haldrund.pid' }),
      s('raw', 1, door, { 'evt.arg.domain': 'AF_PACKET' }),
      s('filter', 1.001, door, { 'evt.arg.optname': 'SO_ATTACH_FILTER' }),
      s('fw', 120, { pid: 31400, ppid: 31399, apid2: 31337, name: 'iptables', exe: '/usr/sbin/xtables-nft-multi', cmd: 'iptables -t nat -A PREROUTING -s 198.51.100.7 -p tcp --dport 443 -j REDIRECT --to-ports 42392' }),
      s('listen', 120.2, child(31401, 'dbus-daemon', '/dev/shm/kdmtmpflush'), tuple('0.0.0.0:42392', '0.0.0.0:42392')),
      s('accept', 121, child(31401, 'dbus-daemon', '/dev/shm/kdmtmpflush'), tuple('198.51.100.7:51000', '172.17.0.2:42392')),
    ]);
    expect(findings.map((f) => f.rule)).toEqual([
      // Arming alone: executable on tmpfs, a pid file and an unusual packet socket (no trigger yet).
      SOCKET_FILTER_ALONE_RULE,
      'Traffic signaling: socket filter armed, then firewall changed',
      'Traffic signaling: socket filter armed, then new listener',
      'Traffic signaling: socket filter armed, then connection accepted from a new peer',
    ]);
    expect(findings[0]?.priority).toBe('Error');
    expect(findings[0]?.fields['socket_filter.factors']).toBe('tmpfs_exe,disguised_name,pidfile,unusual_socket');
    expect(findings.slice(1).map((f) => f.priority)).toEqual(['Critical', 'Critical', 'Critical']);
    const last = findings[3] as Finding;
    expect(last.mitre).toContain('T1205.002');
    expect(String(last.fields['socket_filter.escalations'])).toMatch(/tmpfs_exe.*disguised_name.*pidfile.*bind_shell_port.*filter_on_raw_socket/);
    expect(last.evidence.map((e) => e.kind)).toEqual(['tmpfs_exec', 'proc_rename', 'pidfile_create', 'raw_socket', 'filter_attach', 'firewall_exec', 'listen', 'accept']);
    expect(new Set(findings.map((f) => f.key)).size).toBe(1); // one chain
    expect(det.evictions(state)).toBe(0);
  });

  it('reverse-shell variant: outbound connect to a new destination, then a shell on the socket', () => {
    const det = createSocketFilterDetector();
    const { findings } = runDetector(det, [
      s('raw', 0, { ...door, exe: '/usr/sbin/agent', name: 'agent' }, { 'evt.arg.domain': 'AF_INET' }),
      s('connect', 30, child(500, 'agent', '/usr/sbin/agent'), tuple('172.17.0.2:40000', '203.0.113.50:8443')),
      s('shell', 30.5, child(501, 'sh', '/bin/sh')),
    ]);
    expect(findings.map((f) => f.rule)).toEqual([
      'Traffic signaling: socket filter armed, then outbound connection to a new destination',
      'Traffic signaling: socket filter armed, then shell wired to a socket',
    ]);
    expect(findings[0]?.priority).toBe('Warning');
  });

  it('stays silent outside the window, for unrelated processes, known peers and (include_host: false) host processes', () => {
    const det = createSocketFilterDetector({ window: 60_000, include_host: false });
    const { findings } = runDetector(det, [
      s('accept', 0, { pid: 900 }, tuple('198.51.100.7:1', '172.17.0.2:80')), // peer seen before arming
      s('raw', 1, door, { 'evt.arg.domain': 'AF_PACKET' }),
      s('listen', 30, { pid: 777, ppid: 1, sid: 1 }, tuple('0.0.0.0:8080', '0.0.0.0:8080')), // unrelated lineage
      s('accept', 31, child(31338, 'x', '/x'), tuple('198.51.100.7:2', '172.17.0.2:80')), // known peer
      s('listen', 62, child(31339, 'x', '/x'), tuple('0.0.0.0:9090', '0.0.0.0:9090')), // after the window
      s('raw', 100, { ...door, pid: 1000, container: 'host' }),
      s('listen', 101, { pid: 1001, ppid: 1000, container: 'host' }, tuple('0.0.0.0:1', '0.0.0.0:1')),
    ]);
    // The arming itself is suspicious (tmpfs executable): that detection only, no chain.
    expect(findings.map((f) => f.rule)).toEqual([SOCKET_FILTER_ALONE_RULE]);
  });

  it('official rules without proc.pid still chain, by container only and scored lower', () => {
    const det = createSocketFilterDetector();
    const noPid = { pid: null as unknown as number };
    const { findings } = runDetector(det, [
      s('raw', 0, { ...door, ...noPid }),
      s('shell', 5, { ...child(9, 'sh', '/bin/sh'), ...noPid }),
    ]);
    expect(findings).toHaveLength(1);
    expect(String(findings[0]?.fields['socket_filter.escalations'])).toContain('container_only');
    expect(findings[0]?.score).toBeLessThan(0.65 + 0.1 * 2);
  });

  // --- model-based properties ---

  const kinds = ['raw', 'filter', 'bpf', 'fw', 'listen', 'accept', 'connect', 'shell', 'tmpfs', 'rename', 'pidfile'] as const;
  const stepArb = fc.record({
    kind: fc.constantFrom(...kinds),
    gap: fc.integer({ min: 0, max: 90 }),
    pid: fc.integer({ min: 1, max: 6 }),
    ppid: fc.integer({ min: 1, max: 6 }),
    container: fc.constantFrom('c1', 'c2', 'c3', 'host'),
    peer: fc.integer({ min: 1, max: 5 }),
    port: fc.integer({ min: 42380, max: 42400 }),
  });
  const toSignals = (steps: (typeof stepArb extends fc.Arbitrary<infer T> ? T : never)[]): Signal[] => {
    let t = 0;
    return steps.map((x) => {
      t += x.gap;
      const p: P = { pid: 100 + x.pid, ppid: 100 + x.ppid, sid: 1, container: x.container };
      const net = tuple(`10.9.0.${x.peer}:5000`, `172.17.0.2:${x.port}`);
      return s(x.kind, t, p, x.kind === 'fw' ? {} : net);
    });
  };
  const windowMs = 120_000;

  it('keeps state bounded, counts evictions, and never reports a trigger outside the window', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 40 }), (steps) => {
        const det = createSocketFilterDetector({ window: windowMs, max_arms: 3, max_containers: 2, max_peers: 3 });
        const sigs = toSignals(steps);
        const { state, findings } = runDetector(det, sigs);
        expect(state.arms.size).toBeLessThanOrEqual(3);
        expect(state.ctx.size).toBeLessThanOrEqual(2);
        for (const c of state.ctx.values()) expect(c.peers.size).toBeLessThanOrEqual(3);
        // Reference model of the arm table: live for `window` from the last arming, max 3, least
        // recently armed evicted (hosts included: include_host is the default).
        const live = new Map<string, bigint>();
        const lastArm = new Map<string, bigint>();
        let evicted = 0;
        let now = 0n;
        let lastSweep = 0n;
        const win = BigInt(windowMs) * 1_000_000n;
        for (const x of sigs) {
          if (x.timeNs > now) now = x.timeNs;
          if (x.timeNs + win < now) continue;
          if (now - lastSweep > win / 64n) {
            for (const [k, t0] of live) if (t0 + win < now) live.delete(k);
            lastSweep = now;
          }
          if (!['raw_socket', 'filter_attach', 'bpf_load'].includes(x.kind)) continue;
          const k = `${x.containerId ?? 'host'}|${x.proc.pid}`;
          if (live.has(k)) live.delete(k);
          else if (live.size >= 3) {
            live.delete(live.keys().next().value as string);
            evicted++;
          }
          live.set(k, x.timeNs);
          lastArm.set(k, x.timeNs);
        }
        expect(state.arms.evicted).toBe(evicted);
        expect(det.evictions(state)).toBeGreaterThanOrEqual(evicted);
        for (const f of findings) {
          const arms = f.evidence.filter((e) => ['raw_socket', 'filter_attach', 'bpf_load'].includes(e.kind));
          expect(arms.length).toBeGreaterThan(0);
          // Never after the arm's window, counted from its last arming.
          const armedLast = lastArm.get(f.key.slice('socket_filter|'.length)) as bigint;
          expect(f.timeNs - armedLast).toBeLessThanOrEqual(BigInt(windowMs) * 1_000_000n);
          expect(f.evidence.every((e) => e.containerId === arms[0]?.containerId)).toBe(true);
          expect(f.score).toBeGreaterThan(0);
          expect(f.score).toBeLessThanOrEqual(1);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('gives the same findings whatever the wall clock says', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 0, max: 4_000_000_000_000 }), (steps, wall) => {
        const sigs = toSignals(steps);
        const summary = (fs: Finding[]): string => JSON.stringify(fs.map((f) => [f.rule, f.priority, f.score, f.key, String(f.timeNs), f.evidence.length]));
        vi.useFakeTimers({ now: 0 });
        const a = summary(runDetector(createSocketFilterDetector({ window: windowMs }), sigs).findings);
        vi.setSystemTime(wall);
        const b = summary(runDetector(createSocketFilterDetector({ window: windowMs }), sigs).findings);
        vi.useRealTimers();
        expect(b).toBe(a);
      }),
      { numRuns: 60 },
    );
  });
});

describe('socket-filter detector: total peers budget', () => {
  it('keeps peers and ports of all containers under max_total_peers; the least recently active forget first (counted)', () => {
    const det = createSocketFilterDetector({ max_total_peers: 100, max_peers: 50 });
    const sigs: Signal[] = [];
    for (let c = 0; c < 5; c++) for (let i = 0; i < 40; i++) sigs.push(sig({ kind: 'connect', t: c * 100 + i, container: `c${c}`, dest: `198.51.100.${i + 1}`, port: 443 }));
    const { state } = runDetector(det, sigs);
    let held = 0;
    for (const x of state.ctx.values()) held += x.peers.size + x.ports.size;
    expect(state.peers).toBe(held);
    expect(state.peers).toBeLessThanOrEqual(100);
    expect(state.ctx.get('c4')?.peers.size).toBe(40); // the active container keeps its own
    expect(state.ctx.get('c0')?.peers.size).toBe(0);
    expect(det.evictions(state)).toBe(state.droppedPeers);
    expect(state.droppedPeers).toBe(5 * 40 - held);
  });
});
