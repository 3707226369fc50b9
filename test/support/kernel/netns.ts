/**
 * A network namespace the test creates itself, joined by a veth pair to a container's network
 * namespace: the peer end holds a TEST-NET address (203.0.113.0/24), the container end another.
 * Nothing touches the host's interfaces, routes or firewall; deleting the namespace deletes the
 * pair. Used to give a `--network none` container a non-loopback destination (the beacon).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PeerNamespace {
  readonly name: string;
  readonly peerIp: string;
  readonly containerIp: string;
  /** Move the container end into the network namespace of `pid` and configure it. */
  attach(pid: number): Promise<void>;
  /** argv prefix to run a command inside the peer namespace. */
  exec(argv: readonly string[]): string[];
  close(): Promise<void>;
}

export async function createPeerNamespace(peerIp = '203.0.113.1', containerIp = '203.0.113.7'): Promise<PeerNamespace> {
  const tag = randomBytes(3).toString('hex');
  const name = `kci-${tag}`;
  const hostSide = `kcip${tag}`;
  const ctrSide = `kcic${tag}`;
  await run('ip', ['netns', 'add', name]);
  try {
    await run('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', ctrSide]);
    await run('ip', ['link', 'set', hostSide, 'netns', name]);
    await run('ip', ['-n', name, 'addr', 'add', `${peerIp}/24`, 'dev', hostSide]);
    await run('ip', ['-n', name, 'link', 'set', hostSide, 'up']);
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (e) {
    await run('ip', ['link', 'del', ctrSide]).catch(() => undefined);
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
    throw e;
  }
  let attached = false;
  return {
    name,
    peerIp,
    containerIp,
    async attach(pid) {
      await run('ip', ['link', 'set', ctrSide, 'netns', String(pid)]);
      attached = true;
      await run('nsenter', ['-t', String(pid), '-n', 'ip', 'addr', 'add', `${containerIp}/24`, 'dev', ctrSide]);
      await run('nsenter', ['-t', String(pid), '-n', 'ip', 'link', 'set', ctrSide, 'up']);
    },
    exec(argv) {
      return ['ip', 'netns', 'exec', name, ...argv];
    },
    async close() {
      if (!attached) await run('ip', ['link', 'del', ctrSide]).catch(() => undefined);
      await run('ip', ['netns', 'del', name]).catch(() => undefined);
    },
  };
}
