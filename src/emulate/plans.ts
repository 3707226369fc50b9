/**
 * How each scenario is driven: which roles start in which order, what the runner waits for in the
 * journal, which footprint checks run at which moment, and what setup is undone afterwards.
 * The roles' command lines come from the declarations (src/emulate/scenarios.ts).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { Engine } from './engine.js';
import type { Spawned } from './executor.js';
import { addressPresent, execFromTmpfs, firewallRule, journaled, packetSocket, pidFile, processName, rawInetSocket, shellOnSocket, tcpListener, unixListener, type Check, type FootprintEnv } from './footprint.js';
import { EmulateError, type JournalEntry } from './journal.js';
import { inNet, sh, type NetRef } from './net.js';
import { DEFAULTS, type RunCtx, type RunOptions } from './context.js';

export interface PrepareEnv {
  readonly run: string;
  readonly opts: RunOptions;
  readonly socket: string;
  note(text: string): void;
  cleanup(what: string, fn: () => Promise<unknown> | unknown): void;
  progress(text: string): void;
}

export interface Plan {
  /** It changes the helpers' network namespace (addresses, veth pairs, firewall). */
  readonly changesNet: boolean;
  /** Seconds the run needs with these options, when they can stretch it (the default --timeout is at least this). */
  estimateS?(opts: RunOptions): number;
  /** Before the executor exists (docker-registry scenarios): the image to run, and facts for run(). */
  prepare?(env: PrepareEnv): Promise<{ readonly image: string; readonly facts: Readonly<Record<string, string>> }>;
  run(ctx: RunCtx): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const randInt = (lo: number, hi: number): number => lo + Math.floor(Math.random() * (hi - lo + 1));
const num = (e: JournalEntry, k: string): number => (typeof e[k] === 'number' ? (e[k] as number) : NaN);
const pass = (name: string, seen: string): Check => ({ name, ok: true, seen });
const fail = (name: string, seen: string): Check => ({ name, ok: false, seen });

function footIn(ctx: RunCtx, net: NetRef): FootprintEnv {
  return { ...ctx.foot, net };
}

function which(bin: string): string | null {
  for (const d of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/sbin', '/usr/local/bin']) if (existsSync(join(d, bin))) return join(d, bin);
  return null;
}

/** The iptables binary the helper runs (inside the container for --docker). */
function iptablesPath(ctx: RunCtx, name: 'iptables' | 'iptables-restore'): string {
  const explicit = ctx.opts.iptables;
  if (explicit) return name === 'iptables' ? explicit : join(dirname(explicit), name);
  if (ctx.exec.kind === 'docker') return `/usr/sbin/${name}`;
  const p = which(name);
  if (!p) throw new EmulateError('E_EMULATE_PREFLIGHT', `${name} not found (Debian: iptables), or pass --iptables PATH`);
  return p;
}

/** An iptables-family binary the runner runs (footprint, cleanup); null when the node has none. */
function hostTool(name: string): string | null {
  return which(name);
}

/** The drop directory in the exec-capable tmpfs, created now, removed afterwards. */
function prepareDrop(ctx: RunCtx): void {
  const dir = ctx.vars['tmpfs'] as string;
  const outside = ctx.rootPath(dir);
  mkdirSync(outside, { recursive: true, mode: 0o755 });
  ctx.cleanup(`remove ${dir}`, () => rmSync(outside, { recursive: true, force: true }));
  const pidfile = `/var/run/haldrund-${ctx.run}.pid`;
  ctx.cleanup(`remove ${pidfile}`, () => rmSync(ctx.rootPath(pidfile), { force: true }));
}

async function addLoAddress(ctx: RunCtx, ref: NetRef, addr: string): Promise<void> {
  await ctx.netRun(ref, ['ip', 'link', 'set', 'lo', 'up'], 'bring lo up');
  await ctx.netRun(ref, ['ip', 'addr', 'add', `${addr}/32`, 'dev', 'lo'], `add ${addr} to lo`);
  if (ref.kind !== 'named') ctx.cleanup(`remove ${addr} from lo`, () => sh(inNet(ref, ['ip', 'addr', 'del', `${addr}/32`, 'dev', 'lo'])));
}

/** The run's own namespace on a host; the helpers' (container's) namespace otherwise. */
async function targetNet(ctx: RunCtx): Promise<NetRef> {
  const n = ctx.hostRun ? await ctx.newNetns('t') : ctx.exec.net;
  ctx.net = { target: n, peer: n };
  return n;
}

/** A veth pair: end a in the target namespace, end b in the peer (a second namespace on a host). */
async function vethPair(ctx: RunCtx, addrA: string, addrB: string): Promise<{ a: string; b: string }> {
  const t = ctx.hostRun ? await ctx.newNetns('t') : ctx.exec.net;
  const p = ctx.hostRun ? await ctx.newNetns('p') : t;
  const id = ctx.run.slice(-6);
  const a = `fc${id}a`;
  const b = `fc${id}b`;
  await ctx.netRun(t, ['ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b], 'create a veth pair');
  if (t.kind !== 'named') ctx.cleanup(`delete veth pair ${a}/${b}`, () => sh(inNet(t, ['ip', 'link', 'del', a])));
  if (p.kind === 'named' && p !== t) await ctx.netRun(t, ['ip', 'link', 'set', b, 'netns', p.name], 'move the peer end');
  await ctx.netRun(t, ['ip', 'addr', 'add', addrA, 'dev', a], `address ${addrA}`);
  await ctx.netRun(p, ['ip', 'addr', 'add', addrB, 'dev', b], `address ${addrB}`);
  await ctx.netRun(t, ['ip', 'link', 'set', 'lo', 'up'], 'lo up');
  await ctx.netRun(t, ['ip', 'link', 'set', a, 'up'], `${a} up`);
  await ctx.netRun(p, ['ip', 'link', 'set', b, 'up'], `${b} up`);
  ctx.net = { target: t, peer: p };
  return { a, b };
}

function entries(ctx: RunCtx, role: string, step: string): JournalEntry[] {
  ctx.journal.poll();
  return ctx.journal.entries.filter((e) => e.role === role && e.step === step);
}

/** The implant's process, pid file, executable and armed socket. */
async function implantChecks(ctx: RunCtx, armed: JournalEntry, kind: 'packet' | 'inet-udp' | 'inet-icmp'): Promise<number> {
  const pid = ctx.pidOf(armed);
  const ino = num(armed, 'ino');
  await ctx.check(processName(ctx.foot, pid, 'kworker/0:1'));
  await ctx.check(execFromTmpfs(ctx.foot, pid));
  const pidfile = `/var/run/haldrund-${ctx.run}.pid`;
  await ctx.check(pidFile(ctx.rootPath(pidfile), pidfile, pid, armed.pid));
  const attach = entries(ctx, armed.role, 'attach_filter').find((e) => num(e, 'ino') === ino);
  if (kind === 'packet') await ctx.check(packetSocket(ctx.foot, pid, ino, attach ? num(attach, 'insns') : null));
  else await ctx.check(rawInetSocket(ctx.foot, pid, ino, kind === 'inet-udp' ? 17 : 1, attach ? { ret: attach.ret, insns: attach['insns'] } : undefined));
  return pid;
}

/** Start the implant (its trigger port chosen) and check it once armed. */
async function armImplant(ctx: RunCtx, kind: 'packet' | 'inet-udp' | 'inet-icmp'): Promise<{ implant: Spawned; pid: number }> {
  ctx.vars['trigger_port'] ??= String(randInt(5000, 5999));
  const implant = await ctx.role('implant');
  const armed = await ctx.step('implant', 'armed');
  return { implant, pid: await implantChecks(ctx, armed, kind) };
}

/** The implant exec'd a shell: wait for it (same pid), then check its socket stdio. */
async function shellCheck(ctx: RunCtx, pid: number): Promise<void> {
  const end = Date.now() + 3000;
  while (Date.now() < end && ctx.foot.proc.comm(pid) !== 'sh') await sleep(20);
  await ctx.check(shellOnSocket(ctx.foot, pid));
}

function banner(e: JournalEntry): Check {
  return e['matched'] === true ? pass('shell answered over the socket', `received "${String(e['received']).trim()}"`) : fail('shell answered over the socket', `received "${String(e['received'] ?? '')}"`);
}

async function finish(ctx: RunCtx, release: string, ...roles: Spawned[]): Promise<void> {
  ctx.release(release);
  for (const r of roles) await ctx.exited(r, 10_000);
}

// ---------------------------------------------------------------------------------------------

const bindShell = (kind: 'packet' | 'inet-icmp'): Plan => ({
  changesNet: false,
  estimateS: (o) => (kind === 'inet-icmp' ? (o.delayMs ?? DEFAULTS.delayMs) / 1000 + 30 : 0),
  async run(ctx) {
    prepareDrop(ctx);
    const { implant, pid } = await armImplant(ctx, kind);
    if (kind === 'inet-icmp') ctx.progress(`trigger in ${ctx.vars['delay_ms']} ms (--delay)`);
    await ctx.role('trigger');
    await ctx.step('implant', 'trigger', Number(ctx.vars['delay_ms']) + ctx.waitS * 1000);
    const listening = await ctx.step('implant', 'listening');
    ctx.vars['port'] = String(num(listening, 'port'));
    await ctx.check(tcpListener(ctx.foot, pid, num(listening, 'port'), num(listening, 'ino')));
    const client = await ctx.role('client');
    await ctx.check(banner(await ctx.step('client', 'received')));
    await shellCheck(ctx, pid);
    await finish(ctx, 'client', client, implant);
  },
});

const reverseShell: Plan = {
  changesNet: true,
  async run(ctx) {
    prepareDrop(ctx);
    const net = await targetNet(ctx);
    await addLoAddress(ctx, net, '203.0.113.66');
    Object.assign(ctx.vars, { peer: '203.0.113.66', port: '4444' });
    const listener = await ctx.role('listener');
    await ctx.step('listener', 'listening');
    const { implant, pid } = await armImplant(ctx, 'inet-udp');
    await ctx.check(journaled('eBPF socket-filter load attempt', entries(ctx, 'implant', 'bpf_prog_load')[0]));
    await ctx.role('trigger');
    await ctx.step('implant', 'trigger');
    await ctx.check(journaled('reverse connect', await ctx.step('implant', 'connected'), 'ok'));
    await ctx.check(banner(await ctx.step('listener', 'received')));
    await shellCheck(ctx, pid);
    await finish(ctx, 'listener', listener, implant);
  },
};

const portKnock: Plan = {
  changesNet: true,
  async run(ctx) {
    await vethPair(ctx, '198.51.100.1/24', '198.51.100.2/24');
    const port = '8022';
    Object.assign(ctx.vars, { target: '198.51.100.1', peer: '198.51.100.2', ports: '7001,8002,9003', port, iptables: iptablesPath(ctx, 'iptables') });
    const rule = `-A INPUT -s 198.51.100.2/32 -p tcp -m tcp --dport ${port} -j ACCEPT`;
    const ipt = ctx.exec.kind === 'docker' ? hostTool('iptables') : (ctx.vars['iptables'] as string);
    if (ctx.net.target.kind !== 'named' && ipt) {
      const t = ctx.net.target;
      ctx.cleanup('remove the knock ACCEPT rule if still there', async () => {
        const args = ['-s', '198.51.100.2/32', '-p', 'tcp', '--dport', port, '-j', 'ACCEPT'];
        if ((await sh(inNet(t, [ipt, '-C', 'INPUT', ...args]))).code === 0) await sh(inNet(t, [ipt, '-D', 'INPUT', ...args]));
      });
    }
    const knockd = await ctx.role('knockd');
    const armed = await ctx.step('knockd', 'armed');
    const pid = ctx.pidOf(armed);
    const attach = entries(ctx, 'knockd', 'attach_filter')[0];
    await ctx.check(rawInetSocket(ctx.foot, pid, num(armed, 'ino'), 6, attach ? { ret: attach.ret, insns: attach['insns'] } : undefined));
    await ctx.role('knocker');
    await ctx.check(journaled('iptables -I (single-source ACCEPT)', await ctx.step('knockd', 'firewall_open'), 'ok'));
    await ctx.step('knockd', 'listening');
    await ctx.check(tcpListener(footIn(ctx, ctx.net.target), pid, Number(port)));
    const tEnv = footIn(ctx, ctx.net.target);
    await ctx.check(ipt ? firewallRule(tEnv, ipt, rule, true, 'firewall opened for one source') : { name: 'firewall opened for one source', ok: null, seen: 'no iptables on the node to list the container’s rules' });
    const client = await ctx.role('client');
    const acc = await ctx.step('knockd', 'accepted');
    await ctx.check(String(acc['peer']).startsWith('198.51.100.2:') ? pass('accepted from the knocking source', `peer ${String(acc['peer'])}`) : fail('accepted from the knocking source', `peer ${String(acc['peer'])}`));
    ctx.release('client');
    await ctx.check(journaled('iptables -D (rule removed)', await ctx.step('knockd', 'firewall_close'), 'ok'));
    await ctx.check(ipt ? firewallRule(tEnv, ipt, rule, false, 'firewall closed again') : { name: 'firewall closed again', ok: null, seen: 'no iptables on the node to list the container’s rules' });
    await finish(ctx, 'client', client, knockd);
    await ctx.check(knockd.exitCode() === 0 ? pass('knockd finished', 'exit 0') : fail('knockd finished', `exit ${String(knockd.exitCode())}`));
  },
};

/** Count, interval and jitter of a beacon run. */
function beaconCadence(o: RunOptions): { count: number; interval: number; jitter: number } {
  const d = o.fast ? DEFAULTS.beaconFast : DEFAULTS.beacon;
  return { count: o.count ?? d.count, interval: o.intervalMs ?? d.intervalMs, jitter: o.jitterPct ?? d.jitterPct };
}

/** Rounds and interval of a scrape run. */
function scrapeCadence(o: RunOptions): { rounds: number; interval: number } {
  const d = o.fast ? DEFAULTS.scrapeFast : DEFAULTS.scrape;
  return { rounds: o.count ?? d.count, interval: o.intervalMs ?? d.intervalMs };
}

const beacon: Plan = {
  changesNet: true,
  estimateS(o) {
    const c = beaconCadence(o);
    return (c.count * c.interval * (1 + c.jitter / 100)) / 1000 + 30;
  },
  async run(ctx) {
    const net = await targetNet(ctx);
    await addLoAddress(ctx, net, '203.0.113.1');
    const { count, interval, jitter } = beaconCadence(ctx.opts);
    Object.assign(ctx.vars, { peer: '203.0.113.1', count: String(count), interval_ms: String(interval), jitter: String(jitter) });
    const listener = await ctx.role('listener');
    const l = await ctx.step('listener', 'listening');
    await ctx.check(addressPresent(footIn(ctx, net), '203.0.113.1'));
    await ctx.check(tcpListener(footIn(ctx, net), ctx.pidOf(l), 8443));
    ctx.progress(`beacon: ${count} connects every ${interval} ms ± ${jitter} %`);
    const b = await ctx.role('beacon');
    await ctx.exited(b, count * interval * (1 + jitter / 100) + 15_000);
    const conns = entries(ctx, 'beacon', 'beacon');
    const okN = conns.filter((e) => e.ret >= 0).length;
    const gaps = conns.slice(1).map((e, i) => (e.t - (conns[i] as JournalEntry).t) / 1e9);
    const span = gaps.length ? `, intervals ${Math.min(...gaps).toFixed(2)}–${Math.max(...gaps).toFixed(2)} s` : '';
    await ctx.check(okN === count ? pass('periodic connects', `${okN}/${count} connects to 203.0.113.1:8443 succeeded${span}`) : fail('periodic connects', `${okN}/${count} connects succeeded${span}`));
    ctx.release('listener');
    const served = await ctx.step('listener', 'served');
    await ctx.check(num(served, 'accepted') === count ? pass('listener accepted every beacon', `${num(served, 'accepted')} accepted`) : fail('listener accepted every beacon', `${num(served, 'accepted')} of ${count}`));
    await ctx.exited(listener, 5000);
  },
};

/** Directories created for the token, deepest first, removed only when empty. */
function makeTokenFile(ctx: RunCtx, path: string): void {
  const created: string[] = [];
  let d = dirname(path);
  while (!existsSync(ctx.rootPath(d)) && d !== '/') {
    created.unshift(d);
    d = dirname(d);
  }
  for (const c of created) mkdirSync(ctx.rootPath(c), { mode: 0o755 });
  writeFileSync(ctx.rootPath(path), `fc-emulate-token-${ctx.run}\n`, { mode: 0o600 });
  ctx.cleanup(`remove ${path}`, () => {
    rmSync(ctx.rootPath(path), { force: true });
    for (const c of created.reverse()) {
      try {
        rmdirSync(ctx.rootPath(c));
      } catch {
        // not empty (someone else's files): keep
      }
    }
  });
}

const escape: Plan = {
  changesNet: false,
  async run(ctx) {
    const api = ctx.opts.apiServer ?? (process.env['KUBERNETES_SERVICE_HOST'] ? `${process.env['KUBERNETES_SERVICE_HOST']}:${process.env['KUBERNETES_SERVICE_PORT'] ?? '443'}` : '127.0.0.1:6443');
    const sock = ctx.hostRun ? join(ctx.exec.inside.runDir, 'docker.sock') : (ctx.opts.runtimeSocket ?? DEFAULTS.runtimeSocket);
    if (ctx.hostRun) ctx.note(`host run: the runtime-socket connect goes to ${sock}, never to the node’s own socket`);
    const token = `/var/run/secrets/tokens/fc-emulate-${ctx.run}-token`;
    const cg = `/tmp/cgrp-${ctx.run}`;
    Object.assign(ctx.vars, { api, runtime_socket: sock, token, cgroup_dir: cg });
    makeTokenFile(ctx, token);
    ctx.cleanup(`remove ${cg}`, () => rmSync(ctx.rootPath(cg), { recursive: true, force: true }));
    const server = await ctx.role('runtime-api');
    const st = await ctx.journal.waitFor('runtime-api ready', (e) => e.role === 'runtime-api' && (e.step === 'listening' || e.step === 'exists' || typeof e.fatal === 'string'), { timeoutMs: ctx.waitS * 1000, signal: ctx.signal });
    if (st.fatal) throw new EmulateError('E_EMULATE_STEP', `runtime-api: ${st.fatal}`);
    if (st.step === 'listening') await ctx.check(unixListener(ctx.foot, ctx.pidOf(st), sock));
    else ctx.note(`${sock} exists: the attacker connects to it (nothing is sent)`);
    const attacker = await ctx.role('attacker');
    await ctx.exited(attacker);
    const one = (step: string): JournalEntry | undefined => entries(ctx, 'attacker', step)[0];
    for (const u of entries(ctx, 'attacker', 'unshare')) await ctx.check(journaled(`unshare attempt`, u));
    await ctx.check(journaled('cgroup mount attempt', one('mount_cgroup')));
    for (const w of entries(ctx, 'attacker', 'release_agent_write')) await ctx.check(journaled('release_agent / notify_on_release write', w, 'ok'));
    const ra = ctx.rootPath(join(cg, 'release_agent'));
    await ctx.check(existsSync(ra) ? pass('release_agent file written', `${join(cg, 'release_agent')}: ${readFileSync(ra, 'utf8').trim()}`) : fail('release_agent file written', `${join(cg, 'release_agent')} missing`));
    await ctx.check(journaled('core_pattern open for writing', one('core_pattern_write')));
    await ctx.check(journaled('sysrq-trigger open for writing', one('sysrq_write')));
    await ctx.check(journaled('/proc/sys/kernel/modprobe open for writing', one('proc_sys_write')));
    await ctx.check(journaled('kernel module load attempt', one('kernel_module_load')));
    await ctx.check(journaled('runtime socket connect', one('runtime_socket_connect'), 'ok'));
    await ctx.check(journaled('service-account token read', one('token_read'), 'ok'));
    await ctx.check(journaled('API-server connect attempt', one('api_connect')));
    await finish(ctx, 'runtime-api', server);
  },
};

const unexpectedImage: Plan = {
  changesNet: true,
  async prepare(env) {
    const base = env.opts.baseImage ?? env.opts.docker?.image;
    if (!base) throw new EmulateError('E_EMULATE_PREFLIGHT', 'unexpected-image needs a base image: --image IMAGE (any local image with /bin/sh)');
    const registry = env.opts.registry ?? DEFAULTS.registry;
    const engine = new Engine(env.socket);
    await engine.ping();
    const repo = `${registry}/fc-emulate/app`;
    const tag = '1.0';
    const digest = async (): Promise<string> => ((await engine.imageInspect(`${repo}:${tag}`)).RepoDigests ?? []).find((d) => d.startsWith(`${repo}@`))?.split('@')[1] ?? '?';
    const digests: string[] = [];
    env.cleanup(`remove image ${repo}:${tag} and its digests`, async () => {
      await engine.removeImage(`${repo}:${tag}`);
      for (const d of digests) if (d.startsWith('sha256:')) await engine.removeImage(`${repo}@${d}`);
    });
    env.progress(`tag ${base} as ${repo}:${tag} and push it`);
    await engine.tag(base, repo, tag);
    await engine.push(repo, tag);
    const before = await digest();
    digests.push(before);
    const tmp = await engine.createContainer(`fc-emulate-${env.run}-build`, { Image: `${repo}:${tag}`, Entrypoint: ['/bin/sh'], Cmd: ['-c', 'true'], HostConfig: { NetworkMode: 'none' } });
    let id: string;
    try {
      await engine.putFile(tmp, '/etc', `fc-emulate-${env.run}`, Buffer.from(`new layer of run ${env.run}\n`));
      id = await engine.commit(tmp, repo, tag, `fc-emulate ${env.run}: a new digest behind ${tag}`);
    } finally {
      await engine.remove(tmp);
    }
    env.progress(`push the new digest behind ${repo}:${tag}, then pull it back`);
    await engine.push(repo, tag);
    const after = await digest();
    digests.push(after);
    await engine.removeImage(`${repo}:${tag}`);
    await engine.pull(repo, tag);
    env.note(`${repo}:${tag}: ${before} -> ${after} (the registry keeps both manifests)`);
    return { image: `${repo}:${tag}`, facts: { repo: `${repo}:${tag}`, before, after, id } };
  },
  async run(ctx) {
    const facts = ctx.prepared;
    const net = ctx.exec.net;
    await addLoAddress(ctx, net, '203.0.113.1');
    Object.assign(ctx.vars, { peer: '203.0.113.1' });
    const [before = '?', after = '?'] = [facts['before'], facts['after']];
    await ctx.check(before !== after && before !== '?' ? pass('new digest behind the tag', `${facts['repo'] ?? ''}: ${before.slice(0, 19)}… -> ${after.slice(0, 19)}… (container image ${(facts['id'] ?? '').slice(7, 19)})`) : fail('new digest behind the tag', `${before} -> ${after}`));
    const sink = await ctx.role('sink');
    await ctx.step('sink', 'listening');
    const shell = await ctx.exec.spawn({ role: 'shell', exe: '/bin/sh', args: ['-c', 'echo emulated-shell'], tty: true });
    const code = await ctx.exited(shell, 10_000);
    await ctx.check(code === 0 ? pass('interactive shell in the new container', `sh -c "echo emulated-shell" with a terminal exited 0 (pid ${shell.pid})`) : fail('interactive shell in the new container', `exit ${String(code)}`));
    const egress = await ctx.role('egress');
    await ctx.exited(egress, 10_000);
    await ctx.check(journaled('egress connect', entries(ctx, 'egress', 'beacon')[0], 'ok'));
    await finish(ctx, 'sink', sink);
  },
};

const captureNetdebug: Plan = {
  changesNet: false,
  async run(ctx) {
    ctx.vars['port'] = String(randInt(6000, 6999));
    const cap = await ctx.role('capture');
    const armed = await ctx.step('capture', 'armed');
    const pid = ctx.pidOf(armed);
    const attaches = entries(ctx, 'capture', 'attach_filter');
    await ctx.check(attaches.length === 2 && attaches.every((a) => a.ret === 0) ? pass('filter attached twice (libpcap)', attaches.map((a) => `${String(a['insns'])} instructions`).join(', then ')) : fail('filter attached twice (libpcap)', `${attaches.length} attach(es)`));
    await ctx.check(packetSocket(ctx.foot, pid, num(armed, 'ino'), attaches[1] ? num(attaches[1], 'insns') : null));
    await ctx.check(ctx.foot.proc.comm(pid) === 'tcpdump' ? pass('capture process name', `/proc/${pid}/comm = tcpdump, exe ${ctx.foot.proc.exe(pid) ?? '?'}`) : fail('capture process name', `/proc/${pid}/comm = ${ctx.foot.proc.comm(pid) ?? '?'}`));
    await ctx.role('sender');
    await ctx.check(journaled('packet captured', await ctx.step('capture', 'captured'), 'ok'));
    await ctx.exited(cap, 10_000);
  },
};

const dhcpClient: Plan = {
  changesNet: true,
  async run(ctx) {
    const { a } = await vethPair(ctx, '192.0.2.1/24', '192.0.2.2/24');
    ctx.vars['ifname'] = a;
    const dh = await ctx.role('dhclient');
    const armed = await ctx.step('dhclient', 'armed');
    const pid = ctx.pidOf(armed);
    const attach = entries(ctx, 'dhclient', 'attach_filter')[0];
    await ctx.check(packetSocket(footIn(ctx, ctx.net.target), pid, num(armed, 'ino'), attach ? num(attach, 'insns') : null));
    await ctx.check(ctx.foot.proc.comm(pid) === 'dhclient' ? pass('DHCP client process name', `/proc/${pid}/comm = dhclient`) : fail('DHCP client process name', `/proc/${pid}/comm = ${ctx.foot.proc.comm(pid) ?? '?'}`));
    await ctx.check(journaled('DHCPDISCOVER sent on the veth', await ctx.step('dhclient', 'discover'), 'ok'));
    await ctx.exited(dh, 10_000);
  },
};

const KUBE_RULES = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-FCEMULATE00000000 - [0:0]
:KUBE-SEP-FCEMULATE00000001 - [0:0]
-A KUBE-SERVICES -d 198.51.100.10/32 -p tcp -m comment --comment "fc-emulate/demo:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-FCEMULATE00000000
-A KUBE-SVC-FCEMULATE00000000 -m comment --comment "fc-emulate/demo:http -> 198.51.100.20:8080" -j KUBE-SEP-FCEMULATE00000001
-A KUBE-SEP-FCEMULATE00000001 -p tcp -m comment --comment fc-emulate/demo:http -m tcp -j DNAT --to-destination 198.51.100.20:8080
COMMIT
`;
const KUBE_CHAINS = ['KUBE-SERVICES', 'KUBE-SVC-FCEMULATE00000000', 'KUBE-SEP-FCEMULATE00000001'];

const kubeProxySync: Plan = {
  changesNet: true,
  async run(ctx) {
    const net = await targetNet(ctx);
    const rules = join(ctx.exec.outside.runDir, 'kube-proxy.rules');
    writeFileSync(rules, KUBE_RULES);
    Object.assign(ctx.vars, { rules: join(ctx.exec.inside.runDir, 'kube-proxy.rules'), iptables: iptablesPath(ctx, 'iptables-restore') });
    const ipt = ctx.exec.kind === 'docker' ? hostTool('iptables') : iptablesPath(ctx, 'iptables');
    if (net.kind !== 'named' && ipt) {
      ctx.cleanup('remove the KUBE-* chains', async () => {
        for (const c of KUBE_CHAINS) await sh(inNet(net, [ipt, '-t', 'nat', '-F', c]));
        for (const c of KUBE_CHAINS) await sh(inNet(net, [ipt, '-t', 'nat', '-X', c]));
      });
    }
    const kp = await ctx.role('kube-proxy');
    await ctx.exited(kp, 20_000);
    const syncs = entries(ctx, 'kube-proxy', 'firewall_sync');
    await ctx.check(syncs.length === 2 && syncs.every((s) => s.ret === 0) ? pass('iptables-restore rounds', `${syncs.length} × ${String(syncs[0]?.args ?? '')} exited 0 (parent: kube-proxy)`) : fail('iptables-restore rounds', syncs.map((s) => `exit ${String(s['exit'])}`).join(', ') || 'none ran'));
    if (ipt) {
      const r = await sh(inNet(net, [ipt, '-t', 'nat', '-S', 'KUBE-SERVICES']));
      const line = r.stdout.split('\n').find((l) => l.startsWith('-A KUBE-SERVICES'));
      await ctx.check(line ? pass('KUBE-SERVICES programmed in the run’s namespace', line.trim().slice(0, 160)) : fail('KUBE-SERVICES programmed in the run’s namespace', r.stderr.trim().slice(0, 160) || 'no rule'));
    } else {
      await ctx.check({ name: 'KUBE-SERVICES programmed in the run’s namespace', ok: null, seen: 'no iptables on the node to list the container’s rules' });
    }
  },
};

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(p));
    });
  });
}

const metricsScraper: Plan = {
  changesNet: false,
  estimateS(o) {
    const c = scrapeCadence(o);
    return (c.rounds * c.interval) / 1000 + 30;
  },
  async run(ctx) {
    const n = 12;
    const ports: number[] = [];
    if (ctx.exec.kind === 'local') for (let i = 0; i < n; i++) ports.push(await freePort());
    else for (let i = 0, b = randInt(20000, 29000); i < n; i++) ports.push(b + i);
    const { rounds, interval } = scrapeCadence(ctx.opts);
    Object.assign(ctx.vars, { ports: ports.join(','), count: String(rounds), interval_ms: String(interval) });
    const targets = await ctx.role('targets');
    await ctx.journal.waitFor('12 scrape targets', () => entries(ctx, 'targets', 'listening').length === n, { timeoutMs: ctx.waitS * 1000, signal: ctx.signal, role: 'targets' });
    const l = entries(ctx, 'targets', 'listening')[0] as JournalEntry;
    const tpid = ctx.pidOf(l);
    const listening = (ctx.foot.proc.inet(tpid, 'tcp') ?? []).filter((r) => r.state === '0A' && ports.includes(r.localPort));
    await ctx.check(listening.length === n ? pass('scrape targets listening', `${n} LISTEN sockets of pid ${tpid} on 127.0.0.1 (${ports[0]}…${ports[n - 1]})`) : fail('scrape targets listening', `${listening.length} of ${n}`));
    ctx.progress(`scraper: ${rounds} rounds every ${interval} ms over ${n} targets`);
    const sc = await ctx.role('scraper');
    await ctx.exited(sc, rounds * interval + 20_000);
    const rs = entries(ctx, 'scraper', 'scrape_round');
    await ctx.check(rs.length === rounds && rs.every((r) => r['answered'] === n) ? pass('fixed-cadence scrape rounds', `${rs.length} rounds, ${n}/${n} targets answered each`) : fail('fixed-cadence scrape rounds', rs.map((r) => `${String(r['answered'])}/${n}`).join(' ') || 'none'));
    await finish(ctx, 'targets', targets);
  },
};

export const PLANS: Readonly<Record<string, Plan>> = {
  'socket-filter-bind': bindShell('packet'),
  'socket-filter-reverse': reverseShell,
  'socket-filter-host': bindShell('inet-icmp'),
  'port-knock': portKnock,
  beacon,
  'escape-attempts': escape,
  'unexpected-image': unexpectedImage,
  'capture-netdebug': captureNetdebug,
  'dhcp-client': dhcpClient,
  'kube-proxy-sync': kubeProxySync,
  'metrics-scraper': metricsScraper,
};
