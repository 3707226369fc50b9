/**
 * Port knocking / firewall-open chain (T1205.001): a firewall tool adds a single-source ACCEPT
 * (filter) or REDIRECT / DNAT (nat) rule, then within `window` a connection is accepted from that
 * source. Escalates when the rule is deleted again within `delete_window` of being added (the
 * BPFDoor / cd00r pattern: open for one peer, let it in, close the door behind it).
 *
 * State (owned by the engine, mutated in place; deterministic on event time, no wall clock): open rules
 * keyed by (scope, source), bounded with counted eviction.
 */
import { bool, defaults, duration, int, num, obj, type Infer } from '../../config/dsl.js';
import { type Detector, detectorModule, type Finding, type Signal } from '../types.js';
import { canonicalIp } from '../../net/address.js';
import { parseCidr } from '../../net/cidr.js';
import { BoundedMap, byTime, chainThresholds, compact, inPortRange, keyNumber, keyString, laterNs, msToNs, priorityFromScore, procLabel, retain, round3, scopeOf, whereOf } from './kit.js';

export const KNOCK_DETECTOR_ID = 'knock';
export const KNOCK_MITRE = ['T1205.001', 'T1205', 'mitre_defense_evasion', 'mitre_persistence', 'mitre_command_and_control'] as const;

export const knockSettingsSpec = obj('Port knocking (T1205.001): a single-source ACCEPT or nat REDIRECT rule, then a connection from that source.', {
  enabled: bool('Run this detector.', true),
  window: duration('How long after the rule is added a connection from its source completes the chain.', 600_000, { min: 1000 }),
  delete_window: duration('A delete of the same rule within this time after it was added escalates.', 900_000, { min: 1000 }),
  include_host: bool('Also watch host firewall changes and host accepts (container.id host).', true),
  bind_shell_port_min: int('Lowest port of the suspicious listener range (BPFDoor: 42391).', 42391, { min: 0, max: 65535 }),
  bind_shell_port_max: int('Highest port of the suspicious listener range.', 43390, { min: 0, max: 65535 }),
  base_score: num('Score of rule + connection.', 0.7, { min: 0, max: 1 }),
  escalation_step: num('Score added per escalation (rule deleted again, port matches, port in range, REDIRECT).', 0.1, { min: 0, max: 1 }),
  critical_score: num('Score at or above which the priority is Critical.', 0.85, { min: 0, max: 1 }),
  error_score: num('Score at or above which the priority is Error.', 0.7, { min: 0, max: 1 }),
  max_rules: int('Open firewall rules tracked (oldest evicted, counted).', 5000, { min: 1 }),
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
  const keepNs = windowNs > deleteNs ? windowNs : deleteNs;
  const thresholds = chainThresholds(cfg);
  const inRange = (p: number | null): boolean => inPortRange(p, cfg.bind_shell_port_min, cfg.bind_shell_port_max);

  function finding(o: Open): Finding {
    const add = o.added[0] as Signal;
    const acc = o.accepted as Signal;
    const esc: string[] = [];
    if (o.deleted) esc.push('rule_deleted');
    const ports = o.added.flatMap((a) => [keyNumber(a, 'fw.dport'), keyNumber(a, 'fw.to_ports')]);
    const accPort = acc.net.serverPort;
    if (accPort !== null && ports.includes(accPort)) esc.push('port_matches');
    if ([...ports, accPort].some((p) => inRange(p))) esc.push('bind_shell_port');
    if (o.added.some((a) => keyString(a, 'fw.target') === 'REDIRECT' || keyString(a, 'fw.target') === 'DNAT')) esc.push('redirect');
    const sc = round3(Math.min(1, cfg.base_score + cfg.escalation_step * esc.length));
    const rules = o.added.map((a) => `${keyString(a, 'fw.table') ?? 'filter'}/${keyString(a, 'fw.chain') ?? '?'} -> ${keyString(a, 'fw.target') ?? '?'}${keyString(a, 'fw.to_ports') ? ` :${keyString(a, 'fw.to_ports')}` : ''}`);
    const evidence = [...o.added, acc, ...(o.deleted ? [o.deleted] : [])].sort(byTime);
    const last = evidence[evidence.length - 1] as Signal;
    return {
      detector: KNOCK_DETECTOR_ID,
      rule: o.deleted ? 'Port knocking: firewall opened for one source, connection accepted, rule removed' : 'Port knocking: firewall opened for one source, then it connected',
      priority: priorityFromScore(sc, thresholds),
      score: sc,
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
      }),
      timeNs: last.timeNs,
    };
  }

  return {
    id: KNOCK_DETECTOR_ID,
    consumes: ['firewall_exec', 'accept'],
    init: () => ({ open: new BoundedMap<string, Open>(cfg.max_rules), lastSweepNs: 0n }),
    evictions: (st) => st.open.evicted,
    step(st, sig, nowNs) {
      const none = { state: st, findings: [] as Finding[] };
      const now = laterNs(nowNs, sig.timeNs);
      if (now - st.lastSweepNs > keepNs / 64n) {
        st.open.sweep((o) => o.addedNs + keepNs < now); // aged out (not evictions)
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
          const o = st.open.get(key);
          if (o && !o.deleted && sig.timeNs - o.addedNs <= windowNs) {
            if (o.added.length < 4) o.added.push(retain(sig));
          } else {
            st.open.set(key, { key, scope, src: ip, added: [retain(sig)], addedNs: sig.timeNs, accepted: null, deleted: null, reported: false });
          }
          return none;
        }
        if (action === 'delete') {
          const o = st.open.get(key);
          if (!o || o.deleted || sig.timeNs - o.addedNs > deleteNs || sig.timeNs < o.addedNs) return none;
          o.deleted = retain(sig);
          if (o.accepted) return { state: st, findings: [finding(o)] };
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
          if (!o || o.accepted || o.deleted || sig.timeNs < o.addedNs || sig.timeNs - o.addedNs > windowNs) continue; // a deleted rule no longer lets anyone in
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
