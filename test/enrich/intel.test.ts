import { mkdtempSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IntelLists } from '../../src/enrich/intel.js';
import { parseIp } from '../../src/net/address.js';
import { Metrics } from '../../src/metrics.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-intel-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function capture(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      out.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const ip = (s: string) => parseIp(s)!;

/** Bump the mtime so a rewrite within the same millisecond is still seen as a change. */
function rewrite(path: string, text: string, bump: number): void {
  writeFileSync(path, text);
  const t = new Date(Date.now() + bump * 1000);
  utimesSync(path, t, t);
}

describe('IntelLists', () => {
  it('parses IPs, CIDRs, domains, wildcards, comments; malformed lines are counted and logged with file:line', async () => {
    const p = join(dir, 'feodo.txt');
    writeFileSync(
      p,
      [
        '# Feodo tracker style list',
        '; another comment style',
        '',
        '203.0.113.66',
        '198.51.100.0/24   # a whole network',
        '2001:db8:bad::/48',
        'evil.example',
        '*.c2.example',
        '.dyn.example.',
        'EXAMPLE-UPPER.TEST',
        'not valid!',
        '999.1.1.1',
        '10.0.0.0/33',
        '   ',
      ].join('\r\n'),
    );
    const metrics = new Metrics({ collectDefault: false });
    const log = capture();
    const intel = new IntelLists({ lists: [{ name: 'feodo', path: p }], maxEntries: 1000, logger: log.logger, metrics });
    expect(intel.checkReload()).toEqual(['feodo']);
    expect(intel.counts()).toEqual({ feodo: 7 });
    expect(intel.matchIp(ip('203.0.113.66'))).toEqual(['feodo']);
    expect(intel.matchIp(ip('::ffff:203.0.113.66'))).toEqual(['feodo']);
    expect(intel.matchIp(ip('203.0.113.67'))).toEqual([]);
    expect(intel.matchIp(ip('198.51.100.200'))).toEqual(['feodo']);
    expect(intel.matchIp(ip('2001:db8:bad:1::5'))).toEqual(['feodo']);
    expect(intel.matchDomain('evil.example')).toEqual(['feodo']);
    expect(intel.matchDomain('EVIL.example.')).toEqual(['feodo']);
    expect(intel.matchDomain('www.evil.example')).toEqual([]); // exact only
    expect(intel.matchDomain('a.b.c2.example')).toEqual(['feodo']);
    expect(intel.matchDomain('c2.example')).toEqual([]); // *.x matches names below x
    expect(intel.matchDomain('host.dyn.example')).toEqual(['feodo']);
    expect(intel.matchDomain('example-upper.test')).toEqual(['feodo']);
    expect(intel.matchDomain('notc2.example')).toEqual([]);
    const warns = log.lines().filter((l) => l['level'] === 40);
    expect(warns.map((w) => w['where'])).toEqual([`${p}:11`, `${p}:12`, `${p}:13`]);
    expect(await metrics.text()).toMatch(/falco_companion_intel_malformed_lines_total\{list="feodo"\} 3/);
  });

  it('reloads a changed file, keeps entries when the file disappears, and names every matching list', () => {
    const a = join(dir, 'a.txt');
    const b = join(dir, 'b.txt');
    writeFileSync(a, '192.0.2.1\n');
    writeFileSync(b, '192.0.2.0/24\nbad.example\n');
    const intel = new IntelLists({ lists: [{ name: 'listA', path: a }, { name: 'listB', path: b }], maxEntries: 1000, logger: pino({ level: 'silent' }), metrics: new Metrics({ collectDefault: false }) });
    intel.checkReload();
    expect(intel.matchIp(ip('192.0.2.1'))).toEqual(['listA', 'listB']);
    expect(intel.checkReload()).toEqual([]); // nothing changed
    rewrite(a, '192.0.2.99\n', 5);
    expect(intel.checkReload()).toEqual(['listA']);
    expect(intel.matchIp(ip('192.0.2.1'))).toEqual(['listB']);
    expect(intel.matchIp(ip('192.0.2.99'))).toEqual(['listA', 'listB']);
    unlinkSync(a);
    expect(intel.checkReload()).toEqual([]);
    expect(intel.matchIp(ip('192.0.2.99'))).toEqual(['listA', 'listB']); // previous entries kept
    rewrite(a, 'new.example\n', 10);
    expect(intel.checkReload()).toEqual(['listA']);
    expect(intel.matchDomain('new.example')).toEqual(['listA']);
    expect(intel.matchIp(ip('192.0.2.99'))).toEqual(['listB']);
  });

  it('a missing list is reported, not fatal; max_entries bounds a list (rest counted)', async () => {
    const big = join(dir, 'big.txt');
    writeFileSync(big, Array.from({ length: 50 }, (_, i) => `10.0.${i}.1`).join('\n'));
    const metrics = new Metrics({ collectDefault: false });
    const intel = new IntelLists({ lists: [{ name: 'gone', path: join(dir, 'nope.txt') }, { name: 'big', path: big }], maxEntries: 10, logger: pino({ level: 'silent' }), metrics });
    expect(intel.checkReload()).toEqual(['big']);
    expect(intel.missing()).toEqual(['gone']);
    expect(intel.counts()).toEqual({ gone: 0, big: 10 });
    expect(intel.matchIp(ip('10.0.9.1'))).toEqual(['big']);
    expect(intel.matchIp(ip('10.0.10.1'))).toEqual([]);
    expect(await metrics.text()).toMatch(/falco_companion_intel_skipped_entries_total\{list="big"\} 40/);
  });
});
