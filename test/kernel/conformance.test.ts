/**
 * Conformance of the Falco model with a real Falco 0.40. The scenarios of
 * ../shared/falco-reference/recorded/ are re-run here on the real kernel (same image content, same
 * commands, same runc and Docker versions), observed with bpftrace, and turned into alerts by the
 * model with the rules the recordings were made with (the official falco_rules 3.2.0 and our pack
 * at commit d3b06a5, kept in ./fixtures). The rules that fire per event type, how often, and every
 * alert's keys and value types must match what the real Falco printed; values (pids, times, ids)
 * differ by nature. Where they disagree, the recording is right and the model is fixed.
 *
 * Skips (with the reason) without root, BTF, bpftrace, dockerd, a C compiler or ../shared.
 */
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDockerd, type Dockerd } from '../support/dockerd.js';
import { compareAlerts, readJsonl } from '../support/falco-model/conformance.js';
import { buildKworker } from '../support/kernel/helper.js';
import { importRecEmulImage } from '../support/kernel/image.js';
import { createPeerNamespace } from '../support/kernel/netns.js';
import { RECORDED_DIR, kernelSkipReason, nowNs, referenceSkipReason, runModel, startTraceSession, within, type Marks } from '../support/kernel/session.js';
import { wait } from '../support/wait.js';

const RULES_AT_RECORDING = join(import.meta.dirname, 'fixtures', 'falco-companion_rules-d3b06a5.yaml');
const IMAGE = 'local/rec-emul:1';

const skip = kernelSkipReason() ?? referenceSkipReason();

/**
 * Alerts whose count depends on a race the recording machine and this one resolve differently:
 * whether Docker's metadata (answered when `docker start` releases the container) arrives before
 * the entrypoint's exec. Their fields are still compared; only their number may differ.
 */
const ENTRYPOINT_START = 'Companion signal: privileged or host-namespace container started @ execve';
const TIMING: Readonly<Record<string, readonly string[]>> = {
  // the entrypoint is pid 1's only exec: the rule fires on it only when Docker answered first
  'plain-start': [ENTRYPOINT_START],
  'escape-attempts': [ENTRYPOINT_START],
};

/** container.* are null until Docker's answer arrives: their null-ness is the same race. */
const METADATA_FIELDS = ['container.name', 'container.image.repository', 'container.image.tag', 'container.image', 'container.privileged', 'container.type', 'container.mounts'];

interface Scenario {
  readonly recording: string;
  run(d: Dockerd): Promise<void>;
}

function sh(script: string): string[] {
  return ['sh', '-c', script];
}

const scenarios: Scenario[] = [
  {
    recording: 'plain-start',
    run: async (d) => void (await d.docker('run', '--rm', '--network', 'none', IMAGE, '/bin/true')),
  },
  {
    recording: 'shell-reads-shadow',
    run: async (d) => void (await d.docker('run', '--rm', '-t', '--network', 'none', IMAGE, ...sh('cat /etc/shadow >/dev/null; echo read'))),
  },
  {
    recording: 'bind-shell-container',
    run: async (d) =>
      void (await d.docker(
        'run',
        '--rm',
        '--network',
        'none',
        '--tmpfs',
        '/tmp:exec',
        IMAGE,
        ...sh("cp /bin/kworker /tmp/kdmtmpflush; (SIGTRIG_NAME='kworker/0:1' /tmp/kdmtmpflush arm 5621 42852 &); sleep 1; /bin/kworker magic 5621; /bin/kworker connect 42852"),
      )),
  },
  {
    recording: 'capture-container',
    run: async (d) =>
      void (await d.docker('run', '--rm', '--network', 'none', '--label', 'app.kubernetes.io/component=netdebug', IMAGE, ...sh('/bin/kworker capture 5623 & sleep 1; /bin/kworker magic 5623; sleep 1'))),
  },
  {
    recording: 'escape-attempts',
    run: async (d) =>
      void (await d
        .docker(
          'run',
          '--rm',
          '--network',
          'none',
          '-v',
          `${d.socket}:/run/docker.sock`,
          IMAGE,
          ...sh("echo '|/tmp/x' >/proc/sys/kernel/core_pattern; mount -t tmpfs none /mnt; unshare -m true; echo /tmp/x >/sys/fs/cgroup/release_agent; /bin/kworker unix /run/docker.sock; echo done"),
        )
        .catch(() => '')),
  },
  {
    recording: 'beacon-container',
    async run(d) {
      const ns = await createPeerNamespace();
      try {
        // The listener: busybox from the host (a persistent nc), not the helper from /tmp, which
        // would itself be a host "execution from tmpfs" inside this scenario's time window.
        const [cmd, ...args] = ns.exec(['/usr/bin/busybox', 'nc', '-ll', '-p', '8443', '-e', '/bin/true']);
        const server = spawn(cmd as string, args, { stdio: 'ignore' });
        const id = await d.docker('run', '-d', '--network', 'none', IMAGE, ...sh('sleep 2; /bin/kworker beaconto 203.0.113.1 8443 12 100 30'));
        const pid = Number(await d.docker('inspect', '-f', '{{.State.Pid}}', id));
        await ns.attach(pid);
        await d.docker('wait', id);
        await d.docker('rm', '-f', id);
        if (server.exitCode === null && server.pid) process.kill(server.pid, 'SIGKILL');
      } finally {
        await ns.close();
      }
    },
  },
  {
    recording: 'capture-host',
    async run() {
      const tcpdump = spawn('timeout', ['10', 'tcpdump', '-i', 'lo', '-c', '4', '-nn', 'udp', 'port', '9'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      tcpdump.stderr?.setEncoding('utf8').on('data', (x: string) => (err += x));
      for (let i = 0; i < 100 && !err.includes('listening on'); i++) await wait(50);
      const s = dgram.createSocket('udp4');
      for (let i = 0; i < 4; i++) await new Promise<void>((r) => s.send(`probe-${i}`, 9, '127.0.0.1', () => r()));
      s.close();
      await Promise.race([new Promise((r) => tcpdump.once('exit', r)), wait(10_000)]);
    },
  },
];

describe.skipIf(skip !== null)(`Falco model conformance with real Falco 0.40 recordings${skip ? ` (${skip})` : ''}`, () => {
  let dockerd: Dockerd | null = null;
  let dir = '';
  const results = new Map<string, { model: string[]; recorded: string[] }>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kci-conf-'));
    const kworker = await buildKworker(dir);
    dockerd = await startDockerd();
    await importRecEmulImage(dockerd, IMAGE, kworker);
    const session = await startTraceSession(dockerd);
    const marks = new Map<string, Marks>();
    try {
      for (const s of scenarios) {
        const from = nowNs();
        await s.run(dockerd);
        await wait(800);
        marks.set(s.recording, { from, to: nowNs() });
      }
    } finally {
      const trace = await session.stop();
      expect(trace.lost, 'events lost by the observer').toBe(0);
      const { alerts } = runModel(trace, session.watcher, RULES_AT_RECORDING);
      for (const s of scenarios) {
        results.set(s.recording, {
          model: within(alerts, marks.get(s.recording) as Marks).map((a) => a.line),
          recorded: readJsonl(readFileSync(join(RECORDED_DIR, `${s.recording}.jsonl`), 'utf8')),
        });
      }
    }
  }, 300_000);

  afterAll(async () => {
    await dockerd?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each(scenarios.map((s) => s.recording))('%s: the same rules fire with the same fields and types as on the real Falco', (name) => {
    const r = results.get(name);
    expect(r, 'scenario ran').toBeDefined();
    const { model, recorded } = r as { model: string[]; recorded: string[] };
    const timing = new Set(TIMING[name] ?? []);
    const problems = compareAlerts(model, recorded, { envDependent: new Set([...METADATA_FIELDS, 'proc.apid[3]', 'proc.aname[3]', 'proc.aname[4]', 'proc.apid[2]', 'proc.aname[2]', 'proc.pname', 'proc.ppid']) }).filter(
      (p) => ![...timing].some((t) => p.startsWith(`${t}:`)),
    );
    expect(problems, `model alerts:\n${model.map((l) => l.slice(0, 300)).join('\n')}`).toEqual([]);
    expect(model.length).toBeGreaterThan(0);
  });
});
