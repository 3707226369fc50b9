/** The /proc and ss parsers behind the footprint checks, on real text and on this process. */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ssFilterFor } from '../../src/emulate/footprint.js';
import { execTmpfs } from '../../src/emulate/run.js';
import { ProcReader, hasCapability, parseHexAddr, parseInetTable, parsePacketTable, parseUnixTable } from '../../src/emulate/proc.js';

describe('/proc parsers', () => {
  it('net/packet rows (as printed for a packet socket with a filter)', () => {
    const rows = parsePacketTable('sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n000000003d78bf83 3      3    0800   0     1 0      0      64450 \n');
    expect(rows).toEqual([{ type: 3, proto: '0800', ifindex: 0, inode: 64450 }]);
  });

  it('net/tcp and net/raw rows: little-endian IPv4, port, state, inode', () => {
    const tcp = parseInetTable(
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n' +
        '   0: 0100007F:A597 0100007F:AB2A 01 00000000:00000000 00:00000000 00000000     0        0 66147 1 0000000035b45831 20 0 0 11 -1\n' +
        '   1: 017100CB:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0 100 0 0 10 0\n',
    );
    expect(tcp[0]).toMatchObject({ local: '127.0.0.1', localPort: 42391, remote: '127.0.0.1', remotePort: 43818, state: '01', inode: 66147 });
    expect(tcp[1]).toMatchObject({ local: '203.0.113.1', localPort: 8443, state: '0A', inode: 1234 });
    expect(parseHexAddr('00000000:0001')).toEqual({ ip: '0.0.0.0', port: 1 });
  });

  it('net/unix rows: listening flag and path', () => {
    const rows = parseUnixTable('Num       RefCount Protocol Flags    Type St Inode Path\nffff8881: 00000002 00000000 00010000 0001 01 184487 /var/run/docker.sock\nffff8882: 00000003 00000000 00000000 0001 03 184490\n');
    expect(rows).toEqual([
      { inode: 184487, listening: true, path: '/var/run/docker.sock' },
      { inode: 184490, listening: false, path: null },
    ]);
  });

  it('ss -0 -b -p: the filter line under the socket of one pid', () => {
    const text = 'Netid Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\np_raw 0 0 ip:* * users:(("kworker/0:1",pid=7950,fd=4))\n\tbpf filter (13):  0x28 0 0 12, 0x15 0 10 2048,\np_raw 0 0 *:lo * users:(("tcpdump",pid=8,fd=3))\n';
    expect(ssFilterFor(text, 7950)).toBe(13);
    expect(ssFilterFor(text, 8)).toBeNull();
    expect(ssFilterFor(text, 795)).toBeNull();
  });

  it('reads this process: a listening socket by inode, comm, exe, capabilities, mounts', async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as { port: number }).port;
    try {
      const p = new ProcReader();
      const row = (p.inet(process.pid, 'tcp') ?? []).find((r) => r.localPort === port && r.state === '0A');
      expect(row).toBeDefined();
      expect([...p.sockets(process.pid).values()]).toContain(row?.inode);
      expect(p.comm(process.pid)).toBeTruthy();
      expect(p.exe(process.pid)).toBe(process.execPath);
      expect(p.alive(process.pid)).toBe(true);
      expect(p.alive(2 ** 22 + 12345)).toBe(false);
      expect(p.innerPid(process.pid)).toBe(process.pid);
      const cap = p.capEff('self');
      expect(cap).not.toBeNull();
      if (process.getuid?.() === 0 && cap !== null) expect(hasCapability(cap, 'NET_RAW')).toBe(true);
      expect(p.mountOf(process.pid, '/proc/self')?.fsType).toBe('proc');
    } finally {
      srv.close();
    }
  });

  it('finds an exec-capable tmpfs when there is one', () => {
    const d = execTmpfs();
    if (d !== null) expect(new ProcReader().mountOf(process.pid, d)?.fsType).toBe('tmpfs');
  });
});
