/** The spool's envelope of a received alert: lossless round trip. */
import { describe, expect, it } from 'vitest';
import { alertFromJson, serializeAlert, withEnrichment } from '../../src/alert.js';
import { parse } from '../../src/json/lossless.js';
import { decodeAlert, encodeAlert } from '../../src/store/envelope.js';

describe('payload', () => {
  it('round-trips an alert losslessly (big ints, extra keys, companion keys, origin)', () => {
    const raw = '{"hostname":"n","output":"o","output_fields":{"evt.time":1700000000123456789,"x":null,"b":true,"f":0.5},"priority":"Critical","rule":"R","source":"syscall","tags":["a"],"time":"2023-11-14T22:13:20.123456789Z","uuid":"u-1"}';
    const a = withEnrichment(alertFromJson(parse(raw), { kind: 'grpc', component: 'source/grpc' }, 42), { alert_id: 'X', n: 3, ok: false });
    const b = decodeAlert(encodeAlert(a));
    expect(serializeAlert(b)).toBe(serializeAlert(a));
    expect(b.timeNs).toBe(a.timeNs);
    expect(b.origin).toEqual(a.origin);
    expect(b.receivedAtMs).toBe(42);
    expect(b.companion).toEqual({ alert_id: 'X', n: 3, ok: false });
  });
});
