/**
 * JSON lines (src/sources/file.ts, the stdin path: the same line assembly as files): chunks cut
 * anywhere, partial and overlong lines, CRLF, binary garbage, deep nesting. The source must read
 * to the end, hand exactly the alert lines to the intake, in order, and count the rest.
 */
import fc from 'fast-check';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { alertFromJson, type Alert } from '../../../src/alert.js';
import { parse } from '../../../src/json/lossless.js';
import { limitAlertJson, type InputLimits } from '../../../src/limits.js';
import { silentLogger } from '../../../src/logger.js';
import { Metrics } from '../../../src/metrics.js';
import type { Intake } from '../../../src/pipeline/types.js';
import { FileSource } from '../../../src/sources/file.js';
import { alertDoc, deepJson, hugeFieldsAlert, nastyString } from '../arbitraries.js';
import type { FuzzTarget } from '../harness.js';
import { SMALL_LIMITS, checkWithinLimits } from './http.js';

const MAX_LINE = 4096;
const LIMITS: InputLimits = { ...SMALL_LIMITS, maxValueLength: 256, maxOutputLength: 512 };

/** A test intake that keeps what it is given (no queue semantics are under test here). */
class KeepingIntake implements Intake {
  readonly alerts: Alert[] = [];
  readonly full = false;
  submit(a: Alert): Promise<void> {
    this.alerts.push(a);
    return Promise.resolve();
  }
  whenNotFull(): Promise<void> {
    return Promise.resolve();
  }
}

const line: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: alertDoc({ maxFields: 8 }).map((d) => Buffer.from(d.text.replace(/[\r\n]+/g, ' '))) },
  { weight: 1, arbitrary: alertDoc({ maxFields: 4 }).map((d) => Buffer.from(d.text.replace(/[\r\n]+/g, ' ').replace(/"output_fields":\{/, `"output_fields":{"pad":"${'x'.repeat(MAX_LINE)}",`))) },
  { weight: 1, arbitrary: fc.constantFrom('Mon Jan  1 00:00:00 2024: Falco initialized', '', ' ', '\t{', '{}', '[]', '{"rule":"x"}', '12:00:00.000000000: Warning text alert').map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: deepJson.filter((s) => s.length < MAX_LINE).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: hugeFieldsAlert.map((s) => Buffer.from(s.slice(0, 3 * MAX_LINE))) },
  { weight: 1, arbitrary: nastyString.map((s) => Buffer.from(s.replace(/\n/g, ''))) },
);

interface LinesInput {
  readonly lines: readonly Buffer[];
  readonly crlf: readonly boolean[];
  readonly lastTerminated: boolean;
  readonly cuts: readonly number[];
}

/** What the source must do with one line (the spec of src/sources/file.ts handleLine). */
function expectedAlert(seg: Buffer): Alert | null {
  if (seg.length > MAX_LINE) return null;
  let end = seg.length;
  if (end > 0 && seg[end - 1] === 13) end--;
  const text = seg.toString('utf8', 0, end);
  if (!/^[ \t]*\{/.test(text)) return null;
  try {
    const lim = limitAlertJson(parse(text), LIMITS);
    return lim.ok ? alertFromJson(lim.value, { kind: 'stdin', component: 'source/stdin' }, 0) : null;
  } catch {
    return null;
  }
}

export const jsonLines: FuzzTarget<LinesInput> = {
  name: 'JSON lines (partial lines, garbage, chunking)',
  module: 'src/sources/file.ts',
  arb: fc.record({
    lines: fc.array(line, { maxLength: 12 }),
    crlf: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
    lastTerminated: fc.boolean(),
    cuts: fc.array(fc.nat(), { maxLength: 8 }),
  }),
  check: async ({ lines, crlf, lastTerminated, cuts }) => {
    const parts: Buffer[] = [];
    lines.forEach((l, i) => {
      parts.push(l);
      if (i < lines.length - 1 || lastTerminated) parts.push(Buffer.from(crlf[i] ? '\r\n' : '\n'));
    });
    const all = Buffer.concat(parts);
    // The stream delivers the bytes in chunks cut at arbitrary places (mid-line, mid-character).
    const at = [...new Set(cuts.map((c) => (all.length === 0 ? 0 : c % all.length)))].sort((a, b) => a - b);
    const chunks: Buffer[] = [];
    let prev = 0;
    for (const c of [...at, all.length]) {
      if (c > prev) chunks.push(all.subarray(prev, c));
      prev = c;
    }
    const intake = new KeepingIntake();
    const src = new FileSource({ path: '-', fromStart: true, follow: false, pollIntervalMs: 10, maxLineBytes: MAX_LINE, limits: LIMITS, intake, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), stdin: Readable.from(chunks), now: () => 0 });
    await src.start();
    const counts = await src.done();
    await src.stop(Date.now() + 1000);

    const segs: Buffer[] = [];
    let from = 0;
    for (let i = all.indexOf(10); i >= 0; i = all.indexOf(10, from)) {
      segs.push(all.subarray(from, i));
      from = i + 1;
    }
    if (from < all.length) segs.push(all.subarray(from));
    const expected = segs.map(expectedAlert).filter((a): a is Alert => a !== null);
    expect(counts.lines).toBe(segs.length);
    expect(counts.alerts).toBe(expected.length);
    expect(counts.skipped).toBe(segs.length - expected.length);
    expect(intake.alerts.map((a) => [a.rule, a.timeNs, a.output])).toEqual(expected.map((a) => [a.rule, a.timeNs, a.output]));
    for (const a of intake.alerts) checkWithinLimits(a, LIMITS);
  },
  shortRuns: 150,
};
