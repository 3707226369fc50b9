import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FieldValue } from '../../src/alert.js';
import { formatIp, parseIp, type Ip } from '../../src/net/address.js';
import { parseFdName, SocketView, type FdName } from '../../src/net/socket.js';

const ip = (s: string): Ip => parseIp(s) as Ip;

describe('parseFdName', () => {
  it('reads the TCP/UDP tuple, IPv6 with and without brackets', () => {
    expect(parseFdName('10.42.1.30:42244->10.43.0.1:443')).toEqual({
      kind: 'inet',
      client: { text: '10.42.1.30', ip: ip('10.42.1.30'), port: 42244 },
      server: { text: '10.43.0.1', ip: ip('10.43.0.1'), port: 443 },
    });
    const b = parseFdName('[2001:db8::1]:5000->[2606:4700::1]:443');
    const n = parseFdName('2001:db8::1:5000->2606:4700::1:443');
    expect(b).toEqual(n);
    expect(n?.kind === 'inet' && [n.client.port, formatIp(n.server.ip), n.server.port]).toEqual([5000, '2606:4700::1', 443]);
    const v6 = parseFdName('::1:5000->fd00::2:80');
    expect(v6?.kind === 'inet' && [v6.client.text, v6.client.port, v6.server.text, v6.server.port]).toEqual(['::1', 5000, 'fd00::2', 80]);
  });

  it('recognises the unix-socket form a real Falco prints (kernel addresses, then the server-bound path)', () => {
    expect(parseFdName('ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock')).toEqual({ kind: 'unix', local: 'ffff88813acaa880', peer: 'ffff88813aca9680', path: '/var/run/docker.sock' });
    expect(parseFdName('ffff88813acaa880->ffff88813aca9680')).toEqual({ kind: 'unix', local: 'ffff88813acaa880', peer: 'ffff88813aca9680', path: null });
    expect(parseFdName('ffff88813acaa880->ffff88813aca9680 @/tmp/.X11-unix/X0')).toMatchObject({ kind: 'unix', path: '@/tmp/.X11-unix/X0' });
  });

  it('reads a bound or listening socket\'s own address', () => {
    expect(parseFdName('127.0.0.1:42852')).toEqual({ kind: 'bound', local: { text: '127.0.0.1', ip: ip('127.0.0.1'), port: 42852 } });
  });

  it('is null for everything else', () => {
    for (const bad of ['/root/kubectl', '/proc/sys/net/ipv4/ping_group_range', '<NA>', '', '1.2.3.4:80->', 'a:1->b:2', '1.2.3.4:99999->5.6.7.8:1', '1.2.3.4:1->5.6.7.8:2->9.9.9.9:3', '010.0.0.1:1->5.6.7.8:2', null, undefined]) {
      expect(parseFdName(bad), String(bad)).toBeNull();
    }
  });

  const v4 = fc.nat(0xffffffff).map((n): Ip => ({ v: 4, n }));
  const v6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).filter((n) => n >> 32n !== 0xffffn).map((n): Ip => ({ v: 6, n }));
  const port = fc.nat(65535);

  it('reads back any tuple Falco could print (property)', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6), port, fc.oneof(v4, v6), port, fc.boolean(), (c, cp, s, sp, brackets) => {
        const t = (a: Ip): string => (a.v === 6 && brackets ? `[${formatIp(a)}]` : formatIp(a));
        const r = parseFdName(`${t(c)}:${cp}->${t(s)}:${sp}`) as Extract<FdName, { kind: 'inet' }>;
        expect(r.kind).toBe('inet');
        expect([r.client.ip, r.client.port, r.server.ip, r.server.port]).toEqual([c, cp, s, sp]);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on arbitrary text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('1', 'f', ':', '.', '-', '>', '[', ']', ' ', '/', '%') , maxLength: 40 }), (s) => {
        parseFdName(s);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('SocketView: the one remote-peer rule', () => {
  const view = (f: Record<string, FieldValue>): SocketView => new SocketView(f);
  const remote = (f: Record<string, FieldValue>, side: 'client' | 'server' | null): [string, number | null, string] | null => {
    const p = view(f).remote(side);
    return p ? [formatIp(p.ip), p.port, p.nameField] : null;
  };

  it('connect → the server, accept → the client, from the tuple; lport/rport never decide', () => {
    const f = { 'fd.name': '10.42.1.30:42244->198.51.100.7:443', 'fd.lport': 443, 'fd.rport': 42244, 'fd.rip': '10.42.1.30' };
    expect(remote(f, 'server')).toEqual(['198.51.100.7', 443, 'fd.sip.name']);
    expect(remote(f, 'client')).toEqual(['10.42.1.30', 42244, 'fd.cip.name']);
  });

  it('explicit fd.cip/fd.sip win over the tuple; a missing explicit port comes from the same side of the tuple', () => {
    const f = { 'fd.name': '10.0.0.1:1->192.0.2.10:80', 'fd.sip': '192.0.2.9', 'fd.sport': 8443 };
    expect(remote(f, 'server')).toEqual(['192.0.2.9', 8443, 'fd.sip.name']);
    expect(remote({ 'fd.name': '10.0.0.1:1->192.0.2.10:80', 'fd.sip': '192.0.2.9' }, 'server')).toEqual(['192.0.2.9', 80, 'fd.sip.name']);
    // Not an address (or <NA>): the tuple.
    expect(remote({ 'fd.name': '10.0.0.1:1->192.0.2.10:80', 'fd.sip': '<NA>', 'fd.sport': 8443 }, 'server')).toEqual(['192.0.2.10', 80, 'fd.sip.name']);
  });

  it('fd.rip is the last resort with a known side, the first choice without one', () => {
    expect(remote({ 'fd.rip': '::ffff:8.8.4.4', 'fd.rport': 53, 'fd.name': '<NA>' }, 'server')).toEqual(['8.8.4.4', 53, 'fd.rip.name']);
    expect(remote({ 'fd.rip': '8.8.4.4', 'fd.rport': 53, 'fd.name': '10.0.0.1:1->192.0.2.10:80' }, null)).toEqual(['8.8.4.4', 53, 'fd.rip.name']);
    expect(remote({ 'fd.name': '10.0.0.1:1->192.0.2.10:80' }, null)).toEqual(['192.0.2.10', 80, 'fd.sip.name']);
    expect(remote({ 'fd.name': 'ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock' }, 'server')).toBeNull();
    expect(remote({ 'proc.name': 'bash' }, 'server')).toBeNull();
  });

  it('parses the tuple only when an explicit field does not answer', () => {
    const seen: string[] = [];
    const parse = (t: string): Ip | null => (seen.push(t), parseIp(t));
    new SocketView({ 'fd.sip': '192.0.2.9', 'fd.sport': 443, 'fd.name': '10.0.0.1:1->192.0.2.9:443' }, parse).remote('server');
    expect(seen).toEqual(['192.0.2.9']);
  });
});
