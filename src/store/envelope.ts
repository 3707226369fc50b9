/**
 * The spool's payload for a received alert: a lossless, versioned envelope of the alert as it
 * was accepted (Falco's JSON with every digit of big integers), its enrichment record, where it
 * came from and when. `decodeAlert(encodeAlert(a))` serialises exactly like `a`.
 */
import { alertFromJson, serializeAlert, withEnrichment, type Alert, type EnrichValue, type OriginKind } from '../alert.js';
import { CompanionError } from '../errors.js';
import { LosslessNumber, isJsonObject, parse } from '../json/lossless.js';

/**
 * `source`: the JSON text `a` was made from by `alertFromJson(parse(source))` alone (a receiver's
 * request body), kept as it came instead of serialising the alert again: decoding it gives the
 * same alert.
 */
export function encodeAlert(a: Alert, source?: string): string {
  return `{"v":1,"alert":${source ?? serializeAlert(a, { includeCompanion: false })},"companion":${JSON.stringify(a.companion)},"origin":${JSON.stringify(a.origin)},"received_at_ms":${a.receivedAtMs}}`;
}

const ORIGIN_KINDS: readonly OriginKind[] = ['http', 'grpc', 'file', 'stdin', 'replay', 'test', 'detector', 'metrics'];

/** The alert of a version 1 envelope; E_SPOOL_PAYLOAD when the text is not one. */
export function decodeAlert(payload: string): Alert {
  const o = parse(payload);
  if (!isJsonObject(o) || o['v'] !== 1 || !isJsonObject(o['alert'])) throw new CompanionError('E_SPOOL_PAYLOAD', 'spool row is not a version 1 alert envelope');
  const og = o['origin'];
  const kind = isJsonObject(og) && typeof og['kind'] === 'string' && (ORIGIN_KINDS as readonly string[]).includes(og['kind']) ? (og['kind'] as OriginKind) : 'test';
  const component = isJsonObject(og) && typeof og['component'] === 'string' ? og['component'] : 'spool';
  const rat = o['received_at_ms'];
  const receivedAt = typeof rat === 'number' ? rat : Date.now();
  const a = alertFromJson(o['alert'], { kind, component }, receivedAt, true);
  const comp: Record<string, EnrichValue> = {};
  const c = o['companion'];
  if (isJsonObject(c)) {
    for (const k of Object.keys(c)) {
      const v = c[k];
      if (v instanceof LosslessNumber) comp[k] = Number(v.raw);
      else if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') comp[k] = v;
    }
  }
  return withEnrichment(a, comp);
}
