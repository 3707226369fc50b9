/**
 * `companion.alert_id`: a stable, time-ordered id given to every alert at intake (and to every
 * detection when it is emitted). ULID layout: 26 Crockford base32 characters, the first 10 the
 * millisecond timestamp, the last 16 an 80-bit random part that is incremented (not redrawn)
 * within the same millisecond, so ids from one generator sort in the order they were made.
 * Downstream, two deliveries with the same id are the same alert (a duplicate after a crash).
 */
import { randomBytes } from 'node:crypto';
import type { Alert } from '../alert.js';
import { withEnrichment } from '../alert.js';

const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const MAX_RANDOM = (1n << 80n) - 1n;

export const ALERT_ID_KEY = 'alert_id';

function encodeTime(ms: number): string {
  let s = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    s = B32.charAt(t % 32) + s;
    t = Math.floor(t / 32);
  }
  return s;
}

function encodeRandom(r: bigint): string {
  let s = '';
  let v = r;
  for (let i = 0; i < 16; i++) {
    s = B32.charAt(Number(v & 31n)) + s;
    v >>= 5n;
  }
  return s;
}

/** The smallest id with this timestamp: `id < alertIdFloor(t)` means "made before t". */
export function alertIdFloor(ms: number): string {
  return encodeTime(Math.max(0, Math.floor(ms))) + '0'.repeat(16);
}

/** The ms timestamp in an id, or null when it is not one of ours. */
export function alertIdTimeMs(id: string): number | null {
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) return null;
  let t = 0;
  for (let i = 0; i < 10; i++) t = t * 32 + B32.indexOf(id.charAt(i));
  return t;
}

export class AlertIdGenerator {
  private lastMs = -1;
  private rand = 0n;

  constructor(private readonly now: () => number = Date.now) {}

  next(): string {
    let ms = this.now();
    if (ms <= this.lastMs) {
      // Same (or an earlier: clock stepped back) millisecond: keep the order by incrementing.
      ms = this.lastMs;
      if (this.rand >= MAX_RANDOM) {
        ms = this.lastMs + 1;
        this.rand = this.draw();
      } else this.rand++;
    } else {
      this.rand = this.draw();
    }
    this.lastMs = ms;
    return encodeTime(ms) + encodeRandom(this.rand);
  }

  /** The alert's id, or a new one (the alert is returned with `companion.alert_id` set). */
  ensure(a: Alert): Alert {
    const have = a.companion[ALERT_ID_KEY];
    if (typeof have === 'string' && have !== '') return a;
    return withEnrichment(a, { [ALERT_ID_KEY]: this.next() });
  }

  private draw(): bigint {
    // 79 random bits: leaves room to increment within the millisecond without overflowing.
    const b = randomBytes(10);
    let v = 0n;
    for (const x of b) v = (v << 8n) | BigInt(x);
    return v >> 1n;
  }
}

/** The id of an alert, or null when it has none. */
export function alertIdOf(a: Alert): string | null {
  const v = a.companion[ALERT_ID_KEY];
  return typeof v === 'string' && v !== '' ? v : null;
}
