/**
 * Threat-intel lists: plain-text files of IPs, CIDRs and domains.
 *
 * One entry per line; `#` and `;` start comments (whole line or after the entry); blank lines
 * are skipped. `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`, `evil.example` (exact name),
 * `*.evil.example` or `.evil.example` (any name below evil.example). A malformed line is counted
 * and logged with file:line, never fatal. Files are re-read when their mtime or size changes
 * ({@link IntelLists.checkReload}); a missing file keeps the list's previous entries.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Ip } from '../net/address.js';
import { CidrMap } from '../net/cidr.js';

export interface IntelListConfig {
  readonly name: string;
  readonly path: string;
}

interface Loaded {
  readonly cidrs: CidrMap<true>;
  readonly exact: Set<string>;
  readonly suffixes: Set<string>;
  readonly entries: number;
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;
const MAX_LOGGED_PER_LOAD = 10;

interface ListState {
  readonly cfg: IntelListConfig;
  data: Loaded | null;
  stamp: string;
}

export class IntelLists {
  private readonly lists: ListState[];
  private readonly logger: Logger;
  private readonly maxEntries: number;
  private readonly malformed;
  private readonly loads;
  private readonly skipped;

  constructor(opts: { lists: readonly IntelListConfig[]; maxEntries: number; logger: Logger; metrics: Metrics }) {
    this.lists = opts.lists.map((cfg) => ({ cfg, data: null, stamp: '' }));
    this.logger = opts.logger;
    this.maxEntries = opts.maxEntries;
    this.malformed = opts.metrics.counter<'list'>('intel_malformed_lines_total', 'Intel list lines that are not an IP, CIDR or domain', ['list']);
    this.loads = opts.metrics.counter<'list' | 'result'>('intel_loads_total', 'Intel list (re)loads by result', ['list', 'result']);
    this.skipped = opts.metrics.counter<'list'>('intel_skipped_entries_total', 'Intel list entries beyond max_entries, not loaded', ['list']);
  }

  get size(): number {
    return this.lists.length;
  }

  /** Lists that have never been loaded because their file is not readable. */
  missing(): string[] {
    return this.lists.filter((l) => l.data === null).map((l) => l.cfg.name);
  }

  /** Entries loaded per list (for health and logs). */
  counts(): Record<string, number> {
    return Object.fromEntries(this.lists.map((l) => [l.cfg.name, l.data?.entries ?? 0]));
  }

  /** Re-read lists whose file changed. Returns the names reloaded. Never throws. */
  checkReload(): string[] {
    const done: string[] = [];
    for (const l of this.lists) {
      let stamp: string;
      try {
        const st = statSync(l.cfg.path);
        stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      } catch (err) {
        if (l.stamp !== 'missing') {
          l.stamp = 'missing';
          this.loads.inc({ list: l.cfg.name, result: 'error' });
          this.logger.error({ list: l.cfg.name, path: l.cfg.path, error: errorMessage(err) }, l.data ? 'intel list not readable; keeping its previous entries' : 'intel list not readable; empty until it appears');
        }
        continue;
      }
      if (stamp === l.stamp) continue;
      try {
        l.data = this.parse(l.cfg, readFileSync(l.cfg.path, 'utf8'));
        l.stamp = stamp;
        this.loads.inc({ list: l.cfg.name, result: 'ok' });
        this.logger.info({ list: l.cfg.name, path: l.cfg.path, entries: l.data.entries }, 'intel list loaded');
        done.push(l.cfg.name);
      } catch (err) {
        l.stamp = stamp;
        this.loads.inc({ list: l.cfg.name, result: 'error' });
        this.logger.error({ list: l.cfg.name, path: l.cfg.path, error: errorMessage(err) }, 'intel list not readable');
      }
    }
    return done;
  }

  /** Names of the lists that contain the address (in config order). */
  matchIp(ip: Ip): string[] {
    const out: string[] = [];
    for (const l of this.lists) if (l.data?.cidrs.has(ip)) out.push(l.cfg.name);
    return out;
  }

  /** Names of the lists that contain the domain name (exact, or below a `*.` entry). */
  matchDomain(name: string): string[] {
    const d = name.trim().toLowerCase().replace(/\.$/, '');
    if (d === '') return [];
    const out: string[] = [];
    for (const l of this.lists) {
      const data = l.data;
      if (!data) continue;
      let hit = data.exact.has(d);
      // Walk the parents: a.b.evil.example → b.evil.example → evil.example → example.
      for (let i = d.indexOf('.'); !hit && i >= 0; i = d.indexOf('.', i + 1)) hit = data.suffixes.has(d.slice(i + 1));
      if (hit) out.push(l.cfg.name);
    }
    return out;
  }

  private parse(cfg: IntelListConfig, text: string): Loaded {
    const r = parseIntelList(text, this.maxEntries);
    for (const b of r.firstMalformed) {
      this.logger.warn({ list: cfg.name, where: `${cfg.path}:${b.line}`, line: b.text }, `intel list ${cfg.path}:${b.line}: not an IP, CIDR or domain; line skipped`);
    }
    if (r.malformed > 0) this.malformed.inc({ list: cfg.name }, r.malformed);
    if (r.malformed > r.firstMalformed.length) this.logger.warn({ list: cfg.name, path: cfg.path, malformed: r.malformed }, `intel list ${cfg.path}: ${r.malformed} malformed lines in all`);
    if (r.skipped > 0) {
      this.skipped.inc({ list: cfg.name }, r.skipped);
      this.logger.warn({ list: cfg.name, path: cfg.path, skipped: r.skipped, max_entries: this.maxEntries }, 'intel list longer than max_entries; the rest is skipped');
    }
    return r.loaded;
  }
}

/** What one list file holds: its entries, and its malformed lines (the first few kept for the log). */
export interface ParsedIntelList {
  readonly loaded: Loaded;
  readonly malformed: number;
  readonly firstMalformed: readonly { readonly line: number; readonly text: string }[];
  /** Entries beyond maxEntries, not loaded. */
  readonly skipped: number;
}

/** Parse the text of one list (pure; never throws). */
export function parseIntelList(text: string, maxEntries: number): ParsedIntelList {
  const cidrs = new CidrMap<true>();
  const exact = new Set<string>();
  const suffixes = new Set<string>();
  let entries = 0;
  let bad = 0;
  let skipped = 0;
  const firstBad: { line: number; text: string }[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    const cut = raw.search(/[#;]/);
    const line = (cut >= 0 ? raw.slice(0, cut) : raw).trim();
    if (line === '') continue;
    if (entries >= maxEntries) {
      skipped++;
      continue;
    }
    let ok = false;
    if (/^[0-9a-fA-F:.[\]]+(\/\d{1,3})?$/.test(line) && (line.includes(':') || /^[\d./]+$/.test(line))) {
      ok = cidrs.set(line, true);
    } else {
      const lower = line.toLowerCase().replace(/\.$/, '');
      const wild = lower.startsWith('*.') ? lower.slice(2) : lower.startsWith('.') ? lower.slice(1) : null;
      const name = wild ?? lower;
      if (DOMAIN.test(name) && (wild !== null || name.includes('.'))) {
        (wild !== null ? suffixes : exact).add(name);
        ok = true;
      }
    }
    if (ok) entries++;
    else {
      bad++;
      if (firstBad.length < MAX_LOGGED_PER_LOAD) firstBad.push({ line: i + 1, text: line.slice(0, 100) });
    }
  }
  return { loaded: { cidrs, exact, suffixes, entries }, malformed: bad, firstMalformed: firstBad, skipped };
}
