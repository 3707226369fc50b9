/**
 * Patient implants, on hosts and in containers (#13 item 3): arms remembered for days, arming alone
 * a detection when the signals already show a disguise, the trigger upgrading it to Critical, the
 * official rule's pid-less copy of a packet socket folded in, and the same for the knock chain.
 */
import { describe, expect, it } from 'vitest';
import { createKnockDetector } from '../../../src/detect/detectors/knock.js';
import { createSocketFilterDetector, SOCKET_FILTER_ALONE_RULE } from '../../../src/detect/detectors/socket-filter.js';
import { runDetector } from '../../support/signals.js';
import { s, tuple, type P } from './chain-helpers.js';

const H = 3600;
const implant: P = { pid: 48212, ppid: 1, sid: 48212, name: 'kdmtmpflush', exe: '/dev/shm/kdmtmpflush', cmd: '/dev/shm/kdmtmpflush --init', container: 'host' };
const shellOf = (pid: number, container = 'host'): P => ({ pid, ppid: implant.pid, sid: implant.sid, name: 'sh', exe: '/bin/sh', container });
const raw = (t: number, p: P = implant) => s('raw', t, p, { 'evt.arg.domain': 'AF_INET', 'evt.arg.type': '3', 'evt.arg.proto': '1' });
const filter = (t: number, p: P = implant) => s('filter', t, p, { 'evt.arg.optname': 'SO_ATTACH_FILTER' });

describe('socket filter: long dwell, hosts, arming alone', () => {
  it('a host implant armed in disguise is a detection at once, and its shell three hours later the chain at Critical', () => {
    const { findings } = runDetector(createSocketFilterDetector(), [
      s('tmpfs', 0, implant),
      s('rename', 0.01, implant, { 'evt.arg.arg2_str': 'kworker/0:2' }),
      raw(0.03),
      filter(0.031),
      s('shell', 3 * H + 420, shellOf(48410)),
    ]);
    expect(findings.map((f) => [f.rule, f.priority])).toEqual([
      [SOCKET_FILTER_ALONE_RULE, 'Error'],
      ['Traffic signaling: socket filter armed, then shell wired to a socket', 'Critical'],
    ]);
    expect(findings[1]?.fields['socket_filter.dwell_s']).toBe(3 * H + 419);
    expect(findings[1]?.message).toContain('1.9h later'.replace('1.9', ((3 * H + 420) / 3600).toFixed(1)));
    expect(new Set(findings.map((f) => f.key)).size).toBe(1);
  });

  it('keeps an arm for its window (7 days by default, counted from the last arming), then lets it go', () => {
    const chains = (sigs: ReturnType<typeof s>[]) => runDetector(createSocketFilterDetector(), sigs).findings.filter((f) => f.rule !== SOCKET_FILTER_ALONE_RULE);
    expect(chains([raw(0), s('shell', 6 * 24 * H, shellOf(48410))]).map((f) => f.rule)).toEqual(['Traffic signaling: socket filter armed, then shell wired to a socket']);
    expect(chains([raw(0), s('shell', 8 * 24 * H, shellOf(48410))])).toEqual([]);
    // re-arming restarts the window
    expect(chains([raw(0), raw(5 * 24 * H), s('shell', 11 * 24 * H, shellOf(48410))])).toHaveLength(1);
  });

  it('scores arming alone by its factors: strong (tmpfs, disguise) 2 points, weak (pid file, unusual socket) 1; a rename to another tool\'s name is none', () => {
    const app: P = { pid: 700, ppid: 1, sid: 700, name: 'agent', exe: '/usr/local/bin/agent', container: 'c1' };
    const cases: [string, ReturnType<typeof s>[], string[]][] = [
      ['unusual socket alone', [raw(1, app)], []],
      ['renamed to tcpdump', [s('rename', 0, app, { 'evt.arg.arg2_str': 'tcpdump' }), raw(1, app)], []],
      ['pid file + unusual socket', [s('pidfile', 0, app, { 'fd.name': '/var/run/agent.pid' }), raw(1, app)], ['Warning']],
      ['kernel-thread name', [s('rename', 0, app, { 'evt.arg.arg2_str': 'kworker/u8:3' }), filter(1, app)], ['Warning']],
      ['daemon disguise + unusual socket', [s('rename', 0, app, { 'evt.arg.arg2_str': 'dbus-daemon' }), raw(1, app)], ['Error']],
      ['from tmpfs, rename after the arming', [raw(1, { ...app, exe: '/tmp/agent' }), s('rename', 2, { ...app, exe: '/tmp/agent' }, { 'evt.arg.arg2_str': 'udevd' })], ['Error']],
    ];
    for (const [what, sigs, want] of cases) {
      const got = runDetector(createSocketFilterDetector(), sigs).findings.filter((f) => f.rule === SOCKET_FILTER_ALONE_RULE).map((f) => f.priority);
      expect(got, what).toEqual(want);
    }
  });

  it('does not track the packet sockets of capture and network tools installed where they belong, and does track them from tmpfs', () => {
    const tcpdump: P = { pid: 91532, ppid: 91500, sid: 91422, name: 'tcpdump', exe: '/usr/sbin/tcpdump', container: 'host' };
    const st = runDetector(createSocketFilterDetector(), [raw(0, tcpdump), filter(0.01, tcpdump)]).state;
    expect(st.arms.size).toBe(0);
    const dropped = { ...tcpdump, exe: '/dev/shm/tcpdump' };
    const r = runDetector(createSocketFilterDetector(), [raw(0, dropped), s('shell', 60, { pid: 1, ppid: dropped.pid, name: 'sh', exe: '/bin/sh', container: 'host' })]);
    expect(r.findings.map((f) => f.priority)).toEqual(['Warning', 'Critical']);
  });

  it('folds the official pid-less packet-socket alert into ours, whichever comes first: one arm, no container-only chain', () => {
    const c1: P = { ...implant, container: 'c1' };
    const official = (t: number) => s('raw', t, { ...c1, pid: null as unknown as number }, { 'evt.arg.domain': 'AF_PACKET' });
    for (const order of [
      [official(1), s('raw', 1.000016, c1, { 'evt.arg.domain': 'AF_PACKET' })],
      [s('raw', 1, c1, { 'evt.arg.domain': 'AF_PACKET' }), official(1.000016)],
    ]) {
      const { state, findings } = runDetector(createSocketFilterDetector(), [...order, s('listen', 5, shellOf(48300, 'c1'), tuple('0.0.0.0:42391', '0.0.0.0:42391'))]);
      expect([...state.arms.entries()].map(([k]) => k)).toEqual([`c1|${implant.pid}`]);
      expect(state.folded).toBe(1);
      expect(findings.every((f) => f.key === `socket_filter|c1|${implant.pid}`)).toBe(true);
      expect(findings.some((f) => String(f.fields['socket_filter.escalations']).includes('container_only'))).toBe(false);
    }
    // Without our rule (official rules only) the pid-less arm still chains, by container only.
    const alone = runDetector(createSocketFilterDetector(), [official(1), s('shell', 5, { ...shellOf(48300, 'c1'), pid: null as unknown as number })]);
    expect(alone.findings).toHaveLength(1);
    expect(String(alone.findings[0]?.fields['socket_filter.escalations'])).toContain('container_only');
  });

  it('does not link a trigger to an arm whose pid now belongs to another program (pid reuse over days)', () => {
    const reused: P = { pid: implant.pid, ppid: 4242, sid: 4242, name: 'nginx', exe: '/usr/sbin/nginx', container: 'host' };
    const { findings } = runDetector(createSocketFilterDetector(), [raw(0), s('shell', 2 * 24 * H, { ...reused, name: 'sh', exe: '/bin/sh' })]);
    expect(findings.map((f) => f.rule)).toEqual([SOCKET_FILTER_ALONE_RULE]); // the arming only
    // the same pid with its own parent (the implant exec'ing its shell in place) still is the implant
    const same = runDetector(createSocketFilterDetector(), [raw(0), s('shell', 2 * 24 * H, { ...implant, name: 'sh', exe: '/bin/sh' })]);
    expect(same.findings.at(-1)?.priority).toBe('Critical');
  });

  it('evicts the arms without escalation factors first when a container holds too many', () => {
    const sigs = [s('tmpfs', 0, { ...implant, container: 'c9' }), raw(0.1, { ...implant, container: 'c9' })];
    for (let i = 0; i < 80; i++) sigs.push(raw(1 + i, { pid: 1000 + i, ppid: 1, sid: 1000 + i, name: 'probe', exe: '/usr/bin/probe', container: 'c9' }));
    sigs.push(s('shell', 2 * H, { pid: 5, ppid: implant.pid, sid: implant.sid, name: 'sh', exe: '/bin/sh', container: 'c9' }));
    const { findings, state } = runDetector(createSocketFilterDetector(), sigs);
    expect(findings.at(-1)?.priority).toBe('Critical');
    expect(state.droppedPeers).toBe(81 - 64);
  });
});

describe('knock: a rule suspicious by itself, and a patient source', () => {
  const ipt = (t: number, args: string, p: P = { pid: 48401 + t, ppid: 48400, sid: 48212, apid2: 48212, name: 'iptables', exe: '/usr/sbin/xtables-nft-multi', container: 'host' }) => s('fw', t, p, { 'proc.cmdline': `iptables ${args}`, 'proc.args': args });
  const acc = (t: number, peer: string, port: number) => s('accept', t, { pid: 300, container: 'c1' }, tuple(`${peer}:51515`, `10.244.1.5:${port}`));

  it('a single-source REDIRECT into the bind-shell range, deleted again unanswered, is a detection that rises', () => {
    const { findings } = runDetector(createKnockDetector(), [
      ipt(0, '-I INPUT -s 198.51.100.77 -j ACCEPT'),
      ipt(0.05, '-t nat -A PREROUTING -s 198.51.100.77 -p tcp --dport 443 -j REDIRECT --to-ports 42391'),
      ipt(4, '-t nat -D PREROUTING -s 198.51.100.77 -p tcp --dport 443 -j REDIRECT --to-ports 42391'),
    ]);
    expect(findings.map((f) => [f.rule, f.priority, f.fields['knock.escalations']])).toEqual([
      ['Port knocking: firewall opened for one source by a suspicious rule', 'Warning', 'redirect,bind_shell_port'],
      ['Port knocking: firewall opened for one source by a suspicious rule', 'Error', 'redirect,bind_shell_port,rule_deleted'],
    ]);
  });

  it('an ordinary single-source ACCEPT is nothing by itself and expires after `window`; a suspicious one waits `dwell` for its source (Critical)', () => {
    const plain = runDetector(createKnockDetector(), [ipt(0, '-I INPUT -s 198.51.100.8 -p tcp --dport 22 -j ACCEPT'), acc(3 * H, '198.51.100.8', 22)]);
    expect(plain.findings).toEqual([]);
    const redirect = runDetector(createKnockDetector(), [ipt(0, '-t nat -I PREROUTING -s 198.51.100.9 -p tcp --dport 443 -j REDIRECT --to-ports 42500'), acc(2 * 24 * H, '198.51.100.9', 42500)]);
    expect(redirect.findings.map((f) => [f.rule, f.priority])).toEqual([
      ['Port knocking: firewall opened for one source by a suspicious rule', 'Warning'],
      ['Port knocking: firewall opened for one source, then it connected', 'Critical'],
    ]);
    expect(redirect.findings[1]?.fields['knock.delay_s']).toBe(2 * 24 * H);
  });
});
