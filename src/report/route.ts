/**
 * The report page on the operations port (`journal.serve`): `GET /detections/<id>` answers the
 * detection's page (text/html, the page's Content-Security-Policy as a header too, never cached),
 * `GET /detections/<id>.json` its journal record. Read-only: nothing a request sends is stored.
 * `GET /detections` (the JSON list of recent detections) is another route and stays as it is.
 */
import type { OpsRoute } from '../server/ops.js';
import type { Reply } from '../server/reply.js';
import type { DetectionRecord, JournalReader } from '../journal/types.js';
import { REPORT_CSP, renderPage } from './html.js';

export const REPORT_PATH_PREFIX = '/detections/';
/** Alert ids are ULIDs; anything else is refused before a lookup. */
const ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

const HEADERS = {
  'Content-Security-Policy': REPORT_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cache-Control': 'no-store',
} as const;

export interface ReportRouteDeps {
  readonly reader: () => JournalReader;
  readonly now: () => number;
  readonly version?: string;
}

/** Every record of a record's incident, for the page's incident section. */
export function incidentsOf(reader: JournalReader, records: readonly DetectionRecord[]): Map<string, readonly DetectionRecord[]> {
  const out = new Map<string, readonly DetectionRecord[]>();
  for (const r of records) if (r.incident) out.set(r.id, reader.byIncident(r.incident, 200));
  return out;
}

export function reportRoute(d: ReportRouteDeps): OpsRoute {
  return {
    method: 'GET',
    path: REPORT_PATH_PREFIX,
    prefix: true,
    handle(req): Reply {
      const json = req.rest.endsWith('.json');
      const id = json ? req.rest.slice(0, -5) : req.rest;
      if (!ID.test(id)) return { status: 400, json: { error: 'bad_request', reason: 'a detection id is 26 characters (companion.alert_id), e.g. /detections/01JNGAA30S09N2EB5YHVFYT5FE' } };
      const reader = d.reader();
      const r = reader.get(id);
      if (!r) return { status: 404, json: { error: 'not_found', reason: `no detection ${id} in the journal (it keeps journal.max_records for journal.max_age)` } };
      if (json) return { status: 200, json: r, headers: { 'Cache-Control': 'no-store' } };
      const html = renderPage([r], { generatedAtMs: d.now(), incidents: incidentsOf(reader, [r]), linkBase: '', ...(d.version ? { version: d.version } : {}) });
      return { status: 200, text: html, contentType: 'text/html; charset=utf-8', headers: HEADERS };
    },
  };
}

/**
 * The URL of a detection's page: `journal.external_url`, else `http(s)://<hostname>:<port>` of the
 * listener serving the operations endpoints (known once it is bound; null before).
 */
export function reportUrlFor(o: {
  readonly externalUrl: string | null;
  readonly hostname: () => string;
  readonly listener: () => { readonly port: number; readonly tls: boolean } | null;
}): (id: string) => string | null {
  return (id) => {
    if (o.externalUrl) return `${o.externalUrl.replace(/\/+$/, '')}${REPORT_PATH_PREFIX}${id}`;
    const l = o.listener();
    if (l === null) return null;
    const h = o.hostname();
    return `${l.tls ? 'https' : 'http'}://${h.includes(':') ? `[${h}]` : h}:${l.port}${REPORT_PATH_PREFIX}${id}`;
  };
}
