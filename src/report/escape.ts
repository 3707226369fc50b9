/**
 * The one escaping rule of the report page: every value that came from an alert (command lines,
 * paths, process and container names, rule names, enrichment) passes through {@link esc} before
 * it reaches HTML or SVG text or an attribute value. Control characters and bidirectional
 * overrides are shown as escapes (`\x1b`, `\u202e`) so a disguised name is visible as such.
 */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** C0/C1 controls (tab and newline kept), DEL, bidi embeddings/overrides/isolates, zero-width and line/paragraph separators. */
// eslint-disable-next-line no-control-regex
const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

function visible(c: string): string {
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/** Invisible and control characters as escapes (for a terminal too). */
export function showInvisible(s: string): string {
  return s.replace(INVISIBLE, visible);
}

/** Text safe in HTML and SVG content and in double- or single-quoted attribute values. */
export function esc(v: unknown): string {
  const s = v === null || v === undefined ? '' : typeof v === 'string' ? v : String(v);
  return showInvisible(s).replace(/[&<>"']/g, (c) => ENTITIES[c] as string);
}

/** Shorten for a one-line label (the full value is shown elsewhere on the page). */
export function short(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : chars.slice(0, max - 1).join('') + '…';
}
