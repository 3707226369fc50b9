/**
 * The kernel observer on this machine's kernel: the syscalls a BPFDoor-like helper makes on the
 * host are seen with their arguments and results (the kernel footprint the rules key on), only
 * the scenario's processes are traced, the program is bounded, and the Falco model turns the trace
 * into the signals our rules define. The output parser is also checked on fixed lines (no root).
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shapeOf } from '../support/falco-model/conformance.js';
import type { KernelEvent, SyscallEvent, Trace } from '../support/kernel/events.js';
import { buildKworker } from '../support/kernel/helper.js';
import { parseObserverOutput, startObserver } from '../support/kernel/observer.js';
import { kernelSkipReason, modelMode, officialRulesSkipReason, runModel } from '../support/kernel/session.js';
import { wait } from '../support/wait.js';

const S = '\\u001f';
const j = (data: string): string => `{"type": "printf", "data": "${data.replaceAll('|', S)}\\n"}`;

describe('observer output parser', () => {
  it('joins the records of one event (context, cgroup, arguments, argv chunks, path components) and orders by kernel time', () => {
    const lines = [
      '{"type": "attached_probes", "data": {"probes": 64}}',
      j('E|200|7|execve|/bin/sh'),
      j('H|200|7|7|1|node|0|0|0|7|7|5|4294967295|1fffeffffff|0'),
      j('C|200|7|0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'),
      j('D|200|7|docker'),
      j('R|300|7|execve|0'),
      j('H|300|7|7|1|sh|0|0|0|1|1|5|4294967295|1fffeffffff|34816'),
      j('C|300|7|/'),
      j('D|300|7|/'),
      j('A|300|7|1|16|\\\\x00echo hi'),
      j('A|300|7|0|16|sh\\\\x00-c'),
      j('I|300|7|794c7630|1|100755|0|0|42|busybox'),
      j('P|300|7|exe|0|busybox'),
      j('P|300|7|exe|1|bin'),
      j('F|100|1|1|7|16640|node'),
      '{"type": "lost_events", "data": {"events": 3}}',
      j('Z|events'),
      'not json',
    ];
    const out = parseObserverOutput(lines);
    expect(out.attached).toBe(true);
    expect(out.lost).toBe(3);
    expect(out.stopReason).toBe('events');
    expect(out.noise).toEqual(['not json']);
    expect(out.events.map((e) => `${e.kind}${e.kind === 'syscall' ? e.dir + e.name : ''}`)).toEqual(['fork', 'syscall>execve', 'syscall<execve']);
    const exit = out.events[2] as SyscallEvent;
    expect(exit.argv).toEqual(['sh', '-c', 'echo hi']);
    expect(exit.exe?.path).toBe('/bin/busybox');
    expect(exit.exe?.upperLayer).toBe(true);
    expect(exit.exe?.fsMagic).toBe(0x794c7630);
    expect(exit.ctx.tty).toBe(34816);
    const enter = out.events[1] as SyscallEvent;
    expect(enter.ctx.cgroupParent).toBe('docker');
    expect(enter.args).toEqual(['/bin/sh']);
  });
});

const skip = kernelSkipReason({ needDocker: false });

function sys(events: readonly KernelEvent[], pid: number, name: string, dir: '>' | '<' = '<'): SyscallEvent[] {
  return events.filter((e): e is SyscallEvent => e.kind === 'syscall' && e.ctx.pid === pid && e.name === name && e.dir === dir);
}

describe.skipIf(skip !== null)(`kernel observer on the real kernel${skip ? ` (${skip})` : ''}`, () => {
  let dir = '';
  let trace: Trace;
  let implantPid = 0;
  let bystanderPid = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kci-obs-'));
    const kw = await buildKworker(dir);
    copyFileSync(kw, join(dir, 'kdmtmpflush'));
    // A child of this process that exists before the observer: it must not be traced.
    const bystander = spawn('/bin/sh', ['-c', 'for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do /bin/true; sleep 0.5; done'], { stdio: 'ignore' });
    bystanderPid = bystander.pid ?? 0;
    // A unix-socket server of the test itself (untraced): the helper connects to it.
    const server = createServer((c) => {
      c.on('error', () => undefined); // the helper may close first
      c.end('HTTP/1.0 200 OK\r\n\r\nOK');
    }).listen(join(dir, 'api.sock'));
    await new Promise((r) => server.once('listening', r));
    const observer = await startObserver({ spawners: [process.pid], maxSeconds: 120 });
    try {
      const script = `(SIGTRIG_NAME='kworker/0:1' ${dir}/kdmtmpflush arm 5721 42952 &); sleep 1; ${kw} magic 5721; ${kw} connect 42952; ${kw} rawsock; ${kw} unix ${dir}/api.sock`;
      const r = spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
      expect(r.stdout).toContain('emulated-shell');
      await wait(300);
    } finally {
      server.close();
      trace = await observer.stop();
      if (bystander.exitCode === null && bystander.pid) process.kill(bystander.pid, 'SIGTERM');
    }
    const implantExec = trace.events.find((e): e is SyscallEvent => e.kind === 'syscall' && e.name === 'execve' && e.dir === '<' && e.exe?.path === `${dir}/kdmtmpflush`);
    implantPid = implantExec?.ctx.pid ?? 0;
  }, 120_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('sees the implant start from its own path with its argv, and nothing lost', () => {
    expect(trace.lost).toBe(0);
    expect(implantPid).toBeGreaterThan(0);
    const exec = sys(trace.events, implantPid, 'execve')[0];
    expect(exec?.ret).toBe(0);
    expect(exec?.argv).toEqual([`${dir}/kdmtmpflush`, 'arm', '5721', '42952']);
    expect(exec?.ctx.comm).toBe('kdmtmpflush');
  });

  it('sees the footprint our rules key on: rename, packet socket, attached filter, listener, accept, dup2 onto stdio, shell', () => {
    const ev = trace.events;
    const rename = sys(ev, implantPid, 'prctl').find((e) => e.ctx.comm === 'kworker/0:1');
    expect(rename?.ret).toBe(0);
    const sockEnter = sys(ev, implantPid, 'socket', '>').find((e) => e.args[0] === '17');
    expect(sockEnter?.args).toEqual(['17', '3', '8']);
    const filter = sys(ev, implantPid, 'setsockopt').find((e) => e.filterLen !== undefined);
    expect(filter?.ret).toBe(0);
    expect(filter?.filterLen).toBe(11);
    expect(sys(ev, implantPid, 'setsockopt', '>').some((e) => e.args[1] === '1' && e.args[2] === '26')).toBe(true);
    expect(sys(ev, implantPid, 'bind').some((e) => e.ret === 0)).toBe(true);
    expect(sys(ev, implantPid, 'listen').some((e) => e.ret === 0)).toBe(true);
    const accepted = sys(ev, implantPid, 'accept').find((e) => (e.ret ?? -1) >= 0);
    expect(accepted?.socket).toMatchObject({ family: 'inet', localIp: '127.0.0.1', localPort: 42952, remoteIp: '127.0.0.1' });
    expect(sys(ev, implantPid, 'dup2').map((e) => e.ret)).toEqual([0, 1, 2]);
    const shell = sys(ev, implantPid, 'execve').find((e) => e.argv?.[0] === 'sh');
    expect(shell?.argv).toEqual(['sh', '-c', 'echo emulated-shell']);
    const raw = ev.find((e): e is SyscallEvent => e.kind === 'syscall' && e.name === 'socket' && e.dir === '>' && e.args[1] === '524291');
    expect(raw?.args).toEqual(['2', '524291', '1']);
  });

  it('traces only the scenario: a child of the test that existed before the observer is not seen', () => {
    expect(bystanderPid).toBeGreaterThan(0);
    expect(trace.events.some((e) => (e.kind === 'syscall' ? e.ctx.ppid === bystanderPid || e.ctx.pid === bystanderPid : e.pid === bystanderPid))).toBe(false);
  });

  it('the Falco model turns the trace into our signals (host scope), as Falco 0.40 prints them', () => {
    const { alerts } = runModel(trace, null);
    const mine = alerts.filter((a) => a.pid === implantPid).map((a) => shapeOf(a.line));
    const rules = mine.map((a) => `${a.rule} @ ${a.evtType}`);
    expect(rules).toEqual(
      expect.arrayContaining([
        'Companion signal: execution from tmpfs @ execve',
        'Companion signal: process renamed with prctl @ prctl',
        'Companion signal: packet or raw socket created @ socket',
        'Companion signal: socket filter attached @ setsockopt',
        'Companion signal: shell with socket stdio @ execve',
      ]),
    );
    const rename = mine.find((a) => a.rule === 'Companion signal: process renamed with prctl');
    expect(rename?.alert['output_fields']).toMatchObject({ 'evt.arg.arg2_str': 'kworker/0:1', 'proc.name': 'kdmtmpflush', 'container.id': 'host' });
    const shell = mine.find((a) => a.rule === 'Companion signal: shell with socket stdio');
    expect(String((shell?.alert['output_fields'] as Record<string, unknown>)['proc.stdin.name'])).toMatch(/^127\.0\.0\.1:\d+->127\.0\.0\.1:42952$/);
    // a unix connect's fd.name as Falco builds it: the two kernel socket addresses, then the path
    // the server bound (what the recordings README shows for the Docker socket)
    const unixNames: string[] = [];
    runModel(trace, null, undefined, {
      onEvent: (e) => {
        if (e.type === 'connect' && e.dir === '<' && e.field({ raw: 'fd.typechar', name: 'fd.typechar', arg: null, transformers: [] }) === 'u') {
          unixNames.push(String(e.field({ raw: 'fd.name', name: 'fd.name', arg: null, transformers: [] })));
        }
      },
    });
    expect(unixNames).toContainEqual(expect.stringMatching(new RegExp(`^[0-9a-f]{16}->[0-9a-f]{16} ${dir}/api\\.sock$`)));
    // host processes: the container-scoped listener/accept signals do not fire
    expect(rules.some((r) => r.startsWith('Companion signal: listening socket') || r.startsWith('Companion signal: inbound connection accepted'))).toBe(false);
  });

  const noOfficial = officialRulesSkipReason();
  it.skipIf(noOfficial !== null)(`the official "Packet socket created in container" does not fire on a host process${noOfficial ? ` (${noOfficial})` : ''}`, () => {
    expect(modelMode().officialRules).toBe(true);
    const { alerts } = runModel(trace, null, undefined, { matching: 'all' });
    const mine = alerts.filter((a) => a.pid === implantPid).map((a) => a.rule.name);
    expect(mine).toContain('Companion signal: packet or raw socket created');
    expect(mine).not.toContain('Packet socket created in container');
  });
});

describe.skipIf(skip !== null)(`kernel observer bounds${skip ? ` (${skip})` : ''}`, () => {
  it('stops by itself after its event budget', async () => {
    const observer = await startObserver({ spawners: [process.pid], maxSeconds: 60, maxEvents: 30 });
    for (let i = 0; i < 10; i++) spawnSync('/bin/true');
    for (let i = 0; i < 50 && observer.lineCount() < 30; i++) await wait(100);
    const trace = await observer.stop();
    expect(trace.stopReason).toBe('events');
    expect(trace.events.filter((e) => e.kind === 'syscall').length).toBeLessThanOrEqual(31);
  }, 60_000);
});
