/**
 * The compiled signal mapping: Falco alert → typed Signals (src/detect/types.ts). Predicates are
 * compiled once per rules load; rule names are looked up in a Map. Normalises process, network,
 * container and k8s facts so detectors never read raw output_fields.
 */
import { fieldString, type Alert, type FieldValue, type OutputFields } from '../alert.js';
import { LosslessNumber } from '../json/lossless.js';
import { cidrContains, parseIp } from './match.js';
import type { Predicate, SignalRule } from './rules-file.js';
import type { NetFacts, ProcFacts, Signal, SignalKind } from './types.js';

/** Rule names of the shipped signal rules start with this (signal-only alerts). */
export const SIGNAL_RULE_PREFIX = 'Companion signal:';

type Test = (alert: Alert) => boolean;

interface Compiled {
  readonly index: number;
  readonly rule: SignalRule;
  readonly test: Test;
  /** `extract` as entries, built once. */
  readonly extract: readonly (readonly [string, string])[];
}

export interface Mapping {
  /** Signals an alert maps to (empty when none), in rules-file order, one per (kind, subtype). */
  mapAlert(alert: Alert): Signal[];
}

/** Compile the `signals:` entries of a rules file. */
export function compileMapping(rules: readonly SignalRule[]): Mapping {
  const named = new Map<string, Compiled[]>();
  const generic: Compiled[] = [];
  rules.forEach((rule, index) => {
    const c: Compiled = { index, rule, test: compileTest(rule), extract: Object.entries(rule.extract) };
    if (rule.rules) {
      for (const n of rule.rules) {
        let arr = named.get(n);
        if (!arr) named.set(n, (arr = []));
        arr.push(c);
      }
    } else generic.push(c);
  });
  // Candidates per rule name, merged with the generic entries in rules-file order once, not per alert.
  const byName = new Map<string, readonly Compiled[]>();
  for (const [n, arr] of named) byName.set(n, generic.length ? [...arr, ...generic].sort((a, b) => a.index - b.index) : arr);
  return {
    mapAlert(alert: Alert): Signal[] {
      const candidates = byName.get(alert.rule) ?? generic;
      const out: Signal[] = [];
      if (candidates.length === 0) return out;
      let proc: ProcFacts | null = null;
      for (const c of candidates) {
        if (!c.test(alert)) continue;
        const subtype = subtypeOf(c.rule, alert);
        const kind = c.rule.kind;
        // One signal per (kind, subtype); a null subtype and '' count as the same.
        const sub = subtype ?? '';
        let dup = false;
        for (const o of out) if (o.kind === kind && (o.subtype ?? '') === sub) dup = true;
        if (dup) continue;
        proc ??= Object.freeze(procFacts(alert)); // the same process facts for every signal of the alert
        out.push(makeSignal(alert, kind, subtype, c.extract, proc));
      }
      return out;
    },
  };
}

function compileTest(rule: SignalRule): Test {
  const tests: Test[] = [];
  if (rule.rulePrefix !== null) {
    const prefix = rule.rulePrefix;
    tests.push((a) => a.rule.startsWith(prefix));
  }
  if (rule.tags) {
    const want = new Set(rule.tags);
    tests.push((a) => a.tags !== null && a.tags.some((t) => want.has(t)));
  }
  for (const p of rule.where) tests.push(compilePredicate(p));
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as Test;
  return (a) => tests.every((t) => t(a));
}

/** A field of the alert: output_fields first, `companion.<key>` from enrichment, then top-level names. */
export function getField(alert: Alert, name: string): FieldValue | undefined {
  const f = alert.outputFields?.[name];
  if (f !== undefined) return f;
  if (name.startsWith('companion.')) return alert.companion[name.slice(10)];
  switch (name) {
    case 'rule':
      return alert.rule;
    case 'priority':
      return alert.priority;
    case 'source':
      return alert.source;
    case 'hostname':
      return alert.hostname;
    default:
      return undefined;
  }
}

function asText(v: FieldValue | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (v instanceof LosslessNumber) return v.raw;
  const s = String(v);
  return s === '<NA>' ? null : s;
}

function asNumber(v: FieldValue | undefined): number | null {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(v instanceof LosslessNumber ? v.raw : v);
  return Number.isFinite(n) && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

export function compilePredicate(p: Predicate): Test {
  const field = p.field;
  switch (p.op) {
    case 'equals': {
      const want = String(p.value);
      const wantNum = typeof p.value === 'number' ? p.value : null;
      return (a) => {
        const v = getField(a, field);
        if (wantNum !== null) return asNumber(v) === wantNum;
        return asText(v) === want;
      };
    }
    case 'in': {
      const set = new Set(p.values);
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && set.has(s);
      };
    }
    case 'startswith': {
      const vals = p.values;
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && vals.some((x) => s.startsWith(x));
      };
    }
    case 'contains': {
      const vals = p.values;
      return (a) => {
        const s = asText(getField(a, field));
        return s !== null && vals.some((x) => s.includes(x));
      };
    }
    case 'cidr': {
      const cidrs = p.cidrs;
      return (a) => {
        const s = asText(getField(a, field));
        const ip = s === null ? null : parseIp(s);
        return ip !== null && cidrs.some((c) => cidrContains(c, ip));
      };
    }
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte': {
      const n = p.number;
      const cmp = p.op === 'gt' ? (x: number) => x > n : p.op === 'gte' ? (x: number) => x >= n : p.op === 'lt' ? (x: number) => x < n : (x: number) => x <= n;
      return (a) => {
        const x = asNumber(getField(a, field));
        return x !== null && cmp(x);
      };
    }
    case 'exists': {
      const want = p.exists;
      return (a) => (asText(getField(a, field)) !== null) === want;
    }
  }
}

function subtypeOf(rule: SignalRule, alert: Alert): string | null {
  if (rule.subtypeFrom) {
    const raw = asText(getField(alert, rule.subtypeFrom.field));
    if (raw !== null && Object.hasOwn(rule.subtypeFrom.map, raw)) return rule.subtypeFrom.map[raw] as string;
    if (rule.subtypeFrom.default !== null) return rule.subtypeFrom.default;
    if (raw !== null) return raw;
  }
  return rule.subtype;
}

// ---------------------------------------------------------------------------------------------
// Facts

/** `host`, empty, `<NA>` and missing container ids mean the host: null. */
export function normaliseContainerId(v: string | null | undefined): string | null {
  if (v === null || v === undefined) return null;
  const s = v.trim();
  if (s === '' || s === 'host' || s === '<NA>') return null;
  return s;
}

const APID_KEYS = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `proc.apid[${i}]`);

/** `fieldString` of a value already looked up (one property read per field, not several). */
function str(v: FieldValue | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v === '<NA>' ? null : v;
  return String(v);
}

/** `fieldNumber` of a value already looked up. */
function num(v: FieldValue | undefined): number | null {
  if (v === undefined || v === null || typeof v === 'boolean') return null;
  const n = typeof v === 'number' ? v : Number(typeof v === 'string' ? v : v.raw);
  return Number.isFinite(n) && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

const NO_FIELDS: OutputFields = Object.freeze({});

function procFacts(a: Alert): ProcFacts {
  const f = a.outputFields ?? NO_FIELDS;
  const apids: number[] = [];
  for (const k of APID_KEYS) {
    const n = num(f[k]);
    if (n !== null) apids.push(n);
  }
  let exe = str(f['proc.exepath']);
  if (exe === null) {
    const alt = str(f['proc.exe']);
    exe = alt?.startsWith('/') ? alt : null;
  }
  return {
    pid: num(f['proc.pid']) ?? num(f['proc.vpid']),
    ppid: num(f['proc.ppid']) ?? num(f['proc.apid[1]']),
    sid: num(f['proc.sid']),
    apids,
    name: str(f['proc.name']),
    exepath: exe,
    cmdline: str(f['proc.cmdline']),
  };
}

/** Split `ip:port` where ip may be IPv6 (`::1:80`, `[::1]:80`). */
function splitEndpoint(s: string): { ip: string; port: number | null } | null {
  const t = s.trim();
  const br = /^\[([^\]]+)\]:(\d+)$/.exec(t);
  if (br) return { ip: br[1] as string, port: Number(br[2]) };
  const i = t.lastIndexOf(':');
  if (i <= 0) return null;
  const ip = t.slice(0, i);
  const port = t.slice(i + 1);
  if (!/^\d{1,5}$/.test(port)) return null;
  // Cheap shape check (full parsing is for CIDR matching only).
  return /^(\d{1,3}\.){3}\d{1,3}$/.test(ip) || (ip.includes(':') && /^[0-9a-fA-F:.]+$/.test(ip)) ? { ip, port: Number(port) } : null;
}

/** Parse Falco's `fd.name` tuple `client:port->server:port` (null when it is not one). */
export function parseTuple(name: string | null): { clientIp: string; clientPort: number | null; serverIp: string; serverPort: number | null } | null {
  if (!name) return null;
  const arrow = name.indexOf('->');
  if (arrow < 0) return null;
  const c = splitEndpoint(name.slice(0, arrow));
  const s = splitEndpoint(name.slice(arrow + 2));
  if (!c || !s) return null;
  return { clientIp: c.ip, clientPort: c.port, serverIp: s.ip, serverPort: s.port };
}

function netFacts(a: Alert, kind: SignalKind): NetFacts {
  const f = a.outputFields ?? NO_FIELDS;
  const tuple = parseTuple(str(f['fd.name']));
  // Explicit client/server fields win; the tuple fills the gaps. fd.lport/fd.rport are not trusted for direction.
  const clientIp = str(f['fd.cip']) ?? tuple?.clientIp ?? null;
  const serverIp = str(f['fd.sip']) ?? tuple?.serverIp ?? (kind === 'listen' ? str(f['fd.lip']) : null);
  const clientPort = num(f['fd.cport']) ?? tuple?.clientPort ?? null;
  const serverPort = num(f['fd.sport']) ?? tuple?.serverPort ?? (kind === 'listen' ? num(f['fd.lport']) : null);
  let remoteIp: string | null;
  let remotePort: number | null;
  if (kind === 'accept') {
    remoteIp = clientIp;
    remotePort = clientPort;
  } else if (kind === 'listen') {
    remoteIp = null;
    remotePort = null;
  } else if (kind === 'connect' || kind === 'k8s_api_contact' || kind === 'kubelet_contact') {
    remoteIp = serverIp;
    remotePort = serverPort;
  } else {
    remoteIp = str(f['fd.rip']) ?? serverIp;
    remotePort = num(f['fd.rport']) ?? serverPort;
  }
  const rdns = a.companion['dest.rdns'];
  const domain =
    (typeof rdns === 'string' && rdns !== '' ? rdns : null) ??
    (kind === 'accept' ? str(f['fd.cip.name']) : str(f['fd.sip.name'])) ??
    null;
  return {
    l4proto: str(f['fd.l4proto']),
    clientIp,
    clientPort,
    serverIp,
    serverPort,
    remoteIp,
    remotePort,
    remoteDomain: domain,
  };
}

function companionString(a: Alert, key: string): string | null {
  const v = a.companion[key];
  return typeof v === 'string' && v !== '' ? v : null;
}

export function buildSignal(alert: Alert, kind: SignalKind, subtype: string | null, extract: Readonly<Record<string, string>>): Signal {
  return makeSignal(alert, kind, subtype, Object.entries(extract), Object.freeze(procFacts(alert)));
}

function makeSignal(alert: Alert, kind: SignalKind, subtype: string | null, extract: readonly (readonly [string, string])[], proc: ProcFacts): Signal {
  const keys: Record<string, FieldValue> = {};
  for (const [k, field] of extract) {
    const v = getField(alert, field);
    if (v !== undefined && v !== null && v !== '<NA>') keys[k] = v;
  }
  if (kind === 'firewall_exec') {
    const fw = parseFirewallCmdline(proc.cmdline ?? fieldString(alert, 'proc.cmdline'));
    if (fw) Object.assign(keys, fw);
  }
  const f = alert.outputFields ?? NO_FIELDS;
  return Object.freeze({
    kind,
    subtype,
    timeNs: alert.timeNs,
    rule: alert.rule,
    containerId: normaliseContainerId(str(f['container.id'])),
    imageRepository: str(f['container.image.repository']) ?? companionString(alert, 'image.repository'),
    imageTag: str(f['container.image.tag']) ?? companionString(alert, 'image.tag'),
    imageDigest: str(f['container.image.digest']) ?? companionString(alert, 'image.digest'),
    namespace: str(f['k8s.ns.name']),
    pod: str(f['k8s.pod.name']),
    proc,
    net: Object.freeze(netFacts(alert, kind)),
    keys: Object.freeze(keys),
    alert,
  });
}

// ---------------------------------------------------------------------------------------------
// Firewall command lines

export type FirewallFacts = Record<string, string | number | boolean>;

/** Split a command line on whitespace like a shell: quotes (also mid-word) group, backslash escapes. */
function tokenize(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string;
    if (quote) {
      if (ch === quote) quote = null;
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      has = true;
    } else if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i] as string;
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

const HOST_SRC = /^(\d+\.\d+\.\d+\.\d+)(\/32)?$|^([0-9a-fA-F:]*:[0-9a-fA-F:.]*)(\/128)?$/;

function isSingleSource(src: string | undefined): boolean {
  if (!src) return false;
  const m = HOST_SRC.exec(src);
  if (!m) return false;
  const ip = m[1] ?? m[3] ?? '';
  const parsed = parseIp(ip);
  return parsed !== null && parsed.value !== 0n;
}

/**
 * Parse an iptables / ip6tables / nft / ufw / firewall-cmd command line into `fw.*` keys:
 * tool, action (insert|append|delete|replace|flush|policy|new_chain|delete_chain|list|other),
 * table, chain, src, dst, proto, target (ACCEPT|DROP|REJECT|REDIRECT|DNAT|MASQUERADE...), dport,
 * to_ports, single_source. Returns null when the command is not a firewall tool.
 */
export function parseFirewallCmdline(cmdline: string | null): FirewallFacts | null {
  if (!cmdline) return null;
  let toks = tokenize(cmdline.length > 4096 ? cmdline.slice(0, 4096) : cmdline);
  // `sh -c "iptables ..."` and `sudo iptables ...`
  for (let guard = 0; guard < 4 && toks.length > 0; guard++) {
    const b = basename(toks[0] as string);
    if ((b === 'sh' || b === 'bash' || b === 'dash' || b === 'ash' || b === 'busybox') && toks.includes('-c')) {
      const rest = toks.slice(toks.indexOf('-c') + 1).join(' ');
      toks = tokenize(rest);
    } else if (b === 'sudo' || b === 'env' || b === 'nsenter' || b === 'xtables-multi' || b === 'xtables-legacy-multi' || b === 'xtables-nft-multi') {
      toks = toks.slice(1).filter((t, i) => !(i === 0 && t.includes('=')));
      while (toks[0] !== undefined && (toks[0].startsWith('-') || toks[0].includes('='))) toks = toks.slice(1);
    } else break;
  }
  const tool = basename(toks[0] ?? '');
  const args = toks.slice(1);
  let facts: FirewallFacts | null = null;
  if (/^(ip6?tables)(-legacy|-nft)?$/.test(tool)) facts = parseIptables(args);
  else if (tool === 'nft') facts = parseNft(args);
  else if (tool === 'ufw') facts = parseUfw(args);
  else if (tool === 'firewall-cmd') facts = parseFirewallCmd(args);
  if (!facts) return null;
  const out: FirewallFacts = { 'fw.tool': tool.replace(/-(legacy|nft)$/, '') };
  for (const [k, v] of Object.entries(facts)) out[`fw.${k}`] = v;
  out['fw.single_source'] = isSingleSource(facts['src'] as string | undefined) && facts['src_negated'] !== true;
  delete out['fw.src_negated'];
  return out;
}

const IPT_ACTIONS: Record<string, string> = {
  '-I': 'insert',
  '--insert': 'insert',
  '-A': 'append',
  '--append': 'append',
  '-D': 'delete',
  '--delete': 'delete',
  '-R': 'replace',
  '--replace': 'replace',
  '-F': 'flush',
  '--flush': 'flush',
  '-P': 'policy',
  '--policy': 'policy',
  '-N': 'new_chain',
  '--new-chain': 'new_chain',
  '-X': 'delete_chain',
  '--delete-chain': 'delete_chain',
  '-L': 'list',
  '--list': 'list',
  '-S': 'list',
  '--list-rules': 'list',
  '-C': 'check',
  '--check': 'check',
  '-Z': 'zero',
  '--zero': 'zero',
};

function portOf(s: string | undefined): number | string | undefined {
  if (s === undefined) return undefined;
  return /^\d{1,5}$/.test(s) ? Number(s) : s;
}

function parseIptables(args: string[]): FirewallFacts {
  const f: FirewallFacts = { table: 'filter', action: 'other' };
  let negate = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const next = args[i + 1];
    if (a === '!') {
      negate = true;
      continue;
    }
    const action = IPT_ACTIONS[a];
    if (action) {
      f['action'] = action;
      if (next !== undefined && !next.startsWith('-')) {
        f['chain'] = next;
        i++;
      }
    } else if ((a === '-t' || a === '--table') && next) {
      f['table'] = next;
      i++;
    } else if ((a === '-s' || a === '--source' || a === '--src') && next) {
      f['src'] = next;
      if (negate) f['src_negated'] = true;
      i++;
    } else if ((a === '-d' || a === '--destination' || a === '--dst') && next) {
      f['dst'] = next;
      i++;
    } else if ((a === '-p' || a === '--protocol') && next) {
      f['proto'] = next;
      i++;
    } else if ((a === '-j' || a === '--jump' || a === '-g' || a === '--goto') && next) {
      f['target'] = next.toUpperCase();
      i++;
    } else if ((a === '--dport' || a === '--destination-port' || a === '--dports') && next) {
      const p = portOf(next);
      if (p !== undefined) f['dport'] = p;
      i++;
    } else if ((a === '--to-ports' || a === '--to-port') && next) {
      const p = portOf(next);
      if (p !== undefined) f['to_ports'] = p;
      i++;
    } else if (a === '--to-destination' && next) {
      f['to_destination'] = next;
      i++;
    } else if (a.startsWith('--') && a.includes('=')) {
      const [k, v] = a.split('=', 2) as [string, string];
      if (k === '--dport' || k === '--destination-port') f['dport'] = portOf(v) ?? v;
      else if (k === '--to-ports') f['to_ports'] = portOf(v) ?? v;
      else if (k === '--source') f['src'] = v;
      else if (k === '--jump') f['target'] = v.toUpperCase();
      else if (k === '--table') f['table'] = v;
    }
    negate = false;
  }
  return f;
}

function parseNft(args: string[]): FirewallFacts {
  const f: FirewallFacts = { action: 'other' };
  const verb = args[0];
  const obj = args[1];
  const verbs: Record<string, string> = { add: 'append', insert: 'insert', delete: 'delete', replace: 'replace', flush: 'flush', create: 'append', list: 'list' };
  f['action'] = (verb && verbs[verb]) ?? 'other';
  let i = 2;
  if (obj === 'rule') {
    // [family] table chain
    const fam = args[i];
    if (fam && ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'].includes(fam)) i++;
    if (args[i]) f['table'] = args[i] as string;
    if (args[i + 1]) f['chain'] = args[i + 1] as string;
    i += 2;
  } else if (obj === 'table' || obj === 'chain' || obj === 'ruleset') {
    if (obj === 'chain' && f['action'] === 'append') f['action'] = 'new_chain';
    const fam = args[i];
    if (fam && ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'].includes(fam)) i++;
    if (args[i]) f['table'] = args[i] as string;
    if (obj === 'chain' && args[i + 1]) f['chain'] = args[i + 1] as string;
    return f;
  }
  for (; i < args.length; i++) {
    const a = (args[i] as string).toLowerCase();
    const next = args[i + 1];
    if (a === 'saddr' && next) {
      if (next === '!=') {
        f['src_negated'] = true;
        f['src'] = args[i + 2] ?? '';
        i += 2;
      } else {
        f['src'] = next;
        i++;
      }
    } else if (a === 'daddr' && next) {
      f['dst'] = next;
      i++;
    } else if (a === 'dport' && next) {
      f['dport'] = portOf(next) ?? next;
      i++;
    } else if (a === 'accept' || a === 'drop' || a === 'reject' || a === 'masquerade') {
      f['target'] = a.toUpperCase();
    } else if (a === 'redirect') {
      f['target'] = 'REDIRECT';
      if (next === 'to' && args[i + 2]) {
        f['to_ports'] = portOf((args[i + 2] as string).replace(/^:/, '')) ?? (args[i + 2] as string);
        i += 2;
      }
    } else if (a === 'dnat') {
      f['target'] = 'DNAT';
      if (next === 'to' && args[i + 2]) {
        f['to_destination'] = args[i + 2] as string;
        i += 2;
      }
    } else if (a === 'tcp' || a === 'udp') {
      f['proto'] = a;
    } else if (a === 'handle' && next) {
      f['handle'] = next;
      i++;
    }
  }
  return f;
}

function parseUfw(args: string[]): FirewallFacts {
  const f: FirewallFacts = { table: 'filter', chain: 'ufw-user-input', action: 'append' };
  let i = 0;
  if (args[i] === 'delete') {
    f['action'] = 'delete';
    i++;
  } else if (args[i] === 'insert') {
    f['action'] = 'insert';
    i += 2;
  } else if (args[i] === 'route') {
    f['chain'] = 'ufw-user-forward';
    i++;
  }
  const verb = args[i];
  const targets: Record<string, string> = { allow: 'ACCEPT', deny: 'DROP', reject: 'REJECT', limit: 'LIMIT' };
  if (!verb || !targets[verb]) {
    f['action'] = verb === 'enable' || verb === 'disable' || verb === 'reset' || verb === 'default' ? verb === 'default' ? 'policy' : 'flush' : 'other';
    return f;
  }
  f['target'] = targets[verb] as string;
  for (i = i + 1; i < args.length; i++) {
    const a = args[i] as string;
    const next = args[i + 1];
    if (a === 'from' && next) {
      if (next !== 'any') f['src'] = next;
      i++;
    } else if (a === 'to' && next) {
      if (next !== 'any') f['dst'] = next;
      i++;
    } else if (a === 'port' && next) {
      f['dport'] = portOf(next) ?? next;
      i++;
    } else if (a === 'proto' && next) {
      f['proto'] = next;
      i++;
    } else if (/^\d+(\/(tcp|udp))?$/.test(a) && f['dport'] === undefined) {
      f['dport'] = portOf(a.split('/')[0]) ?? a;
    }
  }
  return f;
}

function parseFirewallCmd(args: string[]): FirewallFacts {
  const f: FirewallFacts = { table: 'filter', action: 'other' };
  for (const a of args) {
    const eq = a.indexOf('=');
    const k = eq >= 0 ? a.slice(0, eq) : a;
    const v = eq >= 0 ? a.slice(eq + 1) : '';
    const add = k.startsWith('--add-');
    const remove = k.startsWith('--remove-');
    if (add || remove) f['action'] = add ? 'append' : 'delete';
    if (k === '--add-rich-rule' || k === '--remove-rich-rule') {
      const src = /source\s+address="?([^"\s]+)"?/.exec(v);
      if (src) f['src'] = src[1] as string;
      const port = /port\s+port="?(\d+)"?/.exec(v);
      if (port) f['dport'] = Number(port[1]);
      const fwd = /forward-port\s+port="?(\d+)"?.*?to-port="?(\d+)"?/.exec(v);
      if (fwd) {
        f['target'] = 'REDIRECT';
        f['dport'] = Number(fwd[1]);
        f['to_ports'] = Number(fwd[2]);
      } else if (/\baccept\b/.test(v)) f['target'] = 'ACCEPT';
      else if (/\bdrop\b/.test(v)) f['target'] = 'DROP';
      else if (/\breject\b/.test(v)) f['target'] = 'REJECT';
    } else if (k === '--add-port' || k === '--remove-port') {
      const [p, proto] = v.split('/');
      f['dport'] = portOf(p) ?? v;
      if (proto) f['proto'] = proto;
      f['target'] = 'ACCEPT';
    } else if (k === '--add-source' || k === '--remove-source') {
      f['src'] = v;
      f['target'] = 'ACCEPT';
    } else if (k === '--add-forward-port' || k === '--remove-forward-port') {
      const port = /port=(\d+)/.exec(v);
      const to = /toport=(\d+)/.exec(v);
      if (port) f['dport'] = Number(port[1]);
      if (to) f['to_ports'] = Number(to[1]);
      f['target'] = /toaddr=/.test(v) ? 'DNAT' : 'REDIRECT';
      f['table'] = 'nat';
    } else if (k === '--direct' ) {
      // `--direct --add-rule ipv4 filter INPUT 0 -s 1.2.3.4 -j ACCEPT`
      const idx = args.indexOf('--add-rule') >= 0 ? args.indexOf('--add-rule') : args.indexOf('--remove-rule');
      if (idx >= 0) {
        const rest = args.slice(idx + 1);
        f['action'] = args[idx] === '--add-rule' ? 'append' : 'delete';
        if (rest[1]) f['table'] = rest[1];
        if (rest[2]) f['chain'] = rest[2];
        const ipt = parseIptables(rest.slice(4));
        for (const key of ['src', 'target', 'dport', 'to_ports', 'proto', 'dst'] as const) if (ipt[key] !== undefined) f[key] = ipt[key] as string | number;
      }
      break;
    }
  }
  return f;
}
