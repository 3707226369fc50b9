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

const LO_SPAN = 2 ** 40;

/** 8 Crockford base32 characters of a 40-bit number. */
function encode40(v: number): string {
  let s = '';
  for (let i = 0; i < 8; i++) {
    s = B32.charAt(v % 32) + s;
    v = Math.floor(v / 32);
  }
  return s;
}

export class AlertIdGenerator {
  private lastMs = -1;
  /** The 80-bit random part as two 40-bit halves (plain numbers: no BigInt per id). */
  private hi = 0;
  private lo = 0;
  private pool = Buffer.alloc(0);
  private poolAt = 0;

  constructor(private readonly now: () => number = Date.now) {}

  next(): string {
    let ms = this.now();
    if (ms <= this.lastMs) {
      // Same (or an earlier: clock stepped back) millisecond: keep the order by incrementing.
      ms = this.lastMs;
      if (++this.lo === LO_SPAN) {
        this.lo = 0;
        if (++this.hi === LO_SPAN) {
          ms = this.lastMs + 1;
          this.draw();
        }
      }
    } else {
      this.draw();
    }
    this.lastMs = ms;
    return encodeTime(ms) + encode40(this.hi) + encode40(this.lo);
  }

  /** The alert's id, or a new one (the alert is returned with `companion.alert_id` set). */
  ensure(a: Alert): Alert {
    const have = a.companion[ALERT_ID_KEY];
    if (typeof have === 'string' && have !== '') return a;
    return withEnrichment(a, { [ALERT_ID_KEY]: this.next() });
  }

  private draw(): void {
    // 79 random bits (the top bit stays 0): room to increment within the millisecond.
    // Random bytes come from a pool refilled 64 draws at a time.
    if (this.poolAt + 10 > this.pool.length) {
      this.pool = randomBytes(640);
      this.poolAt = 0;
    }
    const b = this.pool;
    const i = this.poolAt;
    this.poolAt += 10;
    this.hi = ((b[i] as number) & 0x7f) * 2 ** 32 + b.readUInt32BE(i + 1);
    this.lo = (b[i + 5] as number) * 2 ** 32 + b.readUInt32BE(i + 6);
  }
}

/** The id of an alert, or null when it has none. */
export function alertIdOf(a: Alert): string | null {
  const v = a.companion[ALERT_ID_KEY];
  return typeof v === 'string' && v !== '' ? v : null;
}
