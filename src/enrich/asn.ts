/**
 * ASN and organisation from an operator-supplied MMDB file (GeoLite2-ASN, ipinfo-style ASN
 * databases). The file is re-read when its mtime or size changes (polled by the owner calling
 * {@link AsnDb.checkReload}); a broken new file keeps the previous data and is counted.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Logger } from 'pino';
import { Reader } from 'maxmind';
import { CompanionError, errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';

export interface AsnInfo {
  readonly asn: number | null;
  readonly org: string | null;
}

type Record_ = Readonly<Record<string, unknown>>;

function asnOf(r: Record_): number | null {
  for (const k of ['autonomous_system_number', 'asn', 'as_number', 'as']) {
    const v = r[k];
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    if (typeof v === 'string') {
      const m = /^(?:AS)?(\d{1,10})$/i.exec(v.trim());
      if (m) return Number(m[1]);
    }
  }
  return null;
}

function orgOf(r: Record_): string | null {
  for (const k of ['autonomous_system_organization', 'as_org', 'as_name', 'organization', 'org', 'name', 'as_domain']) {
    const v = r[k];
    if (typeof v === 'string' && v.trim() !== '') return v.trim().slice(0, 200);
  }
  return null;
}

export class AsnDb {
  private reader: Reader<Record_> | null = null;
  private stamp = '';
  private readonly path: string;
  private readonly logger: Logger;
  private readonly reloads;

  constructor(opts: { path: string; logger: Logger; metrics: Metrics }) {
    this.path = opts.path;
    this.logger = opts.logger;
    this.reloads = opts.metrics.counter<'result'>('asn_mmdb_loads_total', 'ASN MMDB (re)loads by result', ['result']);
  }

  get loaded(): boolean {
    return this.reader !== null;
  }

  /** Description of the loaded database (for health/logs). */
  get description(): string {
    const m = this.reader?.metadata;
    return m ? `${m.databaseType} built ${m.buildEpoch.toISOString()}` : 'not loaded';
  }

  /**
   * Load the file if it is new or changed. Returns true when (re)loaded. Throws a coded error
   * only when nothing was ever loaded and `required` is set (startup check).
   */
  checkReload(required = false): boolean {
    let stamp: string;
    try {
      const st = statSync(this.path);
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch (err) {
      if (this.stamp !== 'missing') {
        this.logger.error({ error: errorMessage(err), path: this.path }, 'ASN MMDB not readable; ASN lookups off until it appears');
        this.reloads.inc({ result: 'error' });
        this.stamp = 'missing';
      }
      if (required && !this.reader) throw new CompanionError('E_ASN_MMDB', `ASN MMDB ${this.path}: ${errorMessage(err)}`, { cause: err });
      return false;
    }
    if (stamp === this.stamp) return false;
    try {
      const reader = new Reader<Record_>(readFileSync(this.path));
      this.reader = reader;
      this.stamp = stamp;
      this.reloads.inc({ result: 'ok' });
      this.logger.info({ path: this.path, db: this.description }, 'ASN MMDB loaded');
      return true;
    } catch (err) {
      this.stamp = stamp; // do not retry the same broken file every poll
      this.reloads.inc({ result: 'error' });
      this.logger.error({ error: errorMessage(err), path: this.path }, this.reader ? 'ASN MMDB unreadable; keeping the previous data' : 'ASN MMDB unreadable; ASN lookups off');
      if (required && !this.reader) throw new CompanionError('E_ASN_MMDB', `ASN MMDB ${this.path}: ${errorMessage(err)}`, { cause: err });
      return false;
    }
  }

  /** ASN data for an address; null when unknown, not loaded, or the address is invalid. */
  lookup(ip: string): AsnInfo | null {
    if (!this.reader) return null;
    let r: Record_ | null;
    try {
      r = this.reader.get(ip);
    } catch {
      return null; // invalid address, or an IPv6 address in an IPv4-only database
    }
    if (!r || typeof r !== 'object') return null;
    const asn = asnOf(r);
    const org = orgOf(r);
    return asn === null && org === null ? null : { asn, org };
  }
}
