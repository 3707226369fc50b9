/**
 * A bounded quantile sketch with relative accuracy (DDSketch-style log buckets): value x > 0 goes
 * to bucket ceil(log_γ x); quantiles come back within ±(γ-1)/(γ+1) ≈ 9 % of the true value for
 * γ = 1.2. At most {@link MAX_BINS} buckets (a dynamic range of γ^64 ≈ 10^5): when a value lands
 * above the range, the lowest buckets are folded into the new lowest one (the upper tail, which
 * deviations are judged against, keeps its accuracy). Values below {@link MIN_VALUE} count as zero.
 *
 * Deterministic, no wall clock; `encode`/`decode` give a compact text form for the state database.
 */

export const GAMMA = 1.2;
const LN_GAMMA = Math.log(GAMMA);
export const MIN_VALUE = 1e-6;
export const MAX_BINS = 64;

function indexOf(x: number): number {
  return Math.ceil(Math.log(x) / LN_GAMMA);
}

/** The value a bucket stands for (its relative midpoint). */
export function bucketValue(i: number): number {
  return (2 * GAMMA ** i) / (GAMMA + 1);
}

export class LogSketch {
  /** Values counted (zero bucket included). */
  count = 0;
  /** Values below MIN_VALUE (and negatives: usage never is). */
  zero = 0;
  /** Bucket index of bins[0]. */
  offset = 0;
  /** Counts of buckets offset .. offset + bins.length - 1 (grown as needed, at most MAX_BINS). */
  bins: Uint32Array = new Uint32Array(0);

  add(x: number, n = 1): void {
    if (!(n > 0) || !Number.isFinite(x)) return;
    this.count += n;
    if (x < MIN_VALUE) {
      this.zero += n;
      return;
    }
    this.addIndex(indexOf(x), n);
  }

  private addIndex(i: number, n: number): void {
    if (this.bins.length === 0) {
      this.bins = new Uint32Array(1);
      this.offset = i;
    } else if (i < this.offset) {
      const span = this.offset + this.bins.length - i;
      if (span <= MAX_BINS) this.grow(i, span);
      else i = this.offset; // below the kept range: counted in the lowest bucket
    } else if (i >= this.offset + this.bins.length) {
      const span = i - this.offset + 1;
      if (span <= MAX_BINS) this.grow(this.offset, span);
      else this.slide(i - MAX_BINS + 1);
    }
    const k = i - this.offset;
    this.bins[k] = (this.bins[k] as number) + n;
  }

  /** Re-allocate to cover [offset, offset + span). */
  private grow(offset: number, span: number): void {
    const next = new Uint32Array(span);
    next.set(this.bins, this.offset - offset);
    this.bins = next;
    this.offset = offset;
  }

  /** Move the range up so it starts at `offset` (MAX_BINS long), folding lower buckets into the first. */
  private slide(offset: number): void {
    const next = new Uint32Array(MAX_BINS);
    let folded = 0;
    for (let k = 0; k < this.bins.length; k++) {
      const c = this.bins[k] as number;
      const j = this.offset + k - offset;
      if (j <= 0) folded += c;
      else if (j < MAX_BINS) next[j] = c;
    }
    next[0] = (next[0] as number) + folded;
    this.bins = next;
    this.offset = offset;
  }

  merge(o: LogSketch): void {
    if (o.count === 0) return;
    this.count += o.count;
    this.zero += o.zero;
    for (let k = 0; k < o.bins.length; k++) {
      const c = o.bins[k] as number;
      if (c > 0) this.addIndex(o.offset + k, c);
    }
  }

  /** The q-quantile (0..1); 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.min(this.count - 1, Math.max(0, q * (this.count - 1)));
    let seen = this.zero;
    if (rank < seen) return 0;
    for (let k = 0; k < this.bins.length; k++) {
      seen += this.bins[k] as number;
      if (rank < seen) return bucketValue(this.offset + k);
    }
    return bucketValue(this.offset + this.bins.length - 1);
  }

  /** `count,zero,offset,b0,b1,...` with trailing empty buckets dropped. */
  encode(): string {
    let end = this.bins.length;
    while (end > 0 && this.bins[end - 1] === 0) end--;
    let start = 0;
    while (start < end && this.bins[start] === 0) start++;
    const parts = [this.count, this.zero, this.offset + start];
    for (let k = start; k < end; k++) parts.push(this.bins[k] as number);
    return parts.join(',');
  }

  /** Inverse of {@link encode}; null when the text is not a sketch. */
  static decode(text: string): LogSketch | null {
    const parts = text.split(',').map(Number);
    if (parts.length < 3 || parts.length > 3 + MAX_BINS || parts.some((n) => !Number.isInteger(n))) return null;
    const [count, zero, offset] = parts as [number, number, number];
    const bins = parts.slice(3);
    if (count < 0 || zero < 0 || bins.some((b) => b < 0 || b > 0xffffffff)) return null;
    if (bins.reduce((a, b) => a + b, zero) !== count) return null;
    const s = new LogSketch();
    s.count = count;
    s.zero = zero;
    s.offset = offset;
    s.bins = Uint32Array.from(bins);
    return s;
  }
}
