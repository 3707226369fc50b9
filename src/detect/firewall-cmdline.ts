/**
 * Firewall command lines (iptables / ip6tables / nft / ufw / firewall-cmd, also behind `sh -c`,
 * `sudo`, `env`, `nsenter`, xtables multi-binaries) → the `fw.*` keys of `firewall_exec` signals.
 * Best effort over untrusted text: never throws, bounded input (4 KiB).
 */
import { isSingleHost, parseCidr } from '../net/cidr.js';
import { basename } from './detectors/kit.js';

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

/** Options of the wrappers that take a separate value. */
const WRAPPER_VALUE_FLAGS: Readonly<Record<string, ReadonlySet<string>>> = {
  sudo: new Set(['-u', '--user', '-g', '--group', '-h', '--host', '-p', '--prompt', '-C', '--close-from', '-D', '--chdir', '-U', '--other-user', '-r', '--role', '-t', '--type', '-T', '--command-timeout']),
  env: new Set(['-u', '--unset', '-C', '--chdir']),
  nsenter: new Set(['-t', '--target', '-S', '--setuid', '-G', '--setgid', '-w', '--wd']),
};

/** True when `src` is one address (`1.2.3.4`, `1.2.3.4/32`, `2001:db8::1/128`), not a network or `0.0.0.0`. */
function isSingleSource(src: string | undefined): boolean {
  if (!src) return false;
  const c = parseCidr(src);
  return c !== null && isSingleHost(c);
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
      const valued = WRAPPER_VALUE_FLAGS[b];
      toks = toks.slice(1).filter((t, i) => !(i === 0 && t.includes('=')));
      // The wrapper's own options (and the values of those that take one: `nsenter -t 1 -n`, `sudo -u root`).
      while (toks[0] !== undefined && (toks[0].startsWith('-') || toks[0].includes('='))) toks = toks.slice(valued?.has(toks[0]) ? 2 : 1);
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
