/**
 * Traffic signaling via socket filters (T1205.002, BPFDoor-like), on hosts and in containers: a
 * process **arms** a raw/packet socket and/or attaches a filter (SO_ATTACH_FILTER / SO_ATTACH_BPF /
 * BPF_PROG_LOAD); the arm is remembered for `window` (days: implants wait for their magic packet
 * that long); a **trigger** from the same process lineage (pid / ppid / session / ancestors)
 * completes the chain: a new listener, an accept from a never-seen peer, an outbound connect to a
 * never-seen destination, a shell with socket stdio, or a firewall tool run.
 *
 * Packet and raw sockets are the job of capture tools, DHCP / ARP / VRRP agents, ping and IDS
 * (`known_packet_binaries`, ATT&CK's AFPacketAllowList): theirs are not arms, unless the binary
 * runs from tmpfs / memfd. Everything else is remembered.
 *
 * Escalation factors the signals already carry, split by how rare they are for legitimate software:
 * - strong: the executable runs from tmpfs, a memfd or a deleted file (`tmpfs_exe`); the process
 *   (or its lineage) took a kernel-thread or system-daemon name with prctl (`disguised_name`);
 * - weak: a pid/lock file under /var/run by the lineage (`pidfile`), a packet/raw socket from a
 *   binary that is not a known capture / network tool (`unusual_socket`);
 * - chain only: any other rename, or a process name that is not its executable's (`masquerade`:
 *   busybox applets, setproctitle, a capture agent calling itself tcpdump).
 * Arming **alone** is a detection when strong factors count 2 points and weak ones 1 and the sum
 * reaches 2 (Warning; 3 or more: Error). Needs proc.pid (the companion rules print it). A trigger then upgrades it to the chain at Critical; a
 * chain without those factors is scored from `base_score` + `escalation_step` per escalation.
 *
 * The official "Packet socket created in container" fires for the same socket() 16 µs before ours
 * on Falco 0.40 (enter event) and prints no proc.pid: within {@link FOLD_NS} of a companion signal of
 * the same container and executable it is folded into it (no second, pid-less arm).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock):
 * arms per (scope, pid), lineage context per scope, peers and ports seen per scope: all bounded,
 * evictions counted (arms: least recently armed first, arms without escalation factors before
 * those with). Kept signals are slim copies (`retain`).
 */
import { bool, defaults, duration, int, list, num, obj, str, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal, type SignalKind } from '../types.js';
import {
  basename,
  BoundedMap,
  byTime,
  chainThresholds,
  compact,
  inPortRange,
  isDisguiseName,
  isMasquerade,
  keyString,
  laterNs,
  msToNs,
  priorityFromScore,
  procLabel,
  retain,
  round3,
  sameLineage,
  scopeOf,
  unusualExeLocation,
  whereOf,
} from './kit.js';
import { DEST } from '../../enrich/keys.js';
import type { Priority } from '../../alert.js';

export const SOCKET_FILTER_DETECTOR_ID = 'socket_filter';
export const SOCKET_FILTER_MITRE = ['T1205.002', 'T1205', 'mitre_defense_evasion', 'mitre_persistence', 'mitre_command_and_control'] as const;
export const SOCKET_FILTER_ALONE_RULE = 'Traffic signaling: socket filter armed by a suspicious process';

/** Programs whose job is packet or raw sockets (captures, DHCP, ARP/VRRP/LLDP, ping and tracers, IDS). */
const KNOWN_PACKET_BINARIES = [
  'tcpdump', 'tshark', 'dumpcap', 'wireshark', 'ngrep', 'termshark', 'tcpflow', 'tcpreplay', 'netsniff-ng', 'iftop', 'nethogs', 'bmon', 'vnstatd', 'pktstat',
  'dhclient', 'dhcpcd', 'udhcpc', 'dhcpd', 'dnsmasq', 'NetworkManager', 'systemd-network', 'systemd-networkd', 'wpa_supplicant', 'hostapd', 'pppd',
  'keepalived', 'lldpd', 'lldpad', 'ladvd', 'arping', 'arpwatch', 'kube-vip', 'speaker', 'bird', 'bird6', 'ospfd', 'zebra', 'vrrpd', 'igmpproxy', 'pimd',
  'ping', 'ping6', 'fping', 'traceroute', 'traceroute6', 'tracepath', 'mtr', 'mtr-packet', 'hping3', 'nping', 'nmap', 'masscan', 'zmap', 'blackbox_exporter', 'smokeping',
  'suricata', 'snort', 'zeek', 'bro', 'p0f', 'knockd', 'cilium-agent', 'tetragon', 'falco', 'pixie', 'px-pem', 'system-probe', 'datadog-agent', 'ebpf_exporter', 'node_exporter',
];

export const socketFilterSettingsSpec = obj('Traffic signaling (T1205.002): raw/packet socket or filter armed, then a listener, new peer, shell on a socket or firewall change from the same process lineage; arming alone when the process is disguised.', {
  enabled: bool('Run this detector.', true),
  window: duration('How long an armed process is remembered for its trigger, from its last arming (event time). Implants wait for their magic packet for days.', 7 * 86_400_000, { min: 1000 }),
  include_host: bool('Also watch host processes (container.id host): host implants and the DHCP clients / captures the allowlists cover.', true),
  bind_shell_port_min: int('Lowest port of the suspicious listener range (BPFDoor: 42391).', 42391, { min: 0, max: 65535 }),
  bind_shell_port_max: int('Highest port of the suspicious listener range (BPFDoor: 43390).', 43390, { min: 0, max: 65535 }),
  base_score: num('Score of an armed socket followed by one trigger.', 0.65, { min: 0, max: 1 }),
  escalation_step: num('Score added per escalation (tmpfs exe, disguise or masquerade, pid file, unusual socket, port range, filter + raw socket, extra trigger kinds).', 0.1, { min: 0, max: 1 }),
  critical_score: num('Score at or above which the priority is Critical.', 0.85, { min: 0, max: 1 }),
  error_score: num('Score at or above which the priority is Error.', 0.7, { min: 0, max: 1 }),
  known_packet_binaries: list('Executables (basename) whose packet/raw sockets are their job: not tracked as arms when run from where they are installed (not tmpfs / memfd); a socket from anything else is the weak `unusual_socket` factor.', str('Name.', ''), KNOWN_PACKET_BINARIES),
  max_arms: int('Armed processes tracked (least recently armed evicted first, counted).', 5000, { min: 1 }),
  max_containers: int('Containers (and the host) whose context (peers, ports, lineage signals) is tracked.', 5000, { min: 1 }),
  max_peers: int('Peers and ports remembered per container.', 512, { min: 1 }),
  max_total_peers: int('Peers and ports remembered across all containers (≈ 60 B each); beyond it the least recently active containers forget theirs (counted).', 100_000, { min: 1 }),
});
export type SocketFilterSettings = Infer<typeof socketFilterSettingsSpec>;
export const SOCKET_FILTER_DEFAULTS = defaults(socketFilterSettingsSpec) as unknown as SocketFilterSettings;

/** A pid-less official packet-socket signal within this much of a companion one is the same socket(). */
export const FOLD_NS = 2_000_000n;

const ARM_KINDS = new Set<SignalKind>(['raw_socket', 'filter_attach', 'bpf_load']);
const CONTEXT_KINDS = new Set<SignalKind>(['tmpfs_exec', 'proc_rename', 'pidfile_create']);
const TRIGGER_NAMES: Partial<Record<SignalKind, string>> = {
  listen: 'new listener',
  accept: 'connection accepted from a new peer',
  connect: 'outbound connection to a new destination',
  shell_socket: 'shell wired to a socket',
  firewall_exec: 'firewall changed',
};
const STRONG = new Set(['tmpfs_exe', 'disguised_name']);
const WEAK = new Set(['pidfile', 'unusual_socket']);

interface Arm {
  readonly key: string;
  readonly container: string;
  readonly startNs: bigint;
  readonly signals: Signal[];
  triggers: Signal[];
  /** Context signals of the armer's lineage (tmpfs exec, renames, pid files), slim, oldest first. */
  related: Signal[];
  lastNs: bigint;
  /** Priority rank (Warning 1, Error 2) already reported for the arm alone; 0: none. */
  aloneRank: number;
}

interface Ctx {
  /** Lineage context signals (tmpfs exec, prctl rename, pid file), newest last, capped. */
  context: Signal[];
  peers: Set<string>;
  ports: Set<number>;
  /** Keys of this container's arms (index into `arms`; stale keys skipped). */
  armKeys: string[];
  lastNs: bigint;
}

export interface SocketFilterState {
  readonly arms: BoundedMap<string, Arm>;
  readonly ctx: BoundedMap<string, Ctx>;
  /** Peers/ports (and arms beyond the per-container cap) dropped by the caps and the total. */
  droppedPeers: number;
  /** Peers and ports remembered by all containers (bounded by `max_total_peers`). */
  peers: number;
  /** Pid-less official packet-socket signals folded into the companion signal of the same socket(). */
  folded: number;
  lastSweepNs: bigint;
}

const MAX_ARM_SIGNALS = 6;
const MAX_TRIGGERS = 8;
const MAX_RELATED = 8;
const MAX_CONTEXT = 32;
const MAX_ARMS_PER_CONTAINER = 64;

const related = (armer: Signal, c: Signal): boolean => sameLineage(armer.proc, c.proc) || sameLineage(c.proc, armer.proc);
const absNs = (x: bigint): bigint => (x < 0n ? -x : x);

export function createSocketFilterDetector(settings: Partial<SocketFilterSettings> = {}): Detector<SocketFilterState> {
  const cfg = { ...SOCKET_FILTER_DEFAULTS, ...settings } as SocketFilterSettings;
  const windowNs = msToNs(cfg.window);
  const thresholds = chainThresholds(cfg);
  const knownPacket = new Set(cfg.known_packet_binaries);

  const containerOf = (s: Signal): string | null => scopeOf(s, cfg.include_host);

  function ctxOf(st: SocketFilterState, c: string, now: bigint): Ctx {
    let x = st.ctx.touch(c);
    if (!x) {
      x = { context: [], peers: new Set(), ports: new Set(), armKeys: [], lastNs: now };
      st.ctx.set(c, x);
    }
    x.lastNs = now;
    return x;
  }

  function remember(st: SocketFilterState, ctx: Ctx, set: Set<string> | Set<number>, v: string | number): void {
    const before = set.size;
    if (set.size >= cfg.max_peers) {
      const first = set.values().next();
      if (!first.done) {
        (set as Set<string | number>).delete(first.value);
        st.droppedPeers++;
      }
    }
    (set as Set<string | number>).add(v);
    st.peers += set.size - before;
    if (st.peers > cfg.max_total_peers) fitTotal(st, ctx);
  }

  /**
   * Over the total: the least recently active containers (not `cur`) forget their peers and ports,
   * down to 7/8 of the total so the walk past already-emptied containers is paid once per
   * eighth of the budget, not per signal.
   */
  function fitTotal(st: SocketFilterState, cur: Ctx): void {
    const target = cfg.max_total_peers - Math.floor(cfg.max_total_peers / 8);
    for (const x of st.ctx.values()) {
      if (st.peers <= target) break;
      if (x === cur) continue;
      const n = x.peers.size + x.ports.size;
      if (n === 0) continue;
      x.peers.clear();
      x.ports.clear();
      st.peers -= n;
      st.droppedPeers += n;
    }
  }

  const inRange = (p: number | null): boolean => inPortRange(p, cfg.bind_shell_port_min, cfg.bind_shell_port_max);

  /** The escalation factors of the arm itself (before any trigger), strong first. */
  function factors(arm: Arm): string[] {
    const out: string[] = [];
    const lineage = [...arm.signals, ...arm.related];
    if (lineage.some((s) => s.kind === 'tmpfs_exec' || unusualExeLocation(s.proc.exepath) !== null)) out.push('tmpfs_exe');
    const renames = arm.related.filter((c) => c.kind === 'proc_rename');
    if (renames.some((r) => isDisguiseName(keyString(r, 'new_name'), r.proc.exepath))) out.push('disguised_name');
    else if (renames.length > 0 || arm.signals.some((s) => isMasquerade(s.proc))) out.push('masquerade');
    if (arm.related.some((c) => c.kind === 'pidfile_create')) out.push('pidfile');
    const sock = arm.signals.find((s) => s.kind === 'raw_socket') ?? null;
    if (sock !== null) {
      const names = [sock.proc.name, sock.proc.exepath ? basename(sock.proc.exepath) : null];
      if (!names.some((n) => n !== null && knownPacket.has(n))) out.push('unusual_socket');
    }
    return out;
  }

  /** Points of the arm-alone rule: strong factors 2, weak 1; `masquerade` only escalates a chain. */
  const points = (fs: readonly string[]): number => fs.reduce((n, f) => n + (STRONG.has(f) ? 2 : WEAK.has(f) ? 1 : 0), 0);
  const aloneRankOf = (p: number): number => (p >= 3 ? 2 : p >= 2 ? 1 : 0);
  const RANK_PRIORITY: Priority[] = ['Notice', 'Warning', 'Error'];

  function armWhat(arm: Arm): string {
    return [...new Set(arm.signals.map((s) => (s.kind === 'raw_socket' ? `${s.subtype ?? 'raw'} socket` : s.kind === 'filter_attach' ? 'socket filter' : 'BPF program')))].join(' + ');
  }

  function baseFields(arm: Arm, fs: readonly string[]): Record<string, string | number | null> {
    const armer = arm.signals[0] as Signal;
    return {
      'socket_filter.armed': armWhat(arm),
      'socket_filter.armed_exe': armer.proc.exepath,
      'socket_filter.armed_pid': armer.proc.pid,
      'socket_filter.armed_at': new Date(Number(arm.startNs / 1_000_000n)).toISOString(),
      'socket_filter.factors': fs.join(',') || null,
    };
  }

  /** The arm-alone finding, when its factors reach a priority not reported yet. */
  function aloneFinding(arm: Arm, at: Signal): Finding | null {
    if ((arm.signals[0] as Signal).proc.pid === null) return null; // no lineage without pids: chains only
    const fs = factors(arm);
    const rank = aloneRankOf(points(fs));
    if (rank <= arm.aloneRank) return null;
    arm.aloneRank = rank;
    const armer = arm.signals[0] as Signal;
    const evidence = [...arm.related, ...arm.signals].sort(byTime);
    return {
      detector: SOCKET_FILTER_DETECTOR_ID,
      rule: SOCKET_FILTER_ALONE_RULE,
      priority: RANK_PRIORITY[rank] as Priority,
      score: rank === 2 ? 0.75 : 0.55,
      message: `${procLabel(armer)} armed ${armWhat(arm)} in ${whereOf(armer)} (no trigger yet); suspicious: ${fs.join(', ')}`,
      mitre: SOCKET_FILTER_MITRE,
      key: `${SOCKET_FILTER_DETECTOR_ID}|${arm.key}`,
      evidence,
      fields: compact({ ...baseFields(arm, fs), 'socket_filter.trigger': null }),
      timeNs: at.timeNs,
    };
  }

  function chainFinding(arm: Arm, trigger: Signal): Finding {
    const fs = factors(arm);
    // `unusual_socket` only tips an arm without trigger over; a chain is scored by what it did.
    const esc = fs.filter((f) => f !== 'unusual_socket');
    const ports = arm.triggers.flatMap((t) => [t.kind === 'listen' || t.kind === 'accept' ? t.net.serverPort : null, t.kind === 'firewall_exec' ? Number(keyString(t, 'fw.to_ports') ?? NaN) : null]);
    if (ports.some((p) => p !== null && inRange(Number.isFinite(p) ? p : null))) esc.push('bind_shell_port');
    const armKinds = new Set(arm.signals.map((s) => s.kind));
    if (armKinds.has('raw_socket') && (armKinds.has('filter_attach') || armKinds.has('bpf_load'))) esc.push('filter_on_raw_socket');
    const trigKinds = new Set(arm.triggers.map((t) => t.kind));
    if (trigKinds.size > 1) esc.push(`triggers_${trigKinds.size}`);
    const n = esc.length;
    // Linked by container only when the armer or every trigger lacks a pid (official rules print
    // none); a pid-less official copy of a trigger (dup2) after pid-linked ones changes nothing.
    const unlinked = (arm.signals[0] as Signal).proc.pid === null || arm.triggers.every((x) => x.proc.pid === null);
    if (unlinked) esc.push('container_only');
    const sc = round3(Math.max(0, Math.min(1, cfg.base_score + cfg.escalation_step * (n - (unlinked ? 1 : 0)))));
    // An arm that was a detection by itself becomes Critical when its trigger follows.
    const disguised = points(fs) >= 2;
    const priority: Priority = disguised ? 'Critical' : priorityFromScore(sc, thresholds);
    const armer = arm.signals[0] as Signal;
    const what = TRIGGER_NAMES[trigger.kind] ?? trigger.kind;
    const peer = trigger.net.remoteIp ? `${trigger.net.remoteIp}${trigger.net.remotePort !== null ? `:${trigger.net.remotePort}` : ''}` : null;
    const listenPort = trigger.kind === 'listen' || trigger.kind === 'accept' ? trigger.net.serverPort : null;
    const evidence = [...arm.related, ...arm.signals, ...arm.triggers].sort(byTime);
    const fw = trigger.kind === 'firewall_exec' ? `${keyString(trigger, 'fw.action') ?? ''} ${keyString(trigger, 'fw.table') ?? ''}/${keyString(trigger, 'fw.chain') ?? ''} ${keyString(trigger, 'fw.src') ?? '*'} -> ${keyString(trigger, 'fw.target') ?? '?'}` : null;
    const dwellS = Number((trigger.timeNs - arm.startNs) / 1_000_000_000n);
    return {
      detector: SOCKET_FILTER_DETECTOR_ID,
      rule: `Traffic signaling: socket filter armed, then ${what}`,
      priority,
      score: disguised ? Math.max(sc, cfg.critical_score) : sc,
      message:
        `${procLabel(armer)} armed ${armWhat(arm)} in ${whereOf(armer)}, then ${dwellS >= 60 ? `${fmtDwell(dwellS)} later ` : ''}${procLabel(trigger)} ${what}` +
        `${peer ? ` (${peer})` : listenPort !== null ? ` (port ${listenPort})` : ''}${fw ? ` [${fw.trim()}]` : ''}` +
        `${esc.length ? `; escalated: ${esc.join(', ')}` : ''}`,
      mitre: SOCKET_FILTER_MITRE,
      key: `${SOCKET_FILTER_DETECTOR_ID}|${arm.key}`,
      evidence,
      fields: compact({
        ...baseFields(arm, fs),
        'socket_filter.trigger': trigger.kind,
        'socket_filter.escalations': esc.join(',') || null,
        'socket_filter.dwell_s': dwellS,
        'socket_filter.peer': peer,
        'socket_filter.listen_port': listenPort,
        'socket_filter.firewall': fw,
      }),
      timeNs: trigger.timeNs,
    };
  }

  /** Is `sig` from the armer's lineage? Same pid needs the same parent or executable (pid reuse over days). */
  function linked(arm: Arm, sig: Signal): boolean {
    for (const a of arm.signals) {
      if (a.proc.pid === null || sig.proc.pid === null) return true; // official rules print no pid: container only
      if (a.proc.pid === sig.proc.pid) {
        if (a.proc.ppid === sig.proc.ppid || (a.proc.exepath !== null && a.proc.exepath === sig.proc.exepath)) return true;
        continue;
      }
      if (sameLineage(a.proc, sig.proc)) return true;
    }
    return false;
  }

  /**
   * Keep a container's arms under its cap: the least recently armed of those that are not a
   * detection by themselves goes first, else the least recently armed.
   */
  function capArms(st: SocketFilterState, ctx: Ctx): void {
    ctx.armKeys = ctx.armKeys.filter((k) => st.arms.get(k) !== undefined);
    while (ctx.armKeys.length > MAX_ARMS_PER_CONTAINER) {
      let victim = -1;
      let oldest = 0;
      for (let i = 0; i < ctx.armKeys.length; i++) {
        const a = st.arms.get(ctx.armKeys[i] as string) as Arm;
        if (a.lastNs < (st.arms.get(ctx.armKeys[oldest] as string) as Arm).lastNs) oldest = i;
        if (points(factors(a)) < 2 && (victim < 0 || a.lastNs < (st.arms.get(ctx.armKeys[victim] as string) as Arm).lastNs)) victim = i;
      }
      if (victim < 0) victim = oldest;
      const [old] = ctx.armKeys.splice(victim, 1);
      if (old !== undefined && st.arms.delete(old)) st.droppedPeers++;
    }
  }

  /** A capture / network tool doing its job from where it is installed: not an arm (ATT&CK's AFPacketAllowList). */
  const knownTool = (sig: Signal): boolean => sig.proc.exepath !== null && knownPacket.has(basename(sig.proc.exepath)) && unusualExeLocation(sig.proc.exepath) === null;

  function onArm(st: SocketFilterState, ctx: Ctx, c: string, sig: Signal): Finding[] {
    if (knownTool(sig)) return [];
    const pid = sig.proc.pid;
    if (pid === null) {
      // The official rule's copy of a socket() our rule also reported: fold it.
      for (const k of ctx.armKeys) {
        const a = st.arms.get(k);
        if (a && a.signals.some((x) => x.kind === sig.kind && absNs(x.timeNs - sig.timeNs) <= FOLD_NS && sameExe(x, sig))) {
          st.folded++;
          return [];
        }
      }
    } else {
      // ... or it came first: the companion signal replaces the pid-less arm it opened.
      const nopid = st.arms.get(`${c}|nopid`);
      if (nopid && nopid.signals.every((x) => absNs(x.timeNs - sig.timeNs) <= FOLD_NS && sameExe(x, sig))) {
        st.arms.delete(nopid.key);
        st.folded++;
      }
    }
    const key = `${c}|${pid ?? 'nopid'}`;
    let arm = st.arms.get(key);
    if (arm && pid !== null && arm.signals[0]?.proc.exepath !== sig.proc.exepath) {
      st.arms.delete(key); // the pid now belongs to another program
      arm = undefined;
    }
    if (arm) {
      if (arm.signals.length < MAX_ARM_SIGNALS && !arm.signals.some((s) => s.kind === sig.kind && s.subtype === sig.subtype)) arm.signals.push(retain(sig));
      arm.lastNs = sig.timeNs;
      st.arms.set(key, arm); // re-armed: most recently armed
    } else {
      const kept = retain(sig);
      arm = { key, container: c, startNs: sig.timeNs, signals: [kept], triggers: [], related: ctx.context.filter((x) => related(kept, x)).slice(-MAX_RELATED), lastNs: sig.timeNs, aloneRank: 0 };
      st.arms.set(key, arm);
      ctx.armKeys.push(key);
      capArms(st, ctx);
    }
    const f = aloneFinding(arm, sig);
    return f ? [f] : [];
  }

  function onContext(st: SocketFilterState, ctx: Ctx, sig: Signal, now: bigint): Finding[] {
    const kept = retain(sig); // evidence only: slim copies
    ctx.context.push(kept);
    while (ctx.context.length > MAX_CONTEXT || (ctx.context[0] && (ctx.context[0] as Signal).timeNs + windowNs < now)) ctx.context.shift();
    // A disguise or pid file that comes after the arming still counts for it.
    const out: Finding[] = [];
    for (const k of ctx.armKeys) {
      const arm = st.arms.get(k);
      if (!arm || !related(arm.signals[0] as Signal, kept) || arm.related.includes(kept)) continue;
      arm.related.push(kept);
      if (arm.related.length > MAX_RELATED) arm.related.shift();
      if (arm.triggers.length === 0) {
        const f = aloneFinding(arm, sig);
        if (f) out.push(f);
      }
    }
    return out;
  }

  return {
    id: SOCKET_FILTER_DETECTOR_ID,
    consumes: ['raw_socket', 'filter_attach', 'bpf_load', 'listen', 'accept', 'connect', 'shell_socket', 'firewall_exec', 'tmpfs_exec', 'proc_rename', 'pidfile_create'],
    init: () => {
      const st: SocketFilterState = {
        arms: new BoundedMap<string, Arm>(cfg.max_arms),
        // A container context leaving the map gives its peers and ports back to the total.
        ctx: new BoundedMap<string, Ctx>(cfg.max_containers, (x) => (st.peers -= x.peers.size + x.ports.size)),
        droppedPeers: 0,
        peers: 0,
        folded: 0,
        lastSweepNs: 0n,
      };
      return st;
    },
    evictions: (st) => st.arms.evicted + st.ctx.evicted + st.droppedPeers,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      const c = containerOf(sig);
      if (c === null) return none;
      const now = laterNs(nowNs, sig.timeNs);
      if (sig.timeNs + windowNs < now) return none; // too late to belong to any live window
      // Age out arms not re-armed for a whole window (not evictions), at most 64 times per window.
      if (now - st.lastSweepNs > windowNs / 64n) {
        st.arms.sweep((a) => a.lastNs + windowNs < now);
        st.lastSweepNs = now;
      }
      const ctx = ctxOf(st, c, now);
      if (CONTEXT_KINDS.has(sig.kind)) return { state: st, findings: onContext(st, ctx, sig, now) };
      if (ARM_KINDS.has(sig.kind)) return { state: st, findings: onArm(st, ctx, c, sig) };

      // A potential trigger: is it new for this container?
      let fresh = true;
      if (sig.kind === 'accept' || sig.kind === 'connect') {
        const peer = sig.net.remoteIp;
        if (peer === null) fresh = false;
        else {
          const newForImage = sig.alert.companion[DEST.newForImage];
          fresh = !ctx.peers.has(peer) && newForImage !== false;
          remember(st, ctx, ctx.peers, peer);
        }
      } else if (sig.kind === 'listen') {
        const port = sig.net.serverPort;
        fresh = port === null || !ctx.ports.has(port);
        if (port !== null) remember(st, ctx, ctx.ports, port);
      } else if (sig.kind === 'firewall_exec') {
        const action = keyString(sig, 'fw.action');
        fresh = action !== 'list' && action !== 'check';
      }
      if (!fresh) return none;

      const findings: Finding[] = [];
      let kept: Signal | null = null; // one slim copy shared by every arm it completes
      for (const key of ctx.armKeys) {
        const arm = st.arms.get(key);
        if (!arm || arm.container !== c || sig.timeNs < arm.startNs || sig.timeNs > arm.lastNs + windowNs) continue;
        if (!linked(arm, sig)) continue;
        if (arm.triggers.length < MAX_TRIGGERS) arm.triggers.push((kept ??= retain(sig)));
        findings.push(chainFinding(arm, sig));
      }
      return { state: st, findings };
    },
  };
}

function sameExe(a: Signal, b: Signal): boolean {
  return a.proc.exepath === null || b.proc.exepath === null || a.proc.exepath === b.proc.exepath;
}

function fmtDwell(s: number): string {
  if (s >= 86_400) return `${Math.round(s / 3600)}h`;
  if (s >= 3600) return `${(s / 3600).toFixed(1)}h`;
  return `${Math.round(s / 60)}m`;
}

/** Registry entry (src/detect/registry.ts). */
export const socketFilterModule = detectorModule({ id: SOCKET_FILTER_DETECTOR_ID, settings: socketFilterSettingsSpec, quietInCi: false, create: createSocketFilterDetector });
