/**
 * Host scenarios run for real on this machine through the built CLI, with the helper compiled
 * here by the system compiler: their kernel footprint confirmed, nothing left behind, also after
 * SIGTERM / SIGINT mid-run. Network traffic stays on loopback or in namespaces the runner creates.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { compilerSkipReason } from '../support/emulate-image.js';
import { emulate, emulateChild, hostSkipReason, leftovers, parseReport, useCompiledHelper } from './helpers.js';

const skip = hostSkipReason() ?? compilerSkipReason();
if (skip) process.stderr.write(`test/emulate/run-host.test.ts skipped: ${skip}\n`);

describe.skipIf(skip !== null)('emulate run on the host (real syscalls, real kernel)', () => {
  const compiled = useCompiledHelper();
  let helper = '';
  beforeAll(() => {
    helper = compiled.path();
  });

  const names = (r: { footprint: readonly { name: string; ok: boolean | null }[] }): string[] => r.footprint.filter((c) => c.ok === true).map((c) => c.name);

  it('socket-filter-host: raw ICMP socket + filter, rename, tmpfs exec, pid file, ICMP trigger after --delay, bind shell on a socket', async () => {
    const r = await emulate(['run', 'socket-filter-host', '--helper', helper, '--delay', '0.4', '--json']);
    const rep = r.report;
    expect(rep, r.stderr).not.toBeNull();
    if (!rep) return;
    expect(rep.error, r.stdout.slice(0, 2000)).toBeNull();
    expect(r.code).toBe(0);
    expect(rep.hostRun).toBe(true);
    expect(rep.footprint.every((c) => c.ok === true)).toBe(true);
    expect(names(rep)).toEqual(expect.arrayContaining(['process name vs executable', 'execution from tmpfs', 'pid file', 'raw socket', 'socket filter attached', 'listener', 'shell with socket stdio']));
    // the delay really separated arming and trigger
    const armed = rep.journal.find((e) => e.step === 'armed');
    const trig = rep.journal.find((e) => e.step === 'trigger');
    expect(armed && trig && (trig.t - armed.t) / 1e6).toBeGreaterThanOrEqual(400);
    // the helper's journal shows the real syscalls
    expect(rep.journal.find((e) => e.step === 'raw_socket')?.args).toBe('AF_INET, SOCK_RAW|SOCK_CLOEXEC, IPPROTO_ICMP');
    expect(rep.journal.find((e) => e.step === 'rename')?.comm).toBe('kworker/0:1');
    expect(rep.journal.filter((e) => e.step === 'redirect_stdio')).toHaveLength(3);
    expect(await leftovers(rep.run, rep.pids)).toEqual([]);
  }, 60_000);

  it('dhcp-client (benign): packet socket bound to a veth in namespaces of its own, filter for port 68, discover broadcast there', async () => {
    const r = await emulate(['run', 'dhcp-client', '--helper', helper, '--json']);
    const rep = r.report;
    expect(rep?.error ?? null, r.stdout.slice(0, 2000)).toBeNull();
    expect(r.code).toBe(0);
    expect(names(rep as never)).toEqual(expect.arrayContaining(['packet socket', 'socket filter attached', 'DHCP client process name']));
    expect(rep?.cleanup.some((c) => c.what.startsWith('delete network namespace'))).toBe(true);
    expect(await leftovers(rep?.run ?? 'x', rep?.pids)).toEqual([]);
  }, 60_000);

  it('kube-proxy-sync (benign): iptables-restore from a process named kube-proxy, in a namespace of its own', async () => {
    const r = await emulate(['run', 'kube-proxy-sync', '--helper', helper, '--json']);
    const rep = r.report;
    expect(rep?.error ?? null, r.stdout.slice(0, 2000)).toBeNull();
    expect(names(rep as never)).toEqual(expect.arrayContaining(['iptables-restore rounds', 'KUBE-SERVICES programmed in the run’s namespace']));
    expect(rep?.journal.filter((e) => e.step === 'firewall_sync').every((e) => e.comm === 'kube-proxy')).toBe(true);
    expect(await leftovers(rep?.run ?? 'x', rep?.pids)).toEqual([]);
  }, 60_000);

  it('port-knock on a host: two namespaces joined by a veth, the real iptables opens and closes the door', async () => {
    const r = await emulate(['run', 'port-knock', '--helper', helper, '--json']);
    const rep = r.report;
    expect(rep?.error ?? null, r.stdout.slice(0, 2000)).toBeNull();
    expect(names(rep as never)).toEqual(expect.arrayContaining(['raw socket', 'firewall opened for one source', 'accepted from the knocking source', 'firewall closed again']));
    expect(rep?.notes.join(' ')).toContain('declared for a container');
    expect(await leftovers(rep?.run ?? 'x', rep?.pids)).toEqual([]);
  }, 60_000);

  it('SIGTERM while the implant is armed: exit 143, every process, the pid file, the tmpfs copy and the run directory gone', async () => {
    const c = emulateChild(['run', 'socket-filter-host', '--helper', helper, '--delay', '30', '--json']);
    const m = await c.waitStderr(/trigger in 30000 ms/, 20_000);
    expect(m).toBeTruthy();
    const id = /run (fc-emul-[0-9a-f]{8})/.exec(c.stderr())?.[1] ?? '';
    expect(id).not.toBe('');
    expect((await leftovers(id)).length).toBeGreaterThan(0); // the run is really there
    c.child.kill('SIGTERM');
    expect(await c.exited).toBe(143);
    const rep = parseReport(c.stdout());
    expect(rep?.error?.code).toBe('E_EMULATE_INTERRUPTED');
    expect(rep?.cleanup.every((x) => x.ok)).toBe(true);
    expect(await leftovers(id, rep?.pids ?? [])).toEqual([]);
  }, 60_000);

  it('--timeout bounds a run: exit 1 with E_EMULATE_TIMEOUT, and the same cleanup', async () => {
    const t0 = Date.now();
    const r = await emulate(['run', 'socket-filter-host', '--helper', helper, '--delay', '30', '--timeout', '2', '--json']);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.code).toBe(1);
    expect(r.report?.error?.code).toBe('E_EMULATE_TIMEOUT');
    expect(r.report?.error?.message).toContain('within 2 s');
    expect(await leftovers(r.report?.run ?? 'x', r.report?.pids ?? [])).toEqual([]);
  }, 30_000);

  it('SIGINT while beacons run in a namespace of their own: exit 130, the namespace deleted', async () => {
    const c = emulateChild(['run', 'beacon', '--helper', helper, '--count', '100', '--interval', '0.2', '--json']);
    await c.waitStderr(/beacon: 100 connects/, 20_000);
    const id = /run (fc-emul-[0-9a-f]{8})/.exec(c.stderr())?.[1] ?? '';
    expect((await leftovers(id)).some((l) => l.startsWith('network namespace'))).toBe(true);
    c.child.kill('SIGINT');
    expect(await c.exited).toBe(130);
    const rep = parseReport(c.stdout());
    expect(rep?.cleanup.some((x) => x.what.startsWith('delete network namespace') && x.ok)).toBe(true);
    expect(await leftovers(id, rep?.pids ?? [])).toEqual([]);
  }, 60_000);
});
