/**
 * A real redis-server (Debian package `redis-server`) started by a test: loopback TCP on a free
 * port and a unix socket in a temp dir, no persistence (`--save '' --appendonly no`), stopped by
 * its PID. It can be paused (SIGSTOP: a Redis that answers nothing), killed and restarted on the
 * same port (empty: a Redis that lost its data), run with a password / ACL user, TLS, as a
 * sentinel or as a cluster node.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort } from './net.js';

export const REDIS_SERVER = '/usr/bin/redis-server';
export const REDIS_CLI = '/usr/bin/redis-cli';

/** Why Redis tests cannot run here, or null. */
export function redisSkipReason(): string | null {
  if (!existsSync(REDIS_SERVER)) return `${REDIS_SERVER} missing (apt-get install redis-server)`;
  return null;
}

export interface RedisOptions {
  /** Extra server arguments (`--requirepass x`, `--cluster-enabled yes` ...). */
  readonly args?: readonly string[];
  /** Serve TLS on the port instead of plain TCP (files: cert, key, CA). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string; readonly clientAuth?: boolean };
  /** Start as a sentinel with this config text (written to the temp dir). */
  readonly sentinelConf?: string;
  readonly port?: number;
}

export class RedisServer {
  readonly dir: string;
  readonly socket: string;
  port = 0;
  private child: ChildProcess | null = null;
  readonly log: string[] = [];

  constructor(private readonly o: RedisOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'fc-redis-'));
    this.socket = join(this.dir, 'redis.sock');
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (this.port === 0) this.port = this.o.port ?? (await freeTcpPort());
    const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--logfile', '', '--protected-mode', 'no'];
    let args: string[];
    if (this.o.sentinelConf !== undefined) {
      const conf = join(this.dir, 'sentinel.conf');
      await import('node:fs').then((fs) => fs.writeFileSync(conf, this.o.sentinelConf as string));
      args = [conf, '--sentinel', '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--daemonize', 'no', '--logfile', '', '--protected-mode', 'no'];
    } else if (this.o.tls) {
      const t = this.o.tls;
      args = [...base, '--port', '0', '--tls-port', String(this.port), '--tls-cert-file', t.cert, '--tls-key-file', t.key, '--tls-ca-cert-file', t.ca, '--tls-auth-clients', t.clientAuth ? 'yes' : 'no', '--unixsocket', this.socket];
    } else {
      args = [...base, '--port', String(this.port), '--unixsocket', this.socket];
    }
    const child = spawn(REDIS_SERVER, [...args, ...(this.o.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    // Only this run's output counts: after a restart the log still holds the last run's "Ready".
    const from = this.log.length;
    const ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`redis-server not ready within 10 s:\n${this.log.slice(from).join('')}`)), 10_000);
      const onData = (d: Buffer): void => {
        this.log.push(d.toString());
        if (/Ready to accept connections|Sentinel ID is|monitor master/.test(this.log.slice(from).join(''))) {
          clearTimeout(t);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`redis-server exited (${code}):\n${this.log.slice(from).join('')}`));
      });
    });
    await ready;
    return this;
  }

  /** SIGSTOP: the server keeps its connections and answers nothing. */
  pause(): void {
    if (this.child?.pid) process.kill(this.child.pid, 'SIGSTOP');
  }

  resume(): void {
    if (this.child?.pid) process.kill(this.child.pid, 'SIGCONT');
  }

  /** Stop the process (by its PID) and wait for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    if (c.pid) {
      try {
        process.kill(c.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      c.kill(signal);
    }
    await exited;
  }

  /** A new, empty server on the same port and socket (what a restart without persistence gives). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Run redis-cli against this server; returns stdout (trimmed). */
  cli(...args: string[]): string {
    const auth = this.o.args?.includes('--requirepass') ? ['-a', this.o.args[this.o.args.indexOf('--requirepass') + 1] as string, '--no-auth-warning'] : [];
    const r = spawnSync(REDIS_CLI, ['-s', this.socket, ...auth, ...args], { encoding: 'utf8', timeout: 10_000 });
    if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startRedis(o: RedisOptions = {}): Promise<RedisServer> {
  return new RedisServer(o).start();
}

export { freeTcpPort as freePort };
