/** Signals for the chain detectors, built through the real default mapping. */
import type { FieldValue } from '../../../src/alert.js';
import { compileMapping } from '../../../src/detect/mapping.js';
import { loadRulesFile } from '../../../src/detect/rules/load.js';
import type { Signal } from '../../../src/detect/types.js';
import { alertAt, DETECTOR_SPECS } from '../helpers.js';

const mapping = compileMapping(loadRulesFile(null, { detectors: DETECTOR_SPECS }).signals);

export const RULE = {
  raw: 'Companion signal: packet or raw socket created',
  filter: 'Companion signal: socket filter attached',
  bpf: 'Companion signal: BPF program loaded in container',
  fw: 'Companion signal: firewall tool run',
  listen: 'Companion signal: listening socket in container',
  accept: 'Companion signal: inbound connection accepted in container',
  connect: 'Companion signal: outbound connection from container',
  shell: 'Companion signal: shell with socket stdio',
  rename: 'Companion signal: process renamed with prctl',
  tmpfs: 'Companion signal: execution from tmpfs',
  pidfile: 'Companion signal: pid or lock file under /var/run',
} as const;

export interface P {
  pid: number;
  ppid?: number;
  sid?: number;
  apid2?: number;
  name?: string;
  exe?: string;
  cmd?: string;
  container?: string;
}

export function s(rule: keyof typeof RULE, sec: number, p: P, extra: Record<string, FieldValue> = {}): Signal {
  const a = alertAt(sec, RULE[rule], {
    'proc.pid': p.pid,
    'proc.ppid': p.ppid ?? 1,
    'proc.sid': p.sid ?? 1,
    'proc.apid[2]': p.apid2 ?? null,
    'proc.name': p.name ?? 'app',
    'proc.exepath': p.exe ?? '/usr/bin/app',
    'proc.cmdline': p.cmd ?? p.name ?? 'app',
    ...(p.container !== undefined ? { 'container.id': p.container } : {}),
    ...extra,
  });
  const out = mapping.mapAlert(a);
  const first = out[0];
  if (!first) throw new Error(`no signal for ${rule}`);
  return first;
}

export const tuple = (client: string, server: string): Record<string, FieldValue> => ({ 'fd.name': `${client}->${server}`, 'fd.l4proto': 'tcp' });
