/**
 * Free text from workloads and operators: firewall command lines (src/detect/firewall-cmdline.ts),
 * threat-intel list files (src/enrich/intel.ts), the report page's escaping (src/report/escape.ts).
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { parseFirewallCmdline } from '../../../src/detect/firewall-cmdline.js';
import { parseIntelList } from '../../../src/enrich/intel.js';
import { formatIp, parseIp, type Ip } from '../../../src/net/address.js';
import { isSingleHost, parseCidr } from '../../../src/net/cidr.js';
import { esc, short, showInvisible } from '../../../src/report/escape.js';
import { longRun, nastyString } from '../arbitraries.js';
import type { FuzzTarget } from '../harness.js';

// ---------------------------------------------------------------------------------------------
// Firewall command lines

interface IptablesModel {
  readonly tool: 'iptables' | 'ip6tables';
  readonly bin: string;
  readonly wrapper: string;
  readonly table: string | null;
  readonly action: readonly [string, string];
  readonly chain: string;
  readonly proto: string | null;
  readonly src: string | null;
  readonly dport: number | null;
  readonly target: string | null;
  readonly toPorts: number | null;
}

const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,11}$/);
const iptables: fc.Arbitrary<IptablesModel> = fc.record({
  tool: fc.constantFrom('iptables' as const, 'ip6tables' as const),
  bin: fc.constantFrom('', '/usr/sbin/', '/sbin/'),
  wrapper: fc.constantFrom('', 'sudo ', 'sudo -u root ', 'env PATH=/usr/sbin ', 'nsenter -t 1 -n ', 'nsenter --target 1 --net ', 'nsenter --target=1 -m -n '),
  table: fc.option(fc.constantFrom('filter', 'nat', 'mangle', 'raw'), { nil: null }),
  action: fc.constantFrom<[string, string]>(['-A', 'append'], ['-I', 'insert'], ['-D', 'delete'], ['--append', 'append'], ['--insert', 'insert']),
  chain: fc.oneof(fc.constantFrom('INPUT', 'PREROUTING', 'OUTPUT'), word),
  proto: fc.option(fc.constantFrom('tcp', 'udp'), { nil: null }),
  src: fc.option(fc.oneof(fc.constantFrom('1.2.3.4', '10.0.0.0/8', '2001:db8::1', '198.51.100.7/32', '0.0.0.0/0')), { nil: null }),
  dport: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null }),
  target: fc.option(fc.constantFrom('ACCEPT', 'DROP', 'REDIRECT', 'DNAT', 'accept'), { nil: null }),
  toPorts: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: null }),
});

function iptablesText(m: IptablesModel, shell: boolean): string {
  const parts = [`${m.bin}${m.tool}`];
  if (m.table) parts.push('-t', m.table);
  parts.push(m.action[0], m.chain);
  if (m.proto) parts.push('-p', m.proto);
  if (m.src) parts.push('-s', m.src);
  if (m.dport !== null) parts.push('--dport', String(m.dport));
  if (m.target) parts.push('-j', m.target);
  if (m.toPorts !== null) parts.push('--to-ports', String(m.toPorts));
  const cmd = m.wrapper + parts.join(' ');
  return shell ? `sh -c "${cmd}"` : cmd;
}

type FwInput = { readonly kind: 'iptables'; readonly m: IptablesModel; readonly shell: boolean } | { readonly kind: 'any'; readonly text: string };

const fwWords = fc.constantFrom('iptables', 'nft', 'ufw', 'firewall-cmd', 'sh', '-c', 'sudo', 'env', 'nsenter', '-t', '-A', '-I', '-j', '--dport', '--to-ports', 'add', 'rule', 'ip', 'nat', 'redirect', 'to', ':4444', 'saddr', '!=', 'allow', 'from', 'port', '--add-rich-rule=rule family="ipv4" source address="1.2.3.4" forward-port port="22" protocol="tcp" to-port="2222"', '--direct', '--add-rule', '"', "'", '\\', '=', '1.2.3.4');

export const firewallCmdlines: FuzzTarget<FwInput> = {
  name: 'firewall command lines',
  module: 'src/detect/firewall-cmdline.ts',
  arb: fc.oneof(
    fc.record({ kind: fc.constant('iptables' as const), m: iptables, shell: fc.boolean() }),
    fc.record({ kind: fc.constant('any' as const), text: fc.oneof(fc.array(fwWords, { maxLength: 20 }).map((w) => w.join(' ')), nastyString, longRun, fc.tuple(fwWords, longRun).map(([w, r]) => `iptables ${w} ${r}`), fc.constantFrom('sh -c "sh -c \\"sh -c \\\\\\"iptables -A INPUT\\\\\\"\\""', 'iptables --dport=' + '9'.repeat(400))) }),
  ),
  check: (x) => {
    if (x.kind === 'any') {
      const f = parseFirewallCmdline(x.text);
      if (f === null) return;
      expect(typeof f['fw.tool']).toBe('string');
      for (const [k, v] of Object.entries(f)) {
        expect(k.startsWith('fw.')).toBe(true);
        expect(['string', 'number', 'boolean']).toContain(typeof v);
        if (typeof v === 'string') expect(v.length).toBeLessThanOrEqual(4096);
      }
      return;
    }
    const m = x.m;
    const text = iptablesText(m, x.shell);
    const f = parseFirewallCmdline(text);
    if (f === null) throw new Error(`firewall command not recognised: ${text}`);
    const expected: Record<string, string | number | boolean> = { 'fw.tool': m.tool, 'fw.table': m.table ?? 'filter', 'fw.action': m.action[1], 'fw.chain': m.chain };
    if (m.proto) expected['fw.proto'] = m.proto;
    if (m.src) expected['fw.src'] = m.src;
    if (m.dport !== null) expected['fw.dport'] = m.dport;
    if (m.target) expected['fw.target'] = m.target.toUpperCase();
    if (m.toPorts !== null) expected['fw.to_ports'] = m.toPorts;
    const c = m.src ? parseCidr(m.src) : null;
    expected['fw.single_source'] = c !== null && isSingleHost(c);
    expect(f).toEqual(expected);
  },
  shortRuns: 400,
};

// ---------------------------------------------------------------------------------------------
// Threat-intel lists

type IntelEntry = { readonly kind: 'ip'; readonly ip: Ip; readonly prefix: number } | { readonly kind: 'domain'; readonly name: string; readonly wild: '' | '*.' | '.' };

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
const entry: fc.Arbitrary<IntelEntry> = fc.oneof(
  fc.record({ kind: fc.constant('ip' as const), ip: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }).map((n): Ip => ({ v: 4, n })), fc.bigInt({ min: 1n << 64n, max: (1n << 128n) - 1n }).map((n): Ip => ({ v: 6, n }))), prefix: fc.integer({ min: 0, max: 128 }) }),
  // (the last label has a letter: an all-numeric name is an address, not a domain)
  fc.record({ kind: fc.constant('domain' as const), name: fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/)).map(([l, tld]) => [...l, tld].join('.')), wild: fc.constantFrom('' as const, '*.' as const, '.' as const) }),
);

function entryText(e: IntelEntry): string {
  if (e.kind === 'domain') return e.wild + e.name;
  const max = e.ip.v === 4 ? 32 : 128;
  return `${formatIp(e.ip)}/${Math.min(e.prefix, max)}`;
}

export const intelLists: FuzzTarget<{ entries: IntelEntry[]; noise: string[]; comments: boolean[]; crlf: boolean; max: number }> = {
  name: 'threat-intel list files',
  module: 'src/enrich/intel.ts',
  arb: fc.record({
    entries: fc.array(entry, { maxLength: 20 }),
    noise: fc.array(fc.oneof(nastyString.map((s) => s.replace(/[\r\n]/g, '')), longRun, fc.constantFrom('# comment', '; comment', '   ', '1.2.3.4/33', '*.', '.', 'localhost', '999.1.1.1', '-bad-.example', 'a'.repeat(300) + '.example')), { maxLength: 10 }),
    comments: fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
    crlf: fc.boolean(),
    max: fc.integer({ min: 1, max: 40 }),
  }),
  check: ({ entries, noise, comments, crlf, max }) => {
    const lines = [...entries.map((e, i) => entryText(e) + (comments[i] ? '  # why' : '')), ...noise];
    const r = parseIntelList(lines.join(crlf ? '\r\n' : '\n'), max);
    expect(r.loaded.entries).toBeLessThanOrEqual(max);
    expect(r.firstMalformed.length).toBeLessThanOrEqual(10);
    expect(r.loaded.entries + r.skipped + r.malformed).toBeLessThanOrEqual(lines.length);
    // Round trip: every well-formed entry within max_entries is found again.
    entries.slice(0, Math.min(max, entries.length)).forEach((e) => {
      if (e.kind === 'ip') {
        const ip = parseIp(formatIp(e.ip)) as Ip;
        expect(r.loaded.cidrs.has(ip)).toBe(true);
      } else if (e.wild === '') expect(r.loaded.exact.has(e.name)).toBe(true);
      else expect(r.loaded.suffixes.has(e.name)).toBe(true);
    });
  },
  shortRuns: 300,
};

// ---------------------------------------------------------------------------------------------
// Report escaping

const ENT: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

export const reportEscaping: FuzzTarget<{ s: string; max: number }> = {
  name: 'report page escaping',
  module: 'src/report/escape.ts',
  arb: fc.record({ s: fc.oneof(nastyString, fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: fc.constantFrom('<', '>', '&', '"', "'", '`', '\u202e', '\u0000', '\u200b', 'a', '\ud800', '\udc00', '\u2066', '\ufeff', '\u0085'), maxLength: 80 })), max: fc.integer({ min: 1, max: 50 }) }),
  check: ({ s, max }) => {
    const e = esc(s);
    // Nothing that HTML or an attribute value could read as markup; nothing invisible.
    expect(e).not.toMatch(/[<>"']/);
    expect(e.replace(/&(amp|lt|gt|quot|#39);/g, '')).not.toContain('&');
    // eslint-disable-next-line no-control-regex
    expect(e).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/);
    // Exact: decoding the entities gives the text with invisible characters shown as escapes.
    expect(e.replace(/&(amp|lt|gt|quot|#39);/g, (m) => ENT[m] as string)).toBe(showInvisible(s));
    const cut = short(s, max);
    expect([...cut].length).toBeLessThanOrEqual(Math.max(max, 1));
    if ([...s].length <= max) expect(cut).toBe(s);
  },
  shortRuns: 400,
};
