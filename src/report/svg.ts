/**
 * The report's two pictures as inline SVG (no script, no external asset): the evidence on a
 * vertical time axis (relative time left, absolute UTC time and the signal right, long gaps drawn
 * dashed and labelled, the detection last), and the process lineage as an indented tree with
 * elbow connectors. Every text passes through esc().
 */
import { formatTimeNs } from '../alert.js';
import { esc, short } from './escape.js';
import { formatDuration, type Lineage, type LineageNode, type Timeline } from './model.js';

const W = 960;
const AXIS_X = 132;
const ROW = 34;
const GAP_ROW = 28;
const TOP = 40;

/** Colour family of a signal kind (chain arming, network, escape, firewall, other). */
export function kindClass(kind: string): string {
  if (['raw_socket', 'filter_attach', 'bpf_load', 'proc_rename', 'tmpfs_exec', 'pidfile_create'].includes(kind)) return 'k-arm';
  if (['listen', 'accept', 'connect', 'shell_socket', 'k8s_api_contact', 'kubelet_contact', 'network_tool'].includes(kind)) return 'k-net';
  if (kind === 'escape' || kind === 'sa_token_read') return 'k-esc';
  if (kind === 'firewall_exec') return 'k-fw';
  return 'k-other';
}

const SIGNAL_PREFIX = 'Companion signal: ';

function shortRule(rule: string): string {
  return rule.startsWith(SIGNAL_PREFIX) ? rule.slice(SIGNAL_PREFIX.length) : rule;
}

/** `HH:MM:SS.mmm` of an event time. */
export function clockTime(ns: bigint): string {
  return formatTimeNs(ns).slice(11, 23);
}

export function timelineSvg(t: Timeline, detection: { rule: string; priority: string }): string {
  const parts: string[] = [];
  let y = TOP;
  let day = formatTimeNs(t.startNs).slice(0, 10);
  const startDay = day;
  for (const en of t.entries) {
    const ns = BigInt(en.e.timeNs);
    if (en.seq > 0 && en.gapNs >= t.labelGapNs) {
      parts.push(
        `<g class="tl-gap" data-gap-ns="${en.gapNs}"><line x1="${AXIS_X}" y1="${y - ROW / 2 + 8}" x2="${AXIS_X}" y2="${y + GAP_ROW - ROW / 2 - 8}" class="gapline"/>` +
          `<text x="${AXIS_X + 16}" y="${y + GAP_ROW / 2 - ROW / 2 + 4}" class="gaptext">⋯ ${esc(formatDuration(en.gapNs))} later</text></g>`,
      );
      y += GAP_ROW;
    }
    const d = formatTimeNs(ns).slice(0, 10);
    const dayNote = d !== day ? `${d} ` : '';
    day = d;
    const label = `${en.e.kind}${en.e.subtype ? `/${en.e.subtype}` : ''}`;
    const proc = en.e.proc.name !== null || en.e.proc.pid !== null ? ` · ${en.e.proc.name ?? '?'}[${en.e.proc.pid ?? '?'}]` : '';
    parts.push(
      `<g class="tl-signal ${kindClass(en.e.kind)}" data-seq="${en.seq}" data-time-ns="${esc(en.e.timeNs)}" data-kind="${esc(en.e.kind)}" data-rule="${esc(en.e.rule)}">` +
        `<title>${esc(en.e.time)} ${esc(en.e.rule)}</title>` +
        `<text x="${AXIS_X - 14}" y="${y + 4}" class="rel">${en.seq === 0 ? 'T+0' : `+${esc(formatDuration(en.relNs))}`}</text>` +
        `<circle cx="${AXIS_X}" cy="${y}" r="6" class="dot"/>` +
        `<text x="${AXIS_X + 16}" y="${y + 4}" class="abs">${esc(dayNote)}${esc(clockTime(ns))}</text>` +
        `<text x="${AXIS_X + 130}" y="${y + 4}" class="kind">${esc(short(label, 28))}</text>` +
        `<text x="${AXIS_X + 330}" y="${y + 4}" class="what">${esc(short(shortRule(en.e.rule) + proc, 64))}</text></g>`,
    );
    y += ROW;
  }
  if (t.entries.length > 0 && t.detectionGapNs >= t.labelGapNs) {
    parts.push(`<g class="tl-gap"><text x="${AXIS_X + 16}" y="${y - ROW / 2 + GAP_ROW / 2 + 4}" class="gaptext">⋯ ${esc(formatDuration(t.detectionGapNs))} later</text></g>`);
    y += GAP_ROW;
  }
  const rel = t.detectionNs - t.startNs;
  parts.push(
    `<g class="tl-detection"><text x="${AXIS_X - 14}" y="${y + 4}" class="rel">${rel === 0n ? 'T+0' : `+${esc(formatDuration(rel))}`}</text>` +
      `<rect x="${AXIS_X - 7}" y="${y - 7}" width="14" height="14" transform="rotate(45 ${AXIS_X} ${y})" class="diamond"/>` +
      `<text x="${AXIS_X + 16}" y="${y + 4}" class="abs">${esc(clockTime(t.detectionNs))}</text>` +
      `<text x="${AXIS_X + 130}" y="${y + 4}" class="detect">detection · ${esc(detection.priority)} · ${esc(short(detection.rule, 80))}</text></g>`,
  );
  const height = y + 24;
  const axis = `<line x1="${AXIS_X}" y1="${TOP - 14}" x2="${AXIS_X}" y2="${y}" class="axis"/>`;
  const head = `<text x="${AXIS_X - 14}" y="18" class="head">relative</text><text x="${AXIS_X + 16}" y="18" class="headl">UTC ${esc(startDay)}</text><text x="${AXIS_X + 130}" y="18" class="headl">signal</text><text x="${AXIS_X + 330}" y="18" class="headl">Falco rule · process</text>`;
  return `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img" aria-label="evidence timeline">${head}${axis}${parts.join('')}</svg>`;
}

const L_ROW = 46;
const L_INDENT = 30;

/** Depth-first rows of the lineage forest, children in order of their first evidence. */
function rows(l: Lineage): { node: LineageNode; depth: number }[] {
  const out: { node: LineageNode; depth: number }[] = [];
  const first = (k: string): number => l.nodes.get(k)?.seqs[0] ?? Number.MAX_SAFE_INTEGER;
  const walk = (k: string, depth: number): void => {
    const n = l.nodes.get(k);
    if (!n) return;
    out.push({ node: n, depth });
    for (const c of [...n.children].sort((a, b) => firstOf(a) - firstOf(b))) walk(c, depth + 1);
  };
  // A parent inferred from a ppid has no evidence: order it by its first child's.
  const firstOf = (k: string): number => {
    const n = l.nodes.get(k);
    if (!n) return Number.MAX_SAFE_INTEGER;
    return Math.min(first(k), ...n.children.map(firstOf));
  };
  for (const r of [...l.roots].sort((a, b) => firstOf(a) - firstOf(b))) walk(r, 0);
  return out;
}

export function lineageSvg(l: Lineage): string {
  const rs = rows(l);
  const y0 = 20;
  const pos = new Map<string, { x: number; y: number }>();
  const parts: string[] = [];
  rs.forEach(({ node, depth }, i) => {
    const x = 16 + depth * L_INDENT;
    const y = y0 + i * L_ROW;
    pos.set(node.key, { x, y });
    const parent = node.parent ? pos.get(node.parent) : undefined;
    if (parent) parts.push(`<path d="M${parent.x + 5} ${parent.y + 6} V${y} H${x - 4}" class="edge"/>`);
    const names = node.names.length > 0 ? node.names.join(' → ') : '?';
    const title = `${names}[${node.pid ?? '?'}]`;
    const exe = node.exes.join(' → ');
    const cmd = node.cmdlines[node.cmdlines.length - 1] ?? '';
    const kinds = [node.kinds.join(', '), node.reparented.length > 0 ? `re-parented to ${node.reparented.join(', ')}` : ''].filter((x) => x !== '').join('; ');
    parts.push(
      `<g class="lineage-node${node.inferred ? ' inferred' : ''}" data-key="${esc(node.key)}" data-pid="${node.pid ?? ''}" data-parent="${esc(node.parent ?? '')}" data-reparented="${node.reparented.join(' ')}" data-names="${esc(node.names.join('\n'))}">` +
        `<title>${esc(title)}${exe ? `\n${esc(exe)}` : ''}${node.cmdlines.map((c) => `\n${esc(c)}`).join('')}</title>` +
        `<circle cx="${x + 5}" cy="${y}" r="5" class="${node.inferred ? 'pdot inferred' : 'pdot'}"/>` +
        `<text x="${x + 16}" y="${y + 4}" class="pname">${esc(short(title, 60))}</text>` +
        (exe ? `<text x="${x + 16 + Math.min(60, title.length) * 8 + 12}" y="${y + 4}" class="pexe">${esc(short(exe, 70))}</text>` : '') +
        `<text x="${x + 16}" y="${y + 20}" class="pcmd">${esc(short(cmd || (node.inferred ? 'parent known by pid only' : ''), 110))}${kinds ? ` <tspan class="pkinds">${esc(kinds)}</tspan>` : ''}</text></g>`,
    );
  });
  const height = y0 + rs.length * L_ROW;
  return `<svg class="lineage" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img" aria-label="process lineage">${parts.join('')}</svg>`;
}
