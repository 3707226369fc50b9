/**
 * Traffic signaling via socket filters (T1205.002, BPFDoor-like): a process in a container arms a
 * raw/packet socket and/or attaches a filter (SO_ATTACH_FILTER / SO_ATTACH_BPF / BPF_PROG_LOAD);
 * then, within `window` (event time), the same container and process lineage (pid / ppid / session
 * / ancestors) does one of: a new listener, an accept from a never-seen peer, an outbound connect
 * to a never-seen destination, a shell with socket stdio, or a firewall tool run.
 *
 * Escalation: executable in tmpfs, name masquerade (proc.name ≠ executable basename, or a prctl
 * rename), pid/lock file under /var/run, listener ports 42391–43390 (BPFDoor's bind-shell range).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock):
 * arms per (container, pid), lineage context signals per container, peers and ports seen per
 * container — all bounded, evictions counted; peers and ports of all containers together stay under
 * `max_total_peers` (the least recently active containers forget theirs first). Kept signals are
 * slim copies (`retain`): evidence only.
 */
import { bool, defaults, duration, int, num, obj, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal, type SignalKind } from '../types.js';
import { BoundedMap, byTime, chainThresholds, compact, inPortRange, isMasquerade, isTmpfsPath, keyString, laterNs, msToNs, priorityFromScore, procLabel, retain, round3, sameLineage, scopeOf, whereOf } from './kit.js';
import { DEST } from '../../enrich/keys.js';

export const SOCKET_FILTER_DETECTOR_ID = 'socket_filter';
export const SOCKET_FILTER_MITRE = ['T1205.002', 'T1205', 'mitre_defense_evasion', 'mitre_persistence', 'mitre_command_and_control'] as const;

export const socketFilterSettingsSpec = obj('Traffic signaling (T1205.002): raw/packet socket or filter armed, then a listener, new peer, shell on a socket or firewall change from the same process lineage.', {
  enabled: bool('Run this detector.', true),
  window: duration('How long after arming a trigger still completes the chain (event time).', 3_600_000, { min: 1000 }),
  include_host: bool('Also watch host processes (container.id host).', false),
  bind_shell_port_min: int('Lowest port of the suspicious listener range (BPFDoor: 42391).', 42391, { min: 0, max: 65535 }),
  bind_shell_port_max: int('Highest port of the suspicious listener range (BPFDoor: 43390).', 43390, { min: 0, max: 65535 }),
  base_score: num('Score of an armed socket followed by one trigger.', 0.65, { min: 0, max: 1 }),
  escalation_step: num('Score added per escalation (tmpfs exe, masquerade, pid file, port range, filter + raw socket, extra trigger kinds).', 0.1, { min: 0, max: 1 }),
  critical_score: num('Score at or above which the priority is Critical.', 0.85, { min: 0, max: 1 }),
  error_score: num('Score at or above which the priority is Error.', 0.7, { min: 0, max: 1 }),
  max_arms: int('Armed processes tracked (oldest evicted, counted).', 5000, { min: 1 }),
  max_containers: int('Containers whose context (peers, ports, lineage signals) is tracked.', 5000, { min: 1 }),
  max_peers: int('Peers and ports remembered per container.', 512, { min: 1 }),
  max_total_peers: int('Peers and ports remembered across all containers (≈ 60 B each); beyond it the least recently active containers forget theirs (counted).', 100_000, { min: 1 }),
});
export type SocketFilterSettings = Infer<typeof socketFilterSettingsSpec>;
export const SOCKET_FILTER_DEFAULTS = defaults(socketFilterSettingsSpec) as unknown as SocketFilterSettings;

const ARM_KINDS = new Set<SignalKind>(['raw_socket', 'filter_attach', 'bpf_load']);
const CONTEXT_KINDS = new Set<SignalKind>(['tmpfs_exec', 'proc_rename', 'pidfile_create']);
const TRIGGER_NAMES: Partial<Record<SignalKind, string>> = {
  listen: 'new listener',
  accept: 'connection accepted from a new peer',
  connect: 'outbound connection to a new destination',
  shell_socket: 'shell wired to a socket',
  firewall_exec: 'firewall changed',
};

interface Arm {
  readonly key: string;
  readonly container: string;
  readonly startNs: bigint;
  readonly signals: Signal[];
  triggers: Signal[];
  lastNs: bigint;
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
  /** Peers/ports (and arms beyond 32 per container) dropped by the per-container caps and the total. */
  droppedPeers: number;
  /** Peers and ports remembered by all containers (bounded by `max_total_peers`). */
  peers: number;
  lastSweepNs: bigint;
}

const MAX_ARM_SIGNALS = 6;
const MAX_TRIGGERS = 8;
const MAX_CONTEXT = 16;
const MAX_ARMS_PER_CONTAINER = 32;

export function createSocketFilterDetector(settings: Partial<SocketFilterSettings> = {}): Detector<SocketFilterState> {
  const cfg = { ...SOCKET_FILTER_DEFAULTS, ...settings } as SocketFilterSettings;
  const windowNs = msToNs(cfg.window);
  const thresholds = chainThresholds(cfg);

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

  function score(arm: Arm, ctx: Ctx): { score: number; escalations: string[] } {
    const esc: string[] = [];
    const all = [...arm.signals, ...arm.triggers];
    const armer = arm.signals[0] as Signal;
    const related = ctx.context.filter((c) => sameLineage(armer.proc, c.proc) || sameLineage(c.proc, armer.proc));
    if (all.some((s) => isTmpfsPath(s.proc.exepath)) || related.some((c) => c.kind === 'tmpfs_exec')) esc.push('tmpfs_exe');
    if (arm.signals.some((s) => isMasquerade(s.proc)) || related.some((c) => c.kind === 'proc_rename')) esc.push('masquerade');
    if (related.some((c) => c.kind === 'pidfile_create')) esc.push('pidfile');
    const ports = arm.triggers.flatMap((t) => [t.kind === 'listen' || t.kind === 'accept' ? t.net.serverPort : null, t.kind === 'firewall_exec' ? Number(keyString(t, 'fw.to_ports') ?? NaN) : null]);
    if (ports.some((p) => p !== null && inRange(Number.isFinite(p) ? p : null))) esc.push('bind_shell_port');
    const armKinds = new Set(arm.signals.map((s) => s.kind));
    if (armKinds.has('raw_socket') && (armKinds.has('filter_attach') || armKinds.has('bpf_load'))) esc.push('filter_on_raw_socket');
    const trigKinds = new Set(arm.triggers.map((t) => t.kind));
    const extra = Math.max(0, trigKinds.size - 1);
    if (extra > 0) esc.push(`triggers_${trigKinds.size}`);
    const n = esc.length;
    const unlinked = all.some((x) => x.proc.pid === null);
    if (unlinked) esc.push('container_only');
    return { score: round3(Math.max(0, Math.min(1, cfg.base_score + cfg.escalation_step * (n - (unlinked ? 1 : 0))))), escalations: esc };
  }

  function finding(arm: Arm, ctx: Ctx, trigger: Signal): Finding {
    const { score: sc, escalations } = score(arm, ctx);
    const armer = arm.signals[0] as Signal;
    const what = TRIGGER_NAMES[trigger.kind] ?? trigger.kind;
    const armWhat = [...new Set(arm.signals.map((s) => (s.kind === 'raw_socket' ? `${s.subtype ?? 'raw'} socket` : s.kind === 'filter_attach' ? 'socket filter' : 'BPF program')))].join(' + ');
    const peer = trigger.net.remoteIp ? `${trigger.net.remoteIp}${trigger.net.remotePort !== null ? `:${trigger.net.remotePort}` : ''}` : null;
    const listenPort = trigger.kind === 'listen' || trigger.kind === 'accept' ? trigger.net.serverPort : null;
    const related = ctx.context.filter((c) => sameLineage(armer.proc, c.proc) || sameLineage(c.proc, armer.proc));
    const evidence = [...related, ...arm.signals, ...arm.triggers].sort(byTime);
    const fw = trigger.kind === 'firewall_exec' ? `${keyString(trigger, 'fw.action') ?? ''} ${keyString(trigger, 'fw.table') ?? ''}/${keyString(trigger, 'fw.chain') ?? ''} ${keyString(trigger, 'fw.src') ?? '*'} -> ${keyString(trigger, 'fw.target') ?? '?'}` : null;
    return {
      detector: SOCKET_FILTER_DETECTOR_ID,
      rule: `Traffic signaling: socket filter armed, then ${what}`,
      priority: priorityFromScore(sc, thresholds),
      score: sc,
      message:
        `${procLabel(armer)} armed a ${armWhat} in ${whereOf(armer)}, then ${procLabel(trigger)} ${what}` +
        `${peer ? ` (${peer})` : listenPort !== null ? ` (port ${listenPort})` : ''}${fw ? ` [${fw.trim()}]` : ''}` +
        `${escalations.length ? `; escalated: ${escalations.join(', ')}` : ''}`,
      mitre: SOCKET_FILTER_MITRE,
      key: `${SOCKET_FILTER_DETECTOR_ID}|${arm.key}`,
      evidence,
      fields: compact({
        'socket_filter.trigger': trigger.kind,
        'socket_filter.armed': armWhat,
        'socket_filter.escalations': escalations.join(',') || null,
        'socket_filter.armed_exe': armer.proc.exepath,
        'socket_filter.armed_pid': armer.proc.pid,
        'socket_filter.peer': peer,
        'socket_filter.listen_port': listenPort,
        'socket_filter.firewall': fw,
      }),
      timeNs: trigger.timeNs,
    };
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
      // Age out arms whose window has closed (not evictions), at most 64 times per window.
      if (now - st.lastSweepNs > windowNs / 64n) {
        st.arms.sweep((a) => a.startNs + windowNs < now);
        st.lastSweepNs = now;
      }
      const ctx = ctxOf(st, c, now);

      if (CONTEXT_KINDS.has(sig.kind)) {
        ctx.context.push(retain(sig)); // evidence only: slim copies
        while (ctx.context.length > MAX_CONTEXT || (ctx.context[0] && (ctx.context[0] as Signal).timeNs + windowNs < now)) ctx.context.shift();
        return none;
      }

      if (ARM_KINDS.has(sig.kind)) {
        const key = `${c}|${sig.proc.pid ?? 'nopid'}`;
        const arm = st.arms.get(key);
        if (arm) {
          if (arm.signals.length < MAX_ARM_SIGNALS && !arm.signals.some((s) => s.kind === sig.kind && s.subtype === sig.subtype)) arm.signals.push(retain(sig));
          arm.lastNs = sig.timeNs;
        } else {
          st.arms.set(key, { key, container: c, startNs: sig.timeNs, signals: [retain(sig)], triggers: [], lastNs: sig.timeNs });
          ctx.armKeys = ctx.armKeys.filter((k) => k !== key && st.arms.get(k) !== undefined);
          ctx.armKeys.push(key);
          if (ctx.armKeys.length > MAX_ARMS_PER_CONTAINER) {
            const old = ctx.armKeys.shift() as string;
            if (st.arms.delete(old)) st.droppedPeers++;
          }
        }
        return none;
      }

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
        if (!arm || arm.container !== c || sig.timeNs < arm.startNs || sig.timeNs > arm.startNs + windowNs) continue;
        const armer = arm.signals[0] as Signal;
        // Official rules print no proc.pid: without pids, the container is the only link (scored lower).
        const noPid = armer.proc.pid === null || sig.proc.pid === null;
        const related = noPid || sameLineage(armer.proc, sig.proc) || arm.signals.some((s) => sameLineage(s.proc, sig.proc));
        if (!related) continue;
        if (arm.triggers.length < MAX_TRIGGERS) arm.triggers.push((kept ??= retain(sig)));
        arm.lastNs = sig.timeNs;
        findings.push(finding(arm, ctx, sig));
      }
      return { state: st, findings };
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const socketFilterModule = detectorModule({ id: SOCKET_FILTER_DETECTOR_ID, settings: socketFilterSettingsSpec, quietInCi: false, create: createSocketFilterDetector });
