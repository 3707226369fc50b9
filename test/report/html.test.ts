/**
 * The report page without a browser: escaping of every attacker-controlled value (property test
 * over arbitrary strings: no markup survives), the page's self-containment (no URL to load, a CSP
 * that forbids loading), and the derived pictures (durations, labelled gaps, the lineage tree from
 * pids, destinations with their enrichment, image history), on shipped examples.
 */
import fc from 'fast-check';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCase } from '../../src/cases/run.js';
import type { DetectionRecord, EvidenceRecord } from '../../src/journal/types.js';
import { esc, short } from '../../src/report/escape.js';
import { REPORT_CSP, renderPage } from '../../src/report/html.js';
import { destinations, formatDuration, images, lineage, timeline } from '../../src/report/model.js';

const EX = 'examples/detection-tests';

function recordsOf(name: string): DetectionRecord[] {
  const r = runCase(join(EX, name), { records: true });
  expect(r.status).toBe('pass');
  return [...r.records];
}

/** The page with every text value of the record replaced by `s`. */
function pageWith(base: DetectionRecord, s: string): string {
  const ev = (e: EvidenceRecord): EvidenceRecord => ({
    ...e,
    rule: s,
    kind: s,
    subtype: s,
    proc: { ...e.proc, name: s, exepath: s, cmdline: s, ancestors: [s] },
    workload: { ...e.workload, id: s, name: s, namespace: s, pod: s, imageRepository: s, imageTag: s },
    net: { ...e.net, remoteIp: s, remoteDomain: s, l4proto: s },
    keys: { [s]: s },
    enrichment: { [s]: s, 'dest.rdns': s, 'image.repository': s, 'image.digest': s, 'image.newest_layer_cmd': s },
  });
  const r: DetectionRecord = {
    ...base,
    id: s,
    incident: s,
    rule: s,
    message: s,
    hostname: s,
    detector: s,
    output: s,
    mitre: [s],
    tags: [s],
    outputFields: { [s]: s, 'container.id': s, 'container.name': s, 'k8s.ns.name': s, 'k8s.pod.name': s },
    companion: { [s]: s },
    why: { [s]: s },
    response: [s],
    evidence: base.evidence.map(ev),
    talon: { ...base.talon, rule: s, tags: [s], hostname: s, 'k8s.ns.name': s, 'k8s.pod.name': s, 'container.id': s, 'fd.sip': s },
  };
  return renderPage([r], { generatedAtMs: 0, incidents: new Map([[s, [r, { ...r, id: `${s}2` }]]]), linkBase: '' });
}

describe('escaping', () => {
  it('esc: markup, quotes, control and bidi characters become inert, visible text', () => {
    expect(esc(`<script>"x"&'y'</script>`)).toBe('&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;');
    expect(esc('a\u0000b\u001bc\u007fd\u202ee\u2066f\u200bg\ufeffh')).toBe('a\\x00b\\x1bc\\x7fd\\u202ee\\u2066f\\u200bg\\ufeffh');
    expect(esc('tab\tand\nnewline stay')).toBe('tab\tand\nnewline stay');
    expect(esc(null)).toBe('');
    expect(esc(42)).toBe('42');
    expect(short('abcdef', 4)).toBe('abc…');
    expect(short('😀😀😀', 2)).toBe('😀…'); // never splits a surrogate pair
  });

  it('no value from an alert can open a tag, an attribute or an entity of its own (property test)', () => {
    const [base] = recordsOf('socket-filter-reverse-shell');
    if (!base) throw new Error('example');
    const skeleton = pageWith(base, 'X');
    const tags = (html: string): string[] => [...html.matchAll(/<\/?([a-zA-Z][\w-]*)/g)].map((m) => m[1] as string);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).filter((s) => s.length > 0), (s) => {
        const html = pageWith(base, s);
        // The same elements in the same order as with a harmless value: nothing injected.
        expect(tags(html)).toEqual(tags(skeleton));
        // No script element and no event-handler attribute (quoted values, which escaping keeps closed, set aside).
        const inTags = [...html.matchAll(/<[a-zA-Z][^>]*>/g)].map((m) => m[0].replace(/"[^"]*"/g, '""'));
        expect(inTags.filter((t) => /^<script|\son\w+=/i.test(t))).toEqual([]);
      }),
      // String.replace patterns ($&, $<, $', $`) once turned an escaped value into markup: always tried.
      { numRuns: 300, examples: [['$&'], ['$<x>'], ["$'"], ['$`'], ['</title><script>'], ['"><svg onload=1>'], ['\u202e']] },
    );
  });

  it('the page is self-contained: no URL to load, and a CSP that forbids loading anyway', () => {
    for (const r of [...recordsOf('c2-beacon-enriched'), ...recordsOf('knock-chain')]) {
      const html = renderPage([r], { generatedAtMs: 0 });
      expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
      expect(html).not.toMatch(/\s(src|href|xlink:href|action|poster|data)=["']?(?!#)/i);
      expect(html).not.toMatch(/url\(|@import|<script|<link|<img|<iframe/i);
      expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="${esc(REPORT_CSP)}">`);
    }
    expect(REPORT_CSP).toMatch(/^default-src 'none';/);
  });
});

describe('what the page derives', () => {
  it('formats durations with at most two units', () => {
    expect([0n, 999n, 50_000_000n, 1_000_000_000n, 2_450_000_000n, 59_960_000_000n, 95_000_000_000n, 3_600_000_000_000n, 10_740_000_000_000n, 90_061_000_000_000n].map(formatDuration)).toEqual([
      '0 s',
      '0 µs',
      '50 ms',
      '1 s',
      '2.5 s',
      '60 s',
      '1 min 35 s',
      '1 h',
      '2 h 59 min',
      '1 d 1 h',
    ]);
    expect(formatDuration(-2_000_000n)).toBe('-2 ms');
  });

  it('orders evidence by time with relative times and labels the long gaps', () => {
    const r = recordsOf('socket-filter-bind-shell').find((x) => x.rule.includes('new listener'));
    if (!r) throw new Error('example');
    const t = timeline({ ...r, evidence: [...r.evidence].reverse() });
    const ns = t.entries.map((e) => BigInt(e.e.timeNs));
    expect(ns).toEqual([...ns].sort((a, b) => (a < b ? -1 : 1)));
    expect(t.entries[0]?.relNs).toBe(0n);
    // Arming at 14:00:00.0xx, the listener 30 min later: the only gap worth a label.
    const labelled = t.entries.filter((e) => e.gapNs >= t.labelGapNs);
    expect(labelled.map((e) => e.e.kind)).toEqual(['listen']);
    expect(formatDuration(labelled[0]?.gapNs ?? 0n)).toBe('30 min 47 s');
    const html = renderPage([r], { generatedAtMs: 0 });
    expect(html).toContain('⋯ 30 min 47 s later');
    expect(html).toContain('+30 min 47 s');
  });

  it('builds the lineage tree from pids: a renamed process is one node, its children under it, an unseen parent inferred', () => {
    const r = recordsOf('knock-chain')[0];
    const sf = recordsOf('socket-filter-bind-shell').find((x) => x.rule.includes('new listener'));
    if (!r || !sf) throw new Error('examples');
    const l = lineage(timeline(sf));
    const armer = [...l.nodes.values()].find((n) => n.pid === 48211);
    expect(armer?.names).toEqual(['kdmtmpflush', 'hald-addon-acpi']); // renamed with prctl: both names kept
    expect(armer?.exes).toEqual(['/dev/shm/kdmtmpflush']);
    expect(armer?.kinds).toEqual(expect.arrayContaining(['tmpfs_exec', 'proc_rename', 'raw_socket/af_packet', 'filter_attach']));
    const listener = [...l.nodes.values()].find((n) => n.pid === 48990);
    expect(listener?.parent).toBe(armer?.key); // ppid 48211
    const root = l.nodes.get(armer?.parent ?? '');
    expect(root?.inferred).toBe(true);
    expect(root?.pid).toBe(48200);
    expect(l.roots).toEqual([root?.key]);
    expect(lineage(timeline(r)).nodes.size).toBeGreaterThan(0);
  });

  it('lists destinations with class, reverse DNS, ASN and first-seen, and the image history', () => {
    const beacon = recordsOf('c2-beacon-enriched').find((x) => x.detector === 'beacon');
    if (!beacon) throw new Error('example');
    const t = timeline(beacon);
    expect(destinations(t)).toEqual([
      expect.objectContaining({ ip: '203.0.113.77', port: 8443, direction: 'outbound', cls: 'public', rdns: 'vps-77.hosting.example', asn: '64511', asOrg: 'Example Hosting Ltd', firstSeen: 'first seen for this image', count: beacon.evidence.length }),
    ]);
    expect(images(t)).toEqual([
      expect.objectContaining({ container: 'a1b2c3d4e5f6', image: 'acme/web:1.4.2', registry: 'ghcr.io', tagMoved: true, pulledAt: '2025-03-04T09:58:40Z', newestLayerCmd: 'COPY kworkerd /tmp/.cache/kworkerd' }),
    ]);
    const html = renderPage([beacon], { generatedAtMs: 0 });
    for (const text of ['vps-77.hosting.example', 'AS64511', 'Example Hosting Ltd', 'first seen for this image', 'sha256:1f0e2d3c', 'COPY kworkerd /tmp/.cache/kworkerd', 'kubernetes:networkpolicy', 'k8s.ns.name=shop']) expect(html).toContain(esc(text));
  });

  it('renders the newest N on one page with an index', () => {
    const rs = [...recordsOf('knock-chain'), ...recordsOf('escape-chain')];
    const html = renderPage(rs, { generatedAtMs: 0 });
    expect(html).toContain(`<h1>${rs.length} detection(s)</h1>`);
    for (const r of rs) expect(html).toContain(`href="#d-${r.id}"`);
    expect((html.match(/<article class="detection"/g) ?? []).length).toBe(rs.length);
    expect(renderPage([], { generatedAtMs: 0 })).toContain('No detection recorded.');
  });
});
