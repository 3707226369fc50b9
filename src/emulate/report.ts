/** Human output of `emulate list` and `emulate run`. */
import type { RunReport } from './run.js';
import type { Scenario } from './scenarios.js';
import type { VerifyReport } from './verify.js';

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const hms = (ns: number): string => new Date(Math.floor(ns / 1e6)).toISOString().slice(11, 23);

export function formatList(list: readonly Scenario[]): string {
  const lines = [`${pad('SCENARIO', 24)}${pad('WHERE', 17)}${pad('CAPABILITIES', 28)}EXPECTED`];
  for (const s of list) {
    const expected = s.benign ? 'benign: nothing at Warning or above' : s.detections.map((d) => `${d.detector} ${d.mitre} ≥ ${d.minPriority}${d.pending ? ' (pending)' : ''}`).join('; ');
    lines.push(`${pad(s.name, 24)}${pad(s.where, 17)}${pad(s.capabilities.join(',') || '-', 28)}${expected}`);
  }
  lines.push('', 'falco-companion emulate run <scenario> [--docker --image IMG] [--verify URL]; details: docs/emulation.md');
  return lines.join('\n');
}

const md = (t: string): string => t.replace(/\|/g, '\\|').replace(/</g, '\\<');

/** The scenarios as Markdown (`emulate list --markdown`; the "Scenarios" section of docs/emulation.md). */
export function formatMarkdown(list: readonly Scenario[]): string {
  const out: string[] = [];
  for (const s of list) {
    const labels = s.labels ? `. Labels: ${Object.entries(s.labels).map(([k, v]) => `\`${k}=${v}\``).join(', ')}` : '';
    out.push(`### ${s.name}`, '', `**${s.title}.** Where: ${s.where}${s.benign ? ' (benign twin)' : ''}. Capabilities: ${s.capabilities.join(', ') || 'none'}. Needs: ${s.needs.join(', ') || 'nothing'}${labels}.`, '');
    s.steps.forEach((st, i) => out.push(`${i + 1}. ${md(st)}`));
    out.push('', `Proves: ${md(s.proves)}`, '', '| must fire | rules file | on | |', '|---|---|---|---|');
    for (const r of s.rules) out.push(`| ${r.rule} | ${r.source} | ${md(r.on)} | ${r.pending ? `pending: ${md(r.pending)}` : ''} |`);
    out.push('');
    if (s.benign) out.push('Companion: **no detection at Warning or above**.');
    else out.push(`Companion: ${s.detections.map((d) => `\`${d.detector}\` ${d.mitre} ≥ ${d.minPriority}${d.rule ? ` ("${d.rule}")` : ''}${d.pending ? ` (pending: ${md(d.pending)})` : ''}`).join('; ')}.`);
    out.push('');
  }
  return out.join('\n').trimEnd();
}

function verdict(ok: boolean | null): string {
  return ok === true ? 'PASS' : ok === false ? 'FAIL' : 'SKIP';
}

export function formatRun(s: Scenario, r: RunReport, v: VerifyReport | null): string {
  const out: string[] = [];
  const where = r.mode === 'docker' ? `container ${r.containerId?.slice(0, 12) ?? '?'} (--docker)` : r.containerId ? `container ${r.containerId.slice(0, 12)}` : r.pod ? `pod ${r.pod}` : r.hostRun ? 'host (own network namespaces where needed)' : 'this container (id not detected)';
  out.push(`emulate ${s.name}: ${s.title}`);
  out.push(`  run ${r.run} on ${r.host}, ${where}, ${r.startedAt} .. ${r.finishedAt}`);
  out.push('', 'steps (helper journal)');
  for (const e of r.journal) {
    if (e.step === 'enter_netns' && e.role !== 'init') continue;
    const res = e.syscall === null ? (e.fatal ? `FATAL ${e.fatal}` : (e.note ?? '')) : e.ret < 0 ? `-1 ${e.errno ?? ''}` : String(e.ret);
    out.push(`  ${hms(e.t)}  ${pad(e.role, 11)} ${pad(`[${e.pid}] ${e.comm}`, 24)} ${pad(e.step, 22)} ${e.syscall ? `${e.syscall}(${(e.args ?? '').slice(0, 70)}) = ` : ''}${res.slice(0, 120)}`);
  }
  out.push('', 'kernel footprint');
  if (r.footprint.length === 0) out.push('  (none checked)');
  for (const c of r.footprint) out.push(`  ${verdict(c.ok)}  ${pad(c.name, 42)} ${c.seen}`);
  out.push('', 'declared (Falco 0.40–0.44, our rules + the official stable rules)');
  for (const d of s.rules) out.push(`  rule       ${d.rule} [${d.source}]${d.pending ? `  (pending: ${d.pending})` : ''}`);
  if (s.benign) out.push('  detection  none at Warning or above (benign twin)');
  for (const d of s.detections) out.push(`  detection  ${d.detector} ${d.mitre} ≥ ${d.minPriority}${d.rule ? ` "${d.rule}"` : ''}${d.pending ? `  (pending: ${d.pending})` : ''}`);
  if (v) {
    out.push('', `verify ${v.url}?${v.query} (waited ${v.waitedS} s, ${v.received} detection(s) of this run)`);
    if (v.error) out.push(`  ERROR ${v.error}`);
    for (const row of v.rows) out.push(`  ${pad(row.status.toUpperCase(), 8)}${pad(row.detector, 19)}${pad(row.mitre, 11)}≥ ${pad(row.minPriority, 10)} ${row.seen}${row.status === 'pending' && row.pending ? ` (pending: ${row.pending})` : ''}`);
    if (s.benign) out.push(v.loud.length === 0 ? '  PASS    nothing at Warning or above' : `  FAIL    ${v.loud.length} detection(s) at Warning or above: ${v.loud.map((d) => `${d.priority} ${d.rule}`).join('; ').slice(0, 300)}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  out.push('', `cleanup: ${r.cleanup.length} step(s)${r.cleanup.some((c) => !c.ok) ? '' : ', all done'}`);
  for (const c of r.cleanup) if (!c.ok) out.push(`  FAIL  ${c.what}: ${c.error ?? ''}`);
  const ok = r.ok && (v === null || v.ok);
  out.push(`result: ${ok ? 'PASS' : 'FAIL'}${r.error ? ` (${r.error.code}: ${r.error.message})` : v && !v.ok ? ' (verify)' : ''}`);
  return out.join('\n');
}
