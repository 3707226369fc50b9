/**
 * Container scenarios run for real with `--docker`: a test dockerd (no bridge, no iptables), the
 * helper compiled here with the system compiler, the CI image from test/support/emulate-image.ts
 * (busybox-static, the static helper, this machine's iptables), throwaway containers with
 * `--network none` and only the capabilities each scenario declares. The kernel footprint is read
 * from the host's /proc; the containers, images and run directories are gone afterwards, also
 * after SIGTERM mid-run. unexpected-image pushes to the Debian docker-registry on loopback.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunReport } from '../../src/emulate/run.js';
import { dockerSkipReason, startDockerd, type Dockerd } from '../support/dockerd.js';
import { buildEmulateImage, compileHelper, compilerSkipReason } from '../support/emulate-image.js';
import { emulate, emulateChild, hostSkipReason, leftovers, parseReport } from './helpers.js';

const skip = dockerSkipReason() ?? hostSkipReason() ?? compilerSkipReason();
if (skip) process.stderr.write(`test/emulate/run-docker.test.ts skipped: ${skip}\n`);

describe.skipIf(skip !== null)('emulate run --docker (throwaway containers on a test dockerd)', () => {
  let d: Dockerd;
  let dir = '';
  let helper = '';
  let image = '';
  let registry = '';
  const args = (scenario: string, ...extra: string[]): string[] => ['run', scenario, '--docker', '--image', image, '--socket', d.socket, '--helper', helper, '--json', ...extra];

  beforeAll(async () => {
    d = await startDockerd();
    dir = mkdtempSync(join(tmpdir(), 'fc-emulate-test-'));
    helper = await compileHelper(dir);
    image = await buildEmulateImage(d, helper, { iptables: true });
  }, 120_000);
  afterAll(async () => {
    await d?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function passes(scenario: string, expected: string[], ...extra: string[]): Promise<RunReport> {
    const r = await emulate(args(scenario, ...extra));
    const rep = r.report;
    expect(rep, r.stderr.slice(-2000)).not.toBeNull();
    if (!rep) throw new Error('no report');
    expect(rep.error, r.stderr.slice(-3000)).toBeNull();
    expect(r.code).toBe(0);
    expect(rep.mode).toBe('docker');
    expect(rep.containerId).toMatch(/^[0-9a-f]{64}$/);
    const failed = rep.footprint.filter((c) => c.ok !== true);
    expect(failed).toEqual([]);
    expect(rep.footprint.map((c) => c.name)).toEqual(expect.arrayContaining(expected));
    expect(rep.cleanup.every((c) => c.ok)).toBe(true);
    expect(await leftovers(rep.run, rep.pids, d.docker)).toEqual([]);
    return rep;
  }

  it('socket-filter-bind: packet socket + filter (ss), kworker rename over a tmpfs executable, pid file, bind shell with socket stdio', async () => {
    const rep = await passes('socket-filter-bind', ['process name vs executable', 'execution from tmpfs', 'pid file', 'packet socket', 'socket filter attached', 'listener', 'shell answered over the socket', 'shell with socket stdio']);
    const sock = rep.journal.find((e) => e.step === 'raw_socket');
    expect(sock?.args).toBe('AF_PACKET, SOCK_RAW, htons(ETH_P_IP)');
    expect(sock?.exe).toMatch(/^\/tmp\/fc-emulate-fc-emul-[0-9a-f]{8}\/kdmtmpflush$/);
    const port = Number(rep.journal.find((e) => e.step === 'listening')?.['port']);
    expect(port).toBeGreaterThanOrEqual(42391);
    expect(port).toBeLessThanOrEqual(43390);
  }, 60_000);

  it('socket-filter-reverse: raw AF_INET socket + filter, connect back to a documentation address, shell on the socket', async () => {
    const rep = await passes('socket-filter-reverse', ['raw socket', 'socket filter attached', 'reverse connect', 'shell answered over the socket', 'shell with socket stdio']);
    expect(rep.journal.find((e) => e.step === 'connected' && e.role === 'implant')?.args).toBe('203.0.113.66:4444');
  }, 60_000);

  it('port-knock: the container’s own iptables opens for one source over a veth pair, accept, rule removed', async () => {
    const rep = await passes('port-knock', ['raw socket', 'firewall opened for one source', 'accepted from the knocking source', 'firewall closed again']);
    expect(rep.journal.filter((e) => e.step === 'knock' && e.role === 'knockd')).toHaveLength(3);
    expect(rep.journal.find((e) => e.step === 'firewall_open')?.comm).toBe('cd00r');
  }, 60_000);

  it('beacon: periodic connects to a listener on 203.0.113.1 inside the container', async () => {
    const rep = await passes('beacon', ['address in the run’s namespace', 'listener', 'periodic connects', 'listener accepted every beacon'], '--count', '6', '--interval', '0.3', '--jitter', '20');
    expect(rep.journal.filter((e) => e.step === 'beacon' && e.ret >= 0)).toHaveLength(6);
  }, 60_000);

  it('escape-attempts without capabilities: unshare and mount refused, release_agent files written, runtime socket and token reached', async () => {
    const rep = await passes('escape-attempts', ['runtime socket listener', 'unshare attempt', 'cgroup mount attempt', 'release_agent file written', 'runtime socket connect', 'service-account token read']);
    expect(rep.journal.filter((e) => e.step === 'unshare').map((e) => e.errno)).toEqual(['EPERM', 'EPERM']);
    expect(rep.journal.find((e) => e.step === 'mount_cgroup')?.errno).toBe('EPERM');
    expect(rep.journal.find((e) => e.step === 'core_pattern_write')?.errno).toBe('EROFS');
    expect(rep.journal.find((e) => e.step === 'kernel_module_load')?.ret).toBe(-1);
  }, 60_000);

  it('capture-netdebug (benign): tcpdump-named capture, libpcap’s two attaches, labelled netdebug', async () => {
    const rep = await passes('capture-netdebug', ['container labels', 'filter attached twice (libpcap)', 'packet socket', 'socket filter attached', 'capture process name', 'packet captured']);
    expect(rep.journal.find((e) => e.step === 'raw_socket')?.comm).toBe('tcpdump');
  }, 60_000);

  it('metrics-scraper (benign): 12 loopback targets polled on a fixed cadence', async () => {
    await passes('metrics-scraper', ['scrape targets listening', 'fixed-cadence scrape rounds'], '--count', '3', '--interval', '0.3');
  }, 60_000);

  it('unexpected-image: a new digest pushed behind an existing tag in a local registry, pulled, started, shell, connect', async () => {
    registry ||= await d.startRegistry();
    const rep = await passes('unexpected-image', ['new digest behind the tag', 'interactive shell in the new container', 'egress connect'], '--registry', registry);
    expect(rep.notes.join(' ')).toMatch(/fc-emulate\/app:1\.0: sha256:[0-9a-f]{64} -> sha256:[0-9a-f]{64}/);
    // the images the run created are gone, the base image stays
    const images = await d.docker('images', '--format', '{{.Repository}}:{{.Tag}}');
    expect(images).not.toContain('fc-emulate/app');
    expect(images).toContain(image);
  }, 120_000);

  it('SIGTERM mid-run: exit 143, the container removed, nothing left', async () => {
    const c = emulateChild(args('beacon', '--count', '200', '--interval', '0.2'));
    await c.waitStderr(/beacon: 200 connects/, 30_000);
    const id = /run (fc-emul-[0-9a-f]{8})/.exec(c.stderr())?.[1] ?? '';
    expect((await leftovers(id, [], d.docker)).some((l) => l.startsWith('containers'))).toBe(true);
    c.child.kill('SIGTERM');
    expect(await c.exited).toBe(143);
    const rep = parseReport(c.stdout());
    expect(rep?.error?.code).toBe('E_EMULATE_INTERRUPTED');
    expect(await leftovers(id, rep?.pids ?? [], d.docker)).toEqual([]);
  }, 60_000);
});
