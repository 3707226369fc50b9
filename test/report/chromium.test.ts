/**
 * The report page of every detection of every shipped example, rendered in headless Chromium
 * (Debian `chromium`, driven over the DevTools protocol: test/support/chromium.ts): a screenshot,
 * structural facts read from the DOM (every evidence signal present and in time order, on the
 * axis and in the table; a lineage node per process; a row per destination; the image rows) and
 * not a single request besides the page itself. A page of hostile values (markup, event handlers,
 * control and bidi characters in command lines, paths, names and the rule) stays inert text.
 *
 * Skipped, saying so, when chromium is not installed. UPDATE_REPORT_SCREENSHOTS=1 rewrites the
 * documentation screenshots in docs/report/ (one per detector).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCases } from '../../src/cases/load.js';
import { runCase } from '../../src/cases/run.js';
import type { DetectionRecord } from '../../src/journal/types.js';
import { renderPage } from '../../src/report/html.js';
import { lineage, timeline } from '../../src/report/model.js';
import { CHROMIUM, Chromium } from '../support/chromium.js';

const DOCS = 'docs/report';
const UPDATE = process.env['UPDATE_REPORT_SCREENSHOTS'] === '1';
if (!CHROMIUM) console.warn('report: chromium not installed (apt-get install chromium): the rendering tests are skipped');

/** Every detection record of the shipped examples, by case. */
const all: { name: string; r: DetectionRecord }[] = findCases(['examples/detection-tests']).cases.flatMap((c) => {
  const res = runCase(c, { records: true });
  return res.records.map((r) => ({ name: res.name, r }));
});

/** Per detector, the record with the richest page (most evidence; enriched cases first). */
function showcase(): Map<string, { name: string; r: DetectionRecord }> {
  const best = new Map<string, { name: string; r: DetectionRecord }>();
  const weight = (x: { name: string; r: DetectionRecord }): number => x.r.evidence.length + (x.name.includes('enriched') ? 100 : 0);
  for (const x of all) {
    const d = x.r.detector ?? '?';
    const cur = best.get(d);
    if (!cur || weight(x) > weight(cur)) best.set(d, x);
  }
  return best;
}

interface DomFacts {
  readonly tableRows: [string, string][];
  readonly axisRows: [string, string][];
  readonly lineagePids: string[];
  readonly reparented: string[];
  readonly destinations: string[];
  readonly images: string[];
  readonly active: number;
  readonly title: string;
}

const FACTS = `(() => {
  const rows = (sel) => [...document.querySelectorAll(sel)].map((e) => [e.getAttribute('data-rule'), e.getAttribute('data-time-ns')]);
  return {
    tableRows: rows('tr.evidence'),
    axisRows: rows('g.tl-signal'),
    lineagePids: [...document.querySelectorAll('g.lineage-node')].map((e) => e.getAttribute('data-pid')),
    reparented: [...document.querySelectorAll('g.lineage-node')].flatMap((e) => (e.getAttribute('data-reparented') || '').split(' ').filter((x) => x !== '')),
    destinations: [...document.querySelectorAll('tr.destination')].map((e) => e.getAttribute('data-ip') + ':' + e.getAttribute('data-port')),
    images: [...document.querySelectorAll('table.image')].map((e) => e.getAttribute('data-container')),
    active: document.querySelectorAll('script, img, iframe, object, embed, link, base, form, video, audio, source, frame, meta[http-equiv="refresh"], [onload], [onerror], [onclick]').length,
    title: document.title,
  };
})()`;

describe.skipIf(!CHROMIUM)('report page in headless Chromium', () => {
  let browser: Chromium;
  let dir: string;
  beforeAll(async () => {
    browser = await Chromium.launch();
    dir = mkdtempSync(join(tmpdir(), 'fc-report-'));
  });
  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('covers every detector with at least one shipped example', () => {
    expect([...showcase().keys()].sort()).toEqual(['beacon', 'escape_chain', 'first_seen_egress', 'k8s_spread', 'knock', 'socket_filter', 'unexpected_image']);
  });

  const shots = showcase();
  for (const { name, r } of all) {
    it(`${name}: ${r.rule}`, async () => {
      const file = join(dir, `${r.id}.html`);
      writeFileSync(file, renderPage([r], { generatedAtMs: 1_750_000_000_000 }));
      const url = pathToFileURL(file).href;
      const page = await browser.visit(url);
      const png = await page.screenshot();
      expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      expect(png.readUInt32BE(16)).toBe(1040); // IHDR width
      expect(png.readUInt32BE(20)).toBeGreaterThan(800);
      const f = await page.evaluate<DomFacts>(FACTS);
      // Nothing but the page was asked for; nothing ran.
      expect(page.requests).toEqual([url]);
      expect(page.blocked).toEqual([]);
      expect(page.console).toEqual([]);
      expect(f.active).toBe(0);
      expect(f.title).toBe(`${r.priority}: ${r.rule} · falco-companion`);
      // Every evidence signal, in time order, on the axis and in the table.
      const want = [...r.evidence].sort((a, b) => (BigInt(a.timeNs) < BigInt(b.timeNs) ? -1 : BigInt(a.timeNs) > BigInt(b.timeNs) ? 1 : 0)).map((e) => [e.rule, e.timeNs]);
      expect(want.length).toBeGreaterThan(0);
      expect(f.tableRows).toEqual(want);
      expect(f.axisRows).toEqual(want);
      // A lineage node per process of the evidence (and for parents known by pid).
      const nodes = lineage(timeline(r)).nodes;
      expect(f.lineagePids.length).toBe(nodes.size);
      for (const e of r.evidence) if (e.proc.pid !== null) expect(f.lineagePids).toContain(String(e.proc.pid));
      // Every parent the evidence names: a node (the creator), or noted on its child as a later re-parenting.
      for (const e of r.evidence) if (e.proc.ppid !== null && e.proc.ppid !== e.proc.pid) expect([...f.lineagePids, ...f.reparented]).toContain(String(e.proc.ppid));
      // A row per remote endpoint of the evidence.
      const peers = new Set(r.evidence.filter((e) => e.net.remoteIp !== null).map((e) => `${e.net.remoteIp}:${e.net.remotePort ?? ''}`));
      expect(new Set(f.destinations)).toEqual(peers);
      // The image of each container of the evidence.
      for (const e of r.evidence) if (e.workload.id !== null) expect(f.images).toContain(e.workload.id);
      writeFileSync(join(dir, `${name}-${r.id}.png`), png);
      if (UPDATE && shots.get(r.detector ?? '?')?.r === r) {
        // The documentation keeps the top of the page: the chain at a glance (header, axis, evidence, lineage).
        mkdirSync(DOCS, { recursive: true });
        writeFileSync(join(DOCS, `${r.detector ?? 'detection'}.png`), await page.screenshot(1040, 1500));
      }
    });
  }

  it('keeps a documentation screenshot per detector in docs/report/', () => {
    for (const d of shots.keys()) {
      const p = join(DOCS, `${d}.png`);
      expect(existsSync(p), `${p} (UPDATE_REPORT_SCREENSHOTS=1 npx vitest run test/report/chromium.test.ts)`).toBe(true);
      expect(readFileSync(p).subarray(1, 4).toString()).toBe('PNG');
    }
  });

  it('hostile values stay text: no element, no handler, no request, no dialog', async () => {
    const base = all.find((x) => x.r.detector === 'socket_filter')?.r;
    if (!base) throw new Error('a socket_filter example');
    const evil = `<script>window.__pwned=1</script><img src="http://203.0.113.9/x.png" onerror="alert(1)"><svg onload=alert(2)>"'&amp;\u0007\u202egnp.exe`;
    const hostile: DetectionRecord = {
      ...base,
      incident: `inc-${evil}`,
      rule: `Rule <b onclick=alert(3)>${evil}`,
      message: evil,
      hostname: evil,
      outputFields: { ...base.outputFields, 'container.name': evil, 'k8s.pod.name': `</title><script>alert(4)</script>`, 'k8s.ns.name': evil },
      why: { ...base.why, [`key${evil}`]: evil },
      evidence: base.evidence.map((e, i) => ({
        ...e,
        rule: `${e.rule}${evil}`,
        proc: { ...e.proc, name: `n${i}${evil}`, exepath: `/tmp/${evil}`, cmdline: `sh -c '${evil}'`, ancestors: [evil] },
        workload: { ...e.workload, name: evil, pod: evil, namespace: evil },
        keys: { ...e.keys, evil },
        enrichment: { ...e.enrichment, 'dest.rdns': evil, 'image.newest_layer_cmd': evil },
      })),
      talon: { ...base.talon, 'k8s.ns.name': evil, tags: [evil] },
    };
    const file = join(dir, 'hostile.html');
    writeFileSync(file, renderPage([hostile], { generatedAtMs: 0, incidents: new Map([[hostile.id, [hostile, { ...hostile, id: `01JZZZZZZZZZZZZZZZZZZZZZZZ`, rule: evil }]]]), linkBase: '' }));
    const url = pathToFileURL(file).href;
    const page = await browser.visit(url);
    expect(page.requests).toEqual([url]);
    expect(page.blocked).toEqual([]);
    expect(page.console).toEqual([]);
    const f = await page.evaluate<DomFacts & { pwned: unknown; text: string; links: string[] }>(
      `Object.assign(${FACTS}, { pwned: window.__pwned, text: document.body.innerText, links: [...document.querySelectorAll('a')].map((a) => a.getAttribute('href')) })`,
    );
    expect(f.active).toBe(0);
    expect(f.pwned).toBeUndefined();
    expect(f.text).toContain('<script>window.__pwned=1</script><img src="http://203.0.113.9/x.png" onerror="alert(1)">');
    expect(f.text).toContain('\\x07\\u202egnp.exe'); // the bell and the right-to-left override shown, not applied
    expect(f.text).not.toContain('\u202e');
    // The other detection of the incident links by id (relative: /detections/<id> on the ops port).
    expect(f.links).toEqual(['01JZZZZZZZZZZZZZZZZZZZZZZZ']);
    expect(f.tableRows.length).toBe(base.evidence.length);
    writeFileSync(join(dir, 'hostile.png'), await page.screenshot());
  });
});
