/**
 * A real dnsmasq (Debian dnsmasq-base) on 127.0.0.1:<free port> with its own hosts file, for
 * reverse-DNS tests. Started by the test, stopped by PID. `queries(name)` counts the PTR
 * queries dnsmasq logged (--log-queries to stderr).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { promises as dnsPromises } from 'node:dns';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort } from './net.js';
import { poll } from './wait.js';

export function dnsmasqAvailable(): boolean {
  const r = spawnSync('dnsmasq', ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** A port free for TCP and UDP on 127.0.0.1 (dnsmasq binds both). */
async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freeTcpPort();
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

export class Dnsmasq {
  readonly dir: string;
  port = 0;
  private proc: ChildProcess | null = null;
  private log = '';

  constructor(private readonly hosts: string) {
    this.dir = mkdtempSync(join(tmpdir(), 'fc-dnsmasq-'));
    chmodSync(this.dir, 0o755); // dnsmasq may drop privileges before reading the hosts file
  }

  get server(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const hostsFile = join(this.dir, 'hosts');
    writeFileSync(hostsFile, this.hosts, { mode: 0o644 });
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort();
      this.log = '';
      const p = spawn(
        'dnsmasq',
        [
          '--no-daemon',
          '--conf-file=/dev/null',
          '--no-resolv',
          '--no-hosts',
          '--bogus-priv',
          `--addn-hosts=${hostsFile}`,
          '--listen-address=127.0.0.1',
          `--port=${this.port}`,
          '--bind-interfaces',
          `--pid-file=${join(this.dir, 'dnsmasq.pid')}`,
          '--log-queries',
          '--log-facility=-',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      this.proc = p;
      p.stdout?.on('data', (b: Buffer) => (this.log += b.toString()));
      p.stderr?.on('data', (b: Buffer) => (this.log += b.toString()));
      if (await this.ready()) return;
      await this.stop();
    }
    throw new Error(`dnsmasq did not start: ${this.log.slice(0, 500)}`);
  }

  private ready(): Promise<boolean> {
    const probe = async (): Promise<boolean | null> => {
      if (this.proc?.exitCode !== null) return false;
      const r = new dnsPromises.Resolver({ timeout: 200, tries: 1 });
      r.setServers([this.server]);
      try {
        await r.resolve4('readiness.probe.invalid');
        return true;
      } catch (err) {
        const code = (err as { code?: string }).code;
        return code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EREFUSED' || code === 'ESERVFAIL' ? true : null; // it answered
      }
    };
    return poll(probe, { timeoutMs: 5000, intervalMs: 50, what: 'dnsmasq' }).catch(() => false);
  }

  /** PTR queries dnsmasq logged for `arpaName` (e.g. `10.113.0.203.in-addr.arpa`). */
  queries(arpaName: string): number {
    return this.log.split('\n').filter((l) => l.includes('query[PTR]') && l.includes(` ${arpaName} `)).length;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null || p.pid === undefined) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    process.kill(p.pid, 'SIGTERM');
    const t = setTimeout(() => p.pid !== undefined && p.exitCode === null && process.kill(p.pid, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A UDP socket on 127.0.0.1 that receives DNS queries and never answers (timeout tests). */
export async function silentDnsServer(): Promise<{ server: string; received: () => number; close: () => Promise<void> }> {
  const s = createSocket('udp4');
  let n = 0;
  s.on('message', () => n++);
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const port = s.address().port;
  return { server: `127.0.0.1:${port}`, received: () => n, close: () => new Promise<void>((r) => s.close(() => r())) };
}
