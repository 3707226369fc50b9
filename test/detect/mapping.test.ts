import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseFirewallCmdline } from '../../src/detect/firewall-cmdline.js';
import { compileMapping, normaliseContainerId } from '../../src/detect/mapping.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { compileGlob } from '../../src/detect/suppress.js';
import { alertAt, DETECTOR_SPECS } from './helpers.js';

const defaults = compileMapping(loadRulesFile(null, { detectors: DETECTOR_SPECS }).signals);

describe('signal mapping', () => {
  it('takes direction from the fd.name tuple, not from lport/rport (the outbound-connect trap)', () => {
    // Outbound connect: local port 443 would look like a server if lport/rport were trusted.
    const a = alertAt(1, 'Companion signal: outbound connection from container', {
      'fd.name': '10.1.2.3:51514->203.0.113.9:443',
      'fd.lport': 51514,
      'fd.rport': 443,
      'fd.l4proto': 'tcp',
    });
    const [s] = defaults.mapAlert(a);
    expect(s?.kind).toBe('connect');
    expect(s?.net).toMatchObject({ clientIp: '10.1.2.3', clientPort: 51514, serverIp: '203.0.113.9', serverPort: 443, remoteIp: '203.0.113.9', remotePort: 443 });
    // Accept: the remote peer is the client.
    const b = alertAt(2, 'Companion signal: inbound connection accepted in container', { 'fd.name': '198.51.100.7:40001->172.17.0.2:42391' });
    const [t] = defaults.mapAlert(b);
    expect(t?.net).toMatchObject({ remoteIp: '198.51.100.7', remotePort: 40001, serverPort: 42391 });
    // IPv6 tuples and explicit fd.cip/fd.sip win.
    const v6 = alertAt(3, 'Companion signal: outbound connection from container', { 'fd.name': '::1:5000->fd00::2:80' });
    expect(defaults.mapAlert(v6)[0]?.net).toMatchObject({ clientIp: '::1', clientPort: 5000, serverIp: 'fd00::2', serverPort: 80 });
    const c = alertAt(3, 'Companion signal: outbound connection from container', { 'fd.name': '1.1.1.1:1->2.2.2.2:2', 'fd.sip': '9.9.9.9', 'fd.sport': 53 });
    expect(defaults.mapAlert(c)[0]?.net.remoteIp).toBe('9.9.9.9');
  });

  it('writes addresses in one canonical text and reads the unix-socket form without a peer', () => {
    const mapped = alertAt(4, 'Companion signal: inbound connection accepted in container', { 'fd.name': '[::ffff:198.51.100.7]:40001->[::ffff:10.0.0.2]:22' });
    expect(defaults.mapAlert(mapped)[0]?.net).toMatchObject({ remoteIp: '198.51.100.7', clientIp: '198.51.100.7', serverIp: '10.0.0.2', serverPort: 22 });
    // What a real Falco printed for a connect to the mounted Docker socket (falco-reference/recorded/README.md).
    const unix = alertAt(5, 'Companion signal: container runtime socket connect', { 'fd.name': 'ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock' });
    const [s] = defaults.mapAlert(unix);
    expect(s?.kind).toBe('escape');
    expect(s?.net).toMatchObject({ clientIp: null, serverIp: null, remoteIp: null, remotePort: null });
  });

  it('normalises container ids (host, empty, <NA>, null → null)', () => {
    for (const v of ['host', '', '<NA>', null, undefined]) expect(normaliseContainerId(v as string | null | undefined)).toBeNull();
    expect(normaliseContainerId('abc123def456')).toBe('abc123def456');
    const host = alertAt(1, 'Packet socket created in container', { 'container.id': 'host' });
    expect(defaults.mapAlert(host)[0]?.containerId).toBeNull();
  });

  it('collects process facts including ancestors', () => {
    const a = alertAt(1, 'Companion signal: socket filter attached', {
      'proc.pid': 4242,
      'proc.ppid': 1,
      'proc.sid': 4242,
      'proc.apid[2]': 1,
      'proc.name': 'udevd',
      'proc.exepath': '/dev/shm/kdmtmpflush',
      'proc.cmdline': '/sbin/udevd -d',
      'proc.pname': 'bash',
      'proc.pexepath': '/usr/bin/bash',
      'proc.aname[2]': 'containerd-shim',
      'proc.aname[3]': '<NA>',
      'evt.arg.optname': 'SO_ATTACH_FILTER',
    });
    const [s] = defaults.mapAlert(a);
    expect(s?.proc).toEqual({ pid: 4242, ppid: 1, sid: 4242, apids: [1], name: 'udevd', exepath: '/dev/shm/kdmtmpflush', cmdline: '/sbin/udevd -d', ancestors: ['bash', '/usr/bin/bash', 'containerd-shim'] });
    expect(s?.keys['optname']).toBe('SO_ATTACH_FILTER');
    expect(s?.imageRepository).toBe('docker.io/library/nginx');
    expect(s?.namespace).toBe('web');
  });

  it('maps official rules and subtype maps', () => {
    expect(defaults.mapAlert(alertAt(1, 'Launch Privileged Container', {})).map((s) => `${s.kind}/${s.subtype}`)).toEqual(['escape/privileged', 'container_start/privileged']);
    expect(defaults.mapAlert(alertAt(1, 'Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET' }))[0]?.subtype).toBe('inet_raw');
    expect(defaults.mapAlert(alertAt(1, 'Companion signal: outbound connection from container', { 'fd.name': '10.0.0.1:3333->10.0.0.9:10250', 'fd.sport': 10250 })).map((s) => s.kind)).toEqual(['connect', 'kubelet_contact']);
    expect(defaults.mapAlert(alertAt(1, 'Some other rule', {}))).toEqual([]);
  });

  it('evaluates field predicates (cidr, numeric, exists, tags)', () => {
    const rules = loadRulesFile('/x.yaml', {
      text: [
        'signals:',
        '  - tags: [net]',
        '    where: [{field: fd.sip, cidr: [10.0.0.0/8, "fd00::/8"]}, {field: fd.sport, lt: 1024}, {field: proc.name, exists: true}]',
        '    emit: {kind: connect}',
      ].join('\n'),
    });
    const m = compileMapping(rules.signals);
    const base = { 'proc.name': 'curl', 'fd.sport': 443 };
    expect(m.mapAlert(alertAt(1, 'R', { ...base, 'fd.sip': '10.2.3.4' }, ['net']))).toHaveLength(1);
    expect(m.mapAlert(alertAt(1, 'R', { ...base, 'fd.sip': 'fd00::1' }, ['net']))).toHaveLength(1);
    expect(m.mapAlert(alertAt(1, 'R', { ...base, 'fd.sip': '11.2.3.4' }, ['net']))).toHaveLength(0);
    expect(m.mapAlert(alertAt(1, 'R', { ...base, 'fd.sip': '10.2.3.4' }, ['other']))).toHaveLength(0);
    expect(m.mapAlert(alertAt(1, 'R', { ...base, 'fd.sport': 8080, 'fd.sip': '10.2.3.4' }, ['net']))).toHaveLength(0);
    expect(m.mapAlert(alertAt(1, 'R', { 'proc.name': null, 'fd.sport': 1, 'fd.sip': '10.2.3.4' }, ['net']))).toHaveLength(0);
  });

  it('never throws on arbitrary output_fields', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('fd.name', 'proc.pid', 'proc.cmdline', 'container.id', 'fd.sip', 'proc.apid[2]'), fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.boolean())), (fields) => {
        for (const rule of ['Companion signal: firewall tool run', 'Companion signal: inbound connection accepted in container']) defaults.mapAlert(alertAt(1, rule, fields));
      }),
      { numRuns: 300 },
    );
  });
});

describe('firewall command lines', () => {
  it('parses BPFDoor-style iptables ACCEPT and nat REDIRECT', () => {
    expect(parseFirewallCmdline('/sbin/iptables -I INPUT -s 198.51.100.7 -j ACCEPT')).toMatchObject({
      'fw.tool': 'iptables', 'fw.action': 'insert', 'fw.table': 'filter', 'fw.chain': 'INPUT', 'fw.src': '198.51.100.7', 'fw.target': 'ACCEPT', 'fw.single_source': true,
    });
    expect(parseFirewallCmdline('iptables -t nat -A PREROUTING -s 198.51.100.7/32 -p tcp --dport 443 -j REDIRECT --to-ports 42392')).toMatchObject({
      'fw.action': 'append', 'fw.table': 'nat', 'fw.chain': 'PREROUTING', 'fw.src': '198.51.100.7/32', 'fw.target': 'REDIRECT', 'fw.dport': 443, 'fw.to_ports': 42392, 'fw.single_source': true, 'fw.proto': 'tcp',
    });
    expect(parseFirewallCmdline('sh -c "iptables -D INPUT -s 198.51.100.7 -j ACCEPT"')).toMatchObject({ 'fw.action': 'delete', 'fw.src': '198.51.100.7' });
  });

  it('is not single-source for networks, wildcards or negation', () => {
    expect(parseFirewallCmdline('iptables -A INPUT -s 10.0.0.0/8 -j ACCEPT')?.['fw.single_source']).toBe(false);
    expect(parseFirewallCmdline('iptables -A INPUT -s 0.0.0.0/0 -j ACCEPT')?.['fw.single_source']).toBe(false);
    expect(parseFirewallCmdline('iptables -A INPUT ! -s 1.2.3.4 -j ACCEPT')?.['fw.single_source']).toBe(false);
    expect(parseFirewallCmdline('iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001')).toMatchObject({ 'fw.single_source': false, 'fw.target': 'REDIRECT', 'fw.to_ports': 15001 });
  });

  it('parses nft, ufw and firewall-cmd', () => {
    expect(parseFirewallCmdline('nft add rule inet filter input ip saddr 203.0.113.5 tcp dport 22 accept')).toMatchObject({
      'fw.tool': 'nft', 'fw.action': 'append', 'fw.table': 'filter', 'fw.chain': 'input', 'fw.src': '203.0.113.5', 'fw.dport': 22, 'fw.target': 'ACCEPT', 'fw.single_source': true,
    });
    expect(parseFirewallCmdline('nft add rule ip nat prerouting ip saddr 203.0.113.5 tcp dport 80 redirect to :42400')).toMatchObject({ 'fw.target': 'REDIRECT', 'fw.to_ports': 42400 });
    expect(parseFirewallCmdline('ufw allow from 203.0.113.5 to any port 22')).toMatchObject({ 'fw.tool': 'ufw', 'fw.action': 'append', 'fw.src': '203.0.113.5', 'fw.dport': 22, 'fw.target': 'ACCEPT', 'fw.single_source': true });
    expect(parseFirewallCmdline('ufw delete allow from 203.0.113.5 to any port 22')).toMatchObject({ 'fw.action': 'delete' });
    expect(parseFirewallCmdline(`firewall-cmd --add-rich-rule='rule family="ipv4" source address="203.0.113.5" port port="22" protocol="tcp" accept'`)).toMatchObject({
      'fw.tool': 'firewall-cmd', 'fw.action': 'append', 'fw.src': '203.0.113.5', 'fw.dport': 22, 'fw.target': 'ACCEPT', 'fw.single_source': true,
    });
    expect(parseFirewallCmdline('firewall-cmd --add-forward-port=port=80:proto=tcp:toport=42400')).toMatchObject({ 'fw.target': 'REDIRECT', 'fw.to_ports': 42400, 'fw.table': 'nat' });
    expect(parseFirewallCmdline('ls -la')).toBeNull();
    expect(parseFirewallCmdline(null)).toBeNull();
  });

  it('never throws on arbitrary command lines', () => {
    fc.assert(
      fc.property(fc.constantFrom('iptables', 'nft', 'ufw', 'firewall-cmd', 'sh -c', 'sudo iptables'), fc.array(fc.oneof(fc.string(), fc.constantFrom('-s', '-j', '-t', '-I', '--dport', 'saddr', 'redirect', 'to', '!', 'delete', 'from', '--add-rich-rule=rule')), { maxLength: 12 }), (tool, args) => {
        const r = parseFirewallCmdline(`${tool} ${args.join(' ')}`);
        if (r) expect(typeof r['fw.single_source']).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });
});

describe('globs', () => {
  it('fast paths agree with the general matcher', () => {
    const cases: [string, string, boolean][] = [
      ['*/dhclient', '/sbin/dhclient', true], ['*/dhclient', '/sbin/dhclient6', false], ['*kube-proxy*', 'registry.k8s.io/kube-proxy', true],
      ['docker.io/*', 'docker.io/library/x', true], ['docker.io/*', 'quay.io/x', false], ['a*b*c', 'aXbYc', true], ['a?c', 'abc', true], ['exact', 'exact', true], ['*', '', true],
    ];
    for (const [g, s, want] of cases) expect(compileGlob(g)(s), `${g} ~ ${s}`).toBe(want);
  });
});
