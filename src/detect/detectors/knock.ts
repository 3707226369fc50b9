/**
 * Port knocking / firewall-open chain (T1205.001): a firewall tool adds a single-source ACCEPT
 * (filter) or REDIRECT / DNAT (nat) rule, then within `window` a connection is accepted from that
 * source. Escalates when the rule is deleted again within `delete_window` of being added (the
 * BPFDoor / cd00r pattern: open for one peer, let it in, close the door behind it).
 *
 * Escalation factors of the rule itself: a nat REDIRECT / DNAT for one source (`redirect`), a port
 * in the bind-shell range (`bind_shell_port`), the firewall tool started by a process from tmpfs /
 * memfd or under a kernel-thread or daemon disguise (`suspicious_lineage`, counts twice), the rule
 * deleted again within `delete_window` (`rule_deleted`). Two points make the rule **alone** a
 * detection (Warning; three or more: Error), and such a rule is remembered for `dwell` (days): an
 * accept from its source then completes the chain at Critical. On hosts the accept signal is off by
 * default (the rules' `companion_accept_scope`), so there the rule alone is what is seen.
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): open rules
 * keyed by (scope, source), bounded with counted eviction (least recently added first).
 */
import { bool, defaults, duration, int, num, obj, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { canonicalIp } from '../../net/address.js';
import { parseCidr } from '../../net/cidr.js';
import type { Priority } from '../../alert.js';
import { BoundedMap, byTime, chainThresholds, compact, inPortRange, isKernelThreadName, keyNumber, keyString, laterNs, msToNs, priorityFromScore, procLabel, retain, round3, scopeOf, unusualExeLocation, whereOf } from './kit.js';

export const KNOCK_DETECTOR_ID = 'knock';
export const KNOCK_MITRE = ['T1205.001', 'T1205', 'mitre_defense_evasion', 'mitre_persistence', 'mitre_command_and_control'] as const;

export const knockSettingsSpec = obj('Port knocking (T1205.001): a single-source ACCEPT or nat REDIRECT rule, then a connection from that source.', {
  enabled: bool('Run this detector.', true),
  window: duration('How long after the rule is added a connection from its source completes the chain (a knock is answered at once).', 600_000, { min: 1000 }),
  dwell: duration('How long a rule with escalation factors (a detection by itself) stays armed for a connection from its source.', 3 * 86_400_000, { min: 1000 }),
  delete_window: duration('A delete of the same rule within this time after it was added escalates.', 900_000, { min: 1000 }),
  include_host: bool('Also watch host firewall changes and host accepts (container.id host).', true),
  bind_shell_port_min: int('Lowest port of the suspicious listener range (BPFDoor: 42391).', 42391, { min: 0, max: 65535 }),
  bind_shell_port_max: int('Highest port of the suspicious listener range.', 43390, { min: 0, max: 65535 }),
  base_score: num('Score of rule + connection.', 0.7, { min: 0, max: 1 }),
  escalation_step: num('Score added per escalation (rule deleted again, port matches, port in range, REDIRECT).', 0.1, { min: 0, max: 1 }),
  critical_score: num('Score at or above which the priority is Critical.', 0.85, { min: 0, max: 1 }),
  error_score: num('Score at or above which the priority is Error.', 0.7, { min: 0, max: 1 }),
  max_rules: int('Open firewall rules tracked (least recently added evicted, counted).', 5000, { min: 1 }),
});
export type KnockSettings = Infer<typeof knockSettingsSpec>;
export const KNOCK_DEFAULTS = defaults(knockSettingsSpec) as unknown as KnockSettings;

interface Open {
  readonly key: string;
  readonly scope: string;
  readonly src: string;
  readonly added: Signal[];
  readonly addedNs: bigint;
  accepted: Signal | null;
  deleted: Signal | null;
  reported: boolean;
  /** Priority rank (Warning 1, Error 2) already reported for the rule alone; 0: none. */
  aloneRank: number;
}

export interface KnockState {
  readonly open: BoundedMap<string, Open>;
  lastSweepNs: bigint;
}

const OPEN_ACTIONS = new Set(['insert', 'append', 'replace']);
const OPEN_TARGETS = new Set(['ACCEPT', 'REDIRECT', 'DNAT', 'RETURN']);

/**
 * One text per address, so a rule's source and an accepted peer compare equal however each was
 * written (`1.2.3.4/32`, `::ffff:1.2.3.4`, `2001:DB8::1/128` → `1.2.3.4`, `1.2.3.4`, `2001:db8::1`):
 * the canonical address text (src/net), or the lower-cased text when it is not a single address.
 */
function canonicalSrc(src: string): string {
  const ip = canonicalIp(src);
  if (ip !== null) return ip;
  const slash = src.lastIndexOf('/');
  const c = slash > 0 ? parseCidr(src) : null;
  if (c !== null && c.prefix === (c.v === 4 ? 32 : 128)) return canonicalIp(src.slice(0, slash)) ?? src.toLowerCase();
  return src.toLowerCase();
}

export function createKnockDetector(settings: Partial<KnockSettings> = {}): Detector<KnockState> {
  const cfg = { ...KNOCK_DEFAULTS, ...settings } as KnockSettings;
  const windowNs = msToNs(cfg.window);
  const deleteNs = msToNs(cfg.delete_window);
  const dwellNs = msToNs(cfg.dwell);
  const keepNs = [windowNs, deleteNs, dwellNs].reduce((a, b) => (a > b ? a : b));
  const thresholds = chainThresholds(cfg);
  const inRange = (p: number | null): boolean => inPortRange(p, cfg.bind_shell_port_min, cfg.bind_shell_port_max);

  /** The rule's own escalation factors and their points (suspicious lineage counts twice). */
  function factors(o: Open): { names: string[]; points: number } {
    const names: string[] = [];
    if (o.added.some((a) => ['REDIRECT', 'DNAT'].includes((keyString(a, 'fw.target') ?? '').toUpperCase()))) names.push('redirect');
    if (o.added.some((a) => inRange(keyNumber(a, 'fw.dport')) || inRange(keyNumber(a, 'fw.to_ports')))) names.push('bind_shell_port');
    if (o.added.some((a) => a.proc.ancestors.some((x) => unusualExeLocation(x) !== null || isKernelThreadName(x)))) names.push('suspicious_lineage');
    if (o.deleted) names.push('rule_deleted');
    return { names, points: names.reduce((n, x) => n + (x === 'suspicious_lineage' ? 2 : 1), 0) };
  }
  const rankOf = (points: number): number => (points >= 3 ? 2 : points >= 2 ? 1 : 0);
  const RANK_PRIORITY: Priority[] = ['Notice', 'Warning', 'Error'];
  const rulesText = (o: Open): string[] =>
    o.added.map((a) => `${keyString(a, 'fw.table') ?? 'filter'}/${keyString(a, 'fw.chain') ?? '?'} -> ${keyString(a, 'fw.target') ?? '?'}${keyString(a, 'fw.to_ports') ? ` :${keyString(a, 'fw.to_ports')}` : ''}`);

  /** The rule alone, when its factors reach a priority not reported yet (and nothing was accepted). */
  function aloneFinding(o: Open, at: Signal): Finding | null {
    if (o.accepted) return null;
    const f = factors(o);
    const rank = rankOf(f.points);
    if (rank <= o.aloneRank) return null;
    o.aloneRank = rank;
    const add = o.added[0] as Signal;
    const rules = rulesText(o);
    return {
      detector: KNOCK_DETECTOR_ID,
      rule: 'Port knocking: firewall opened for one source by a suspicious rule',
      priority: RANK_PRIORITY[rank] as Priority,
      score: rank === 2 ? 0.75 : 0.55,
      message: `${procLabel(add)} added ${rules.join(' + ')} for ${o.src} in ${whereOf(add)}${o.deleted ? ', then deleted it again' : ''} (no connection from it seen yet); suspicious: ${f.names.join(', ')}`,
      mitre: KNOCK_MITRE,
      key: `${KNOCK_DETECTOR_ID}|${o.key}`,
      evidence: [...o.added, ...(o.deleted ? [o.deleted] : [])].sort(byTime),
      fields: compact({ 'knock.source_ip': o.src, 'knock.firewall': rules.join(' + '), 'knock.escalations': f.names.join(','), 'knock.rule_deleted': o.deleted !== null }),
      timeNs: at.timeNs,
    };
  }

  function finding(o: Open): Finding {
    const add = o.added[0] as Signal;
    const acc = o.accepted as Signal;
    const own = factors(o);
    const esc: string[] = [];
    if (o.deleted) esc.push('rule_deleted');
    const ports = o.added.flatMap((a) => [keyNumber(a, 'fw.dport'), keyNumber(a, 'fw.to_ports')]);
    const accPort = acc.net.serverPort;
    if (accPort !== null && ports.includes(accPort)) esc.push('port_matches');
    if ([...ports, accPort].some((p) => inRange(p))) esc.push('bind_shell_port');
    if (own.names.includes('redirect')) esc.push('redirect');
    if (own.names.includes('suspicious_lineage')) esc.push('suspicious_lineage');
    const sc = round3(Math.min(1, cfg.base_score + cfg.escalation_step * esc.length));
    // A rule that was a detection by itself becomes Critical when its source connects.
    const priority: Priority = own.points >= 2 ? 'Critical' : priorityFromScore(sc, thresholds);
    const rules = rulesText(o);
    const evidence = [...o.added, acc, ...(o.deleted ? [o.deleted] : [])].sort(byTime);
    const last = evidence[evidence.length - 1] as Signal;
    return {
      detector: KNOCK_DETECTOR_ID,
      rule: o.deleted ? 'Port knocking: firewall opened for one source, connection accepted, rule removed' : 'Port knocking: firewall opened for one source, then it connected',
      priority,
      score: own.points >= 2 ? Math.max(sc, cfg.critical_score) : sc,
      message:
        `${procLabel(add)} added ${rules.join(' + ')} for ${o.src} in ${whereOf(add)}, then ${procLabel(acc)} accepted ${o.src}` +
        `${accPort !== null ? ` on port ${accPort}` : ''}${o.deleted ? ', then the rule was deleted' : ''}${esc.length ? `; escalated: ${esc.join(', ')}` : ''}`,
      mitre: KNOCK_MITRE,
      key: `${KNOCK_DETECTOR_ID}|${o.key}`,
      evidence,
      fields: compact({
        'knock.source_ip': o.src,
        'knock.firewall': rules.join(' + '),
        'knock.listen_port': accPort,
        'knock.escalations': esc.join(',') || null,
        'knock.rule_deleted': o.deleted !== null,
        'knock.delay_s': Number((acc.timeNs - o.addedNs) / 1_000_000_000n),
      }),
      timeNs: last.timeNs,
    };
  }

  /** How long after its addition an accept from the source still completes this rule's chain. */
  const armedNs = (o: Open): bigint => (factors(o).points >= 2 && dwellNs > windowNs ? dwellNs : windowNs);

  return {
    id: KNOCK_DETECTOR_ID,
    consumes: ['firewall_exec', 'accept'],
    init: () => ({ open: new BoundedMap<string, Open>(cfg.max_rules), lastSweepNs: 0n }),
    evictions: (st) => st.open.evicted,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      const now = laterNs(nowNs, sig.timeNs);
      if (now - st.lastSweepNs > keepNs / 64n) {
        st.open.sweep((o) => o.addedNs + (o.aloneRank > 0 ? keepNs : windowNs > deleteNs ? windowNs : deleteNs) < now); // aged out (not evictions)
        st.lastSweepNs = now;
      }
      const scope = scopeOf(sig, cfg.include_host);
      if (scope === null) return none;

      if (sig.kind === 'firewall_exec') {
        const src = keyString(sig, 'fw.src');
        if (!src || sig.keys['fw.single_source'] !== true) return none;
        const ip = canonicalSrc(src);
        const key = `${scope}|${ip}`;
        const action = keyString(sig, 'fw.action') ?? '';
        const target = (keyString(sig, 'fw.target') ?? '').toUpperCase();
        if (OPEN_ACTIONS.has(action) && OPEN_TARGETS.has(target)) {
          let o = st.open.get(key);
          if (o && !o.deleted && !o.accepted && sig.timeNs - o.addedNs <= windowNs) {
            if (o.added.length < 4) o.added.push(retain(sig));
          } else {
            o = { key, scope, src: ip, added: [retain(sig)], addedNs: sig.timeNs, accepted: null, deleted: null, reported: false, aloneRank: 0 };
            st.open.set(key, o);
          }
          const f = aloneFinding(o, sig);
          return f ? { state: st, findings: [f] } : none;
        }
        if (action === 'delete') {
          const o = st.open.get(key);
          if (!o || o.deleted || sig.timeNs - o.addedNs > deleteNs || sig.timeNs < o.addedNs) return none;
          o.deleted = retain(sig);
          if (o.accepted) return { state: st, findings: [finding(o)] };
          const f = aloneFinding(o, sig);
          return f ? { state: st, findings: [f] } : none;
        }
        return none;
      }

      if (sig.kind === 'accept') {
        const peer = sig.net.remoteIp;
        if (!peer) return none;
        const ip = canonicalSrc(peer);
        const candidates = [st.open.get(`${scope}|${ip}`), scope !== 'host' && cfg.include_host ? st.open.get(`host|${ip}`) : undefined];
        const findings: Finding[] = [];
        for (const o of candidates) {
          if (!o || o.accepted || o.deleted || sig.timeNs < o.addedNs || sig.timeNs - o.addedNs > armedNs(o)) continue; // a deleted rule no longer lets anyone in
          o.accepted = retain(sig);
          o.reported = true;
          findings.push(finding(o));
        }
        return { state: st, findings };
      }
      return none;
    },
  };
}

/** Registry entry (src/detect/registry.ts). */
export const knockModule = detectorModule({ id: KNOCK_DETECTOR_ID, settings: knockSettingsSpec, quietInCi: false, create: createKnockDetector });
