/**
 * The incident timeline page: one detection (or the last N) as a self-contained HTML document
 * with inline SVG and CSS; no script, no external asset, and a Content-Security-Policy that lets
 * nothing load even if a value escaped its escaping. Sections: summary, evidence on a time axis,
 * evidence details, process lineage, destinations, image history, score and why, response steps,
 * Falco Talon fields, the other detections of the incident, and the forwarded alert.
 */
import { formatTimeNs } from '../alert.js';
import type { DetectionRecord, EvidenceRecord, StoredValue } from '../journal/types.js';
import { esc, short } from './escape.js';
import { destinations, formatDuration, images, lineage, timeline, type Destination, type ImageHistory } from './model.js';
import { clockTime, kindClass, lineageSvg, timelineSvg } from './svg.js';

/** The page's Content-Security-Policy (also sent as a header by the ops route). */
export const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface RenderOptions {
  /** Other detections of each record's incident (by record id), for the incident section. */
  readonly incidents?: ReadonlyMap<string, readonly DetectionRecord[]>;
  /** Link other detections as `<linkBase><id>` (the ops route: `/detections/`); null: plain ids. */
  readonly linkBase?: string | null;
  /** When the page was made (ms), for the footer. */
  readonly generatedAtMs: number;
  readonly version?: string;
}

const CSS = `
:root{--fg:#1d2330;--muted:#5b6475;--line:#d5dae3;--bg:#fff;--panel:#f6f7fa;--arm:#d9480f;--net:#1c64d1;--esc:#c92a2a;--fw:#7b2cbf;--other:#495057}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1000px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.meta{color:var(--muted);margin:2px 0}.mono,code,pre,td.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.badge{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--other);vertical-align:middle}
.p-Emergency,.p-Alert,.p-Critical{background:#a61e4d}.p-Error{background:#c92a2a}.p-Warning{background:#e67700}.p-Notice{background:#1c7ed6}.p-Informational,.p-Debug{background:#868e96}
.message{font-size:15px;background:var(--panel);border-left:4px solid var(--esc);padding:10px 14px;margin:14px 0;word-break:break-word}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{text-align:left;vertical-align:top;padding:5px 8px;border-bottom:1px solid var(--line)}th{background:var(--panel);font-weight:600;font-size:12.5px}
td{word-break:break-word}.kv th{width:220px}
.tag{display:inline-block;background:var(--panel);border:1px solid var(--line);border-radius:4px;padding:0 6px;margin:0 4px 2px 0;font-size:12px}
svg text{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;fill:var(--fg)}
svg .rel{text-anchor:end;fill:var(--muted)}svg .head{text-anchor:end;fill:var(--muted);font-weight:600}svg .headl{fill:var(--muted);font-weight:600}
svg .axis{stroke:#adb5bd;stroke-width:2}svg .gapline{stroke:#fff;stroke-width:4;stroke-dasharray:3 4}svg .gaptext{fill:var(--muted);font-style:italic}
svg .dot{stroke:#fff;stroke-width:2}.k-arm .dot,.k-arm .kind{fill:var(--arm)}.k-net .dot,.k-net .kind{fill:var(--net)}.k-esc .dot,.k-esc .kind{fill:var(--esc)}.k-fw .dot,.k-fw .kind{fill:var(--fw)}.k-other .dot,.k-other .kind{fill:var(--other)}
svg .diamond{fill:var(--esc)}svg .detect{font-weight:700;fill:var(--esc)}
svg .edge{fill:none;stroke:#adb5bd;stroke-width:1.5}svg .pdot{fill:var(--net)}svg .pdot.inferred{fill:#fff;stroke:#868e96;stroke-width:1.5}
svg .pname{font-weight:700}svg .pexe,svg .pcmd{fill:var(--muted)}svg .pkinds{fill:var(--arm)}
.scorebar{display:inline-block;width:220px;height:10px;background:var(--panel);border:1px solid var(--line);vertical-align:middle;margin-right:8px}.scorebar span{display:block;height:100%;background:var(--esc)}
pre{background:var(--panel);padding:10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.kcell,.nowrap{white-space:nowrap}.evidence-table{table-layout:fixed}.evidence-table td{font-size:13px;overflow-wrap:anywhere}
.c-n{width:3%}.c-t{width:11%}.c-k{width:12%}.c-r{width:21%}.c-p{width:30%}.c-net{width:23%}.wide .c-r{width:17%}.wide .c-p{width:24%}.wide .c-net{width:19%}.c-w{width:14%}
.destinations td,.images td{font-size:13px}table.image{margin-bottom:14px}.kk{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}
.k-arm .kk{background:var(--arm)}.k-net .kk{background:var(--net)}.k-esc .kk{background:var(--esc)}.k-fw .kk{background:var(--fw)}.k-other .kk{background:var(--other)}
article+article{margin-top:48px;padding-top:24px;border-top:3px double var(--line)}
.note{color:var(--muted);font-style:italic}footer{color:var(--muted);font-size:12px;margin-top:36px}
nav table td{font-size:13px}
`;

const v = (x: StoredValue | undefined): string => (x === undefined || x === null || x === '' ? '' : String(x));

/** A key/value table of rendered cells (empty ones left out); `attrs`: extra attributes, already escaped. */
function kv(rows: readonly (readonly [string, string | null | undefined])[], cls = 'kv', attrs = ''): string {
  const body = rows.filter(([, x]) => x !== null && x !== undefined && x !== '').map(([k, x]) => `<tr><th>${esc(k)}</th><td>${x}</td></tr>`);
  return body.length === 0 ? '' : `<table class="${cls}"${attrs}>${body.join('')}</table>`;
}

function workloadText(r: DetectionRecord): string {
  const f = r.outputFields;
  const ns = v(f['k8s.ns.name']);
  const pod = v(f['k8s.pod.name']);
  const cid = v(f['container.id']) || 'host';
  const image = v(f['container.image.repository']);
  const tag = v(f['container.image.tag']);
  const parts = [ns && pod ? `pod ${ns}/${pod}` : '', cid === 'host' ? 'host process' : `container ${cid}${v(f['container.name']) ? ` (${v(f['container.name'])})` : ''}`, image ? `image ${image}${tag ? `:${tag}` : ''}` : ''];
  return parts.filter(Boolean).join(' · ');
}

function processCell(e: EvidenceRecord): string {
  const p = e.proc;
  const lines = [
    `<b>${esc(p.name ?? '?')}</b>[${p.pid ?? '?'}]${p.ppid !== null ? ` ppid ${p.ppid}` : ''}${p.sid !== null ? ` sid ${p.sid}` : ''}`,
    p.exepath ? `<span class="mono">${esc(p.exepath)}</span>` : '',
    p.cmdline ? `<code class="cmdline">${esc(p.cmdline)}</code>` : '',
    p.ancestors.length > 0 ? `<span class="note">ancestors: ${esc(p.ancestors.join(' ← '))}</span>` : '',
  ];
  return lines.filter(Boolean).join('<br>');
}

function networkCell(e: EvidenceRecord): string {
  const n = e.net;
  const out: string[] = [];
  const ep = (ip: string | null, port: number | null): string => (ip === null ? '' : ip.includes(':') ? `[${ip}]${port !== null ? `:${port}` : ''}` : `${ip}${port !== null ? `:${port}` : ''}`);
  if (n.clientIp !== null || n.serverIp !== null) out.push(`${esc(n.l4proto ?? '')} ${esc(ep(n.clientIp, n.clientPort))} → ${esc(ep(n.serverIp, n.serverPort))}`);
  if (n.remoteDomain) out.push(`name ${esc(n.remoteDomain)}`);
  const keys = Object.entries(e.keys).filter(([, x]) => x !== null && x !== '');
  if (keys.length > 0) out.push(keys.map(([k, x]) => `${esc(k)}=<span class="mono">${esc(x)}</span>`).join(' '));
  return out.join('<br>');
}

function whereText(e: EvidenceRecord): string[] {
  const w = e.workload;
  return [w.namespace && w.pod ? `${w.namespace}/${w.pod}` : '', w.id ? `container ${w.id}${w.name ? ` (${w.name})` : ''}` : 'host'].filter(Boolean);
}

function evidenceTable(r: DetectionRecord, entries: ReturnType<typeof timeline>['entries']): string {
  if (entries.length === 0) return '<p class="note">No evidence details: this detection was recorded from its alert alone.</p>';
  // One workload for the whole chain (the usual case): it is in the header, no column for it.
  const places = new Set(entries.map(({ e }) => whereText(e).join('|')));
  const oneWorkload = places.size === 1;
  const rows = entries.map(({ e, seq, relNs }) => {
    const where = whereText(e).map(esc).join('<br>');
    return (
      `<tr class="evidence ${kindClass(e.kind)}" data-seq="${seq}" data-time-ns="${esc(e.timeNs)}" data-rule="${esc(e.rule)}" data-kind="${esc(e.kind)}">` +
      `<td class="mono">${seq + 1}</td>` +
      `<td class="mono nowrap">${esc(clockTime(BigInt(e.timeNs)))}<br><span class="note">${seq === 0 ? 'T+0' : `+${esc(formatDuration(relNs))}`}</span></td>` +
      `<td class="kcell"><span class="kk"></span>${esc(e.kind)}${e.subtype ? `<br><span class="note">${esc(e.subtype)}</span>` : ''}</td>` +
      `<td>${esc(e.rule)}${e.alertId ? `<br><span class="note mono">alert ${esc(e.alertId)}</span>` : ''}</td>` +
      `<td>${processCell(e)}</td>` +
      `<td>${networkCell(e)}</td>` +
      (oneWorkload ? '' : `<td>${where}</td>`) +
      '</tr>'
    );
  });
  const dropped = r.evidenceTotal - r.evidence.length;
  return (
    (dropped > 0 ? `<p class="note">${dropped} evidence signal(s) in the middle of the chain are not kept (journal.max_evidence); the first and the last are.</p>` : '') +
    `<table class="evidence-table${oneWorkload ? '' : ' wide'}"><colgroup><col class="c-n"><col class="c-t"><col class="c-k"><col class="c-r"><col class="c-p"><col class="c-net">${oneWorkload ? '' : '<col class="c-w">'}</colgroup><tr><th>#</th><th>time (UTC)</th><th>signal</th><th>Falco rule</th><th>process</th><th>network</th>${oneWorkload ? '' : '<th>where</th>'}</tr>${rows.join('')}</table>` +
    (oneWorkload ? `<p class="note">All in ${esc(whereText(entries[0]?.e as EvidenceRecord).join(', '))}.</p>` : '')
  );
}

function destinationsTable(ds: readonly Destination[]): string {
  if (ds.length === 0) return '<p class="note">No network peer in the evidence.</p>';
  const rows = ds.map((d) => {
    const ep = d.ip === null ? '' : d.ip.includes(':') ? `[${d.ip}]` : d.ip;
    return (
      `<tr class="destination" data-ip="${esc(d.ip ?? '')}" data-port="${d.port ?? ''}">` +
      `<td class="mono">${esc(ep)}${d.port !== null ? `:${d.port}` : ''}${d.l4proto ? ` <span class="note">${esc(d.l4proto)}</span>` : ''}</td>` +
      `<td class="nowrap">${esc(d.direction)}</td><td class="nowrap">${esc(d.cls ?? '')}</td>` +
      `<td>${esc(d.rdns ?? d.domain ?? '')}</td>` +
      `<td>${d.asn ? `<span class="nowrap">AS${esc(d.asn)}</span>` : ''}${d.asOrg ? ` ${esc(d.asOrg)}` : ''}</td>` +
      `<td>${esc(d.firstSeen ?? '')}${d.intel ? `<br><b>intel: ${esc(d.intel)}</b>` : ''}</td>` +
      `<td class="mono">${d.count}× ${esc(clockTime(d.firstNs))}${d.count > 1 ? `<br>– ${esc(clockTime(d.lastNs))}` : ''}</td></tr>`
    );
  });
  return `<table class="destinations"><tr><th>address</th><th>direction</th><th>class</th><th>reverse DNS / name</th><th>ASN</th><th>first seen</th><th>signals</th></tr>${rows.join('')}</table>`;
}

function imagesTable(is: readonly ImageHistory[]): string {
  if (is.length === 0) return '<p class="note">Host processes only: no image.</p>';
  return is
    .map((i) =>
      kv(
        [
          ['container', `<span class="mono">${esc(i.container ?? 'host')}</span>`],
          ['image', `${esc(i.image ?? '(unknown)')}${i.registry ? ` <span class="note">from ${esc(i.registry)}</span>` : ''}`],
          ['digest', i.digest ? `<span class="mono">${esc(i.digest)}</span>` : null],
          ['tag moved', i.tagMoved || i.previousDigest ? `<b>yes</b>${i.previousDigest ? `, from <span class="mono">${esc(i.previousDigest)}</span>` : ''}` : 'no'],
          ['pulled at', i.pulledAt ? `<span class="mono">${esc(i.pulledAt)}</span>` : null],
          ['image created', i.created ? `<span class="mono">${esc(i.created)}</span>` : null],
          ['first seen on this node', i.firstSeen ? `<span class="mono">${esc(i.firstSeen)}</span>` : null],
          ['newest layer', i.newestLayerCreated || i.newestLayerCmd ? `${esc(i.newestLayerCreated ?? '')}${i.newestLayerCmd ? ` <code>${esc(i.newestLayerCmd)}</code>` : ''}` : null],
          ['layers', i.layers ? esc(i.layers) : null],
        ],
        'kv image',
        ` data-container="${esc(i.container ?? 'host')}"`,
      ),
    )
    .join('');
}

function scoreSection(r: DetectionRecord): string {
  const s = r.score;
  const bar = s === null ? '' : `<span class="scorebar"><span style="width:${Math.round(Math.max(0, Math.min(1, s)) * 100)}%"></span></span>`;
  const why = Object.entries(r.why).map(([k, x]) => [k, `<span class="mono">${esc(x)}</span>`] as const);
  return (
    `<p>${bar}<b>score ${esc(s ?? 'n/a')}</b> → <span class="badge p-${esc(r.priority)}">${esc(r.priority)}</span> (detector <code>${esc(r.detector ?? '?')}</code>)</p>` +
    (why.length > 0 ? kv(why, 'kv why') : '<p class="note">The detector gave no further factors.</p>') +
    (r.repeated > 0 ? `<p>Repeated ${r.repeated} time(s) before it was sent (folded into this detection).</p>` : '') +
    (r.folded > 0 ? `<p>${r.folded} later finding(s) of the same key were folded into this detection by the notify policy.</p>` : '')
  );
}

function yamlString(s: string): string {
  return JSON.stringify(s);
}

function talonSection(r: DetectionRecord): string {
  const t = r.talon;
  const rows: [string, string | null][] = [
    ['rule', esc(t.rule)],
    ['priority', esc(t.priority)],
    ['tags', t.tags.map((x) => `<span class="tag">${esc(x)}</span>`).join('')],
    ['hostname', t.hostname === null ? null : esc(t.hostname)],
    ['k8s.ns.name', t['k8s.ns.name'] === null ? null : esc(t['k8s.ns.name'])],
    ['k8s.pod.name', t['k8s.pod.name'] === null ? null : esc(t['k8s.pod.name'])],
    ['container.id', t['container.id'] === null ? null : esc(t['container.id'])],
    ['fd.sip', t['fd.sip'] === null ? null : esc(t['fd.sip'])],
    ['proc.pid', t['proc.pid'] === null ? null : esc(t['proc.pid'])],
  ];
  const pod = t['k8s.ns.name'] !== null && t['k8s.pod.name'] !== null;
  const snippet = [
    '# Falco Talon: isolate the workload when this detection arrives (review before use)',
    `- action: ${pod ? 'Isolate the pod' : 'Kill the process'}`,
    `  actionner: ${pod ? 'kubernetes:networkpolicy' : 'kubernetes:terminate'}`,
    `- rule: ${yamlString(`falco-companion: ${t.rule}`)}`,
    '  match:',
    '    rules:',
    `      - ${yamlString(t.rule)}`,
    ...(t['k8s.ns.name'] !== null ? ['    output_fields:', `      - ${yamlString(`k8s.ns.name=${t['k8s.ns.name']}`)}`] : []),
    '  actions:',
    `    - action: ${pod ? 'Isolate the pod' : 'Kill the process'}`,
  ].join('\n');
  return kv(rows, 'kv talon') + `<pre class="talon-rule">${esc(snippet)}</pre>`;
}

function incidentSection(r: DetectionRecord, o: RenderOptions): string {
  const all = r.incident ? (o.incidents?.get(r.id) ?? []) : [];
  const others = all.filter((x) => x.id !== r.id);
  if (!r.incident) return '<p class="note">No incident id on this detection.</p>';
  if (others.length === 0) return `<p>Incident <code>${esc(r.incident)}</code>: this is its only detection.</p>`;
  const link = (id: string): string => (o.linkBase != null ? `<a href="${esc(o.linkBase + encodeURIComponent(id))}">${esc(id)}</a>` : `<code>${esc(id)}</code>`);
  const rows = all.map(
    (x) =>
      `<tr${x.id === r.id ? ' class="self"' : ''}><td class="mono">${esc(x.time)}</td><td><span class="badge p-${esc(x.priority)}">${esc(x.priority)}</span></td><td>${esc(x.rule)}</td><td>${x.id === r.id ? '<b>this page</b>' : link(x.id)}</td></tr>`,
  );
  return `<p>Incident <code>${esc(r.incident)}</code>: ${all.length} detections.</p><table class="incident"><tr><th>time</th><th>priority</th><th>rule</th><th>id</th></tr>${rows.join('')}</table>`;
}

function rawAlert(r: DetectionRecord): string {
  const fields: Record<string, unknown> = { ...r.outputFields };
  for (const [k, x] of Object.entries(r.companion)) fields[`companion.${k}`] = x;
  fields['companion.alert_id'] = r.id;
  const alert = { hostname: r.hostname, output: r.output, output_fields: fields, priority: r.priority, rule: r.rule, source: 'falco-companion', tags: r.tags, time: r.time };
  return `<details class="raw"><summary>The detection alert as forwarded (Falco JSON)</summary><pre>${esc(JSON.stringify(alert, null, 2))}</pre></details>`;
}

/** One detection as an `<article>`. */
export function renderDetection(r: DetectionRecord, o: RenderOptions): string {
  const t = timeline(r);
  const l = lineage(t);
  const ds = destinations(t);
  const is = images(t);
  const mitre = r.mitre.map((m) => `<span class="tag">${esc(m)}</span>`).join('');
  const span = t.entries.length > 1 ? formatDuration(BigInt(t.entries[t.entries.length - 1]?.e.timeNs ?? r.timeNs) - t.startNs) : null;
  return (
    `<article class="detection" data-id="${esc(r.id)}" data-detector="${esc(r.detector ?? '')}" data-evidence="${r.evidence.length}">` +
    `<header><h1>${esc(r.rule)} <span class="badge p-${esc(r.priority)}">${esc(r.priority)}</span></h1>` +
    `<p class="meta">${esc(r.time)} · host ${esc(r.hostname ?? '?')} · ${esc(workloadText(r))}</p>` +
    `<p class="meta">detection <code>${esc(r.id)}</code>${r.incident ? ` · incident <code>${esc(r.incident)}</code>` : ''} · detector <code>${esc(r.detector ?? '?')}</code>${r.score !== null ? ` · score ${esc(r.score)}` : ''} ${mitre}</p></header>` +
    `<div class="message">${esc(r.message)}</div>` +
    (r.partial ? '<p class="note">Recorded from the forwarded alert alone (the engine did not report the finding): evidence details are not available.</p>' : '') +
    `<section class="sec-timeline"><h2>Evidence on a time axis</h2><p class="meta">${t.entries.length} evidence signal(s) the detector kept${span ? `, over ${esc(span)}` : ''}; times UTC; gaps of ${esc(formatDuration(t.labelGapNs))} or more between them are labelled.</p>${timelineSvg(t, r)}` +
    `<h2>Evidence signals</h2>${evidenceTable(r, t.entries)}</section>` +
    (r.partial
      ? `<section class="sec-alert-evidence"><h2>Evidence as the alert carries it</h2>${kv([
          ['evidence', esc(v(r.companion['evidence']))],
          ['lineage', esc(v(r.companion['lineage']))],
          ['process', esc([v(r.outputFields['proc.name']), v(r.outputFields['proc.pid']) && `[${v(r.outputFields['proc.pid'])}]`, ' ', v(r.outputFields['proc.cmdline'])].join(''))],
          ['fd.sip', esc(v(r.outputFields['fd.sip']))],
        ])}</section>`
      : `<section class="sec-lineage"><h2>Process lineage</h2>${l.nodes.size > 0 ? lineageSvg(l) : '<p class="note">No process facts in the evidence.</p>'}</section>` +
        `<section class="sec-destinations"><h2>Destinations</h2>${destinationsTable(ds)}</section>` +
        `<section class="sec-images"><h2>Image history</h2>${imagesTable(is)}</section>`) +
    `<section class="sec-score"><h2>Score and why</h2>${scoreSection(r)}</section>` +
    `<section class="sec-response"><h2>Response</h2><ol class="response">${r.response.map((s) => `<li>${esc(s)}</li>`).join('')}</ol></section>` +
    `<section class="sec-talon"><h2>Falco Talon fields</h2>${talonSection(r)}</section>` +
    `<section class="sec-incident"><h2>Incident</h2>${incidentSection(r, o)}</section>` +
    `<section class="sec-raw"><h2>Forwarded alert</h2>${rawAlert(r)}</section>` +
    `</article>`
  );
}

function index(records: readonly DetectionRecord[]): string {
  const rows = records.map(
    (r) => `<tr><td class="mono">${esc(r.time)}</td><td><span class="badge p-${esc(r.priority)}">${esc(r.priority)}</span></td><td><a href="#d-${esc(r.id)}">${esc(r.rule)}</a></td><td class="mono">${esc(short(workloadText(r), 80))}</td></tr>`,
  );
  return `<nav><h1>${records.length} detection(s)</h1><table><tr><th>time</th><th>priority</th><th>rule</th><th>where</th></tr>${rows.join('')}</table></nav>`;
}

/** A whole page: one detection, or an index and every detection given. */
export function renderPage(records: readonly DetectionRecord[], o: RenderOptions): string {
  const first = records[0];
  const title = records.length === 1 && first ? `${first.priority}: ${first.rule}` : `${records.length} detections`;
  const body =
    records.length === 0
      ? '<p class="note">No detection recorded.</p>'
      : (records.length > 1 ? index(records) : '') + records.map((r) => `<div id="d-${esc(r.id)}">${renderDetection(r, o)}</div>`).join('');
  return (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' +
    `<meta http-equiv="Content-Security-Policy" content="${esc(REPORT_CSP)}">` +
    '<meta name="referrer" content="no-referrer"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${esc(title)} · falco-companion</title><style>${CSS}</style></head><body><main>${body}` +
    `<footer>falco-companion${o.version ? ` ${esc(o.version)}` : ''} report, generated ${esc(formatTimeNs(BigInt(Math.floor(o.generatedAtMs)) * 1_000_000n).slice(0, 19))}Z. Times are event times (UTC) from the alerts.</footer>` +
    '</main></body></html>'
  );
}
