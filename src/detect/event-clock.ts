/**
 * The detection clock: the detectors' and the notify policy's `now`, taken from the event times of
 * the alerts (never the wall clock), so windows work the same live and in a replay.
 *
 * It follows the latest event time, except that one alert cannot move it far. A time more than
 * `leapNs` ahead of it (a Falco host whose clock is set years ahead, a forged alert) or behind it (the
 * node's clock stepped back: NTP after boot, a VM restored from a snapshot) is an *outlier*: the
 * clock stays where it is, and jumps there only when `confirm` outliers in a row agree (each within
 * `leapNs` of the others, on the same side), which is what a real clock step looks like: the whole
 * stream moves. An alert within range clears the run. Without this, one alert dated ten years
 * ahead pushed every window of every detector past its end (the beacon, escape and socket-filter
 * detectors went blind, and the checkpoint kept them blind across restarts), and a node clock stepped
 * back by a day blinded them for that day.
 *
 * Outliers still reach the detectors with their own times; only the shared clock ignores them.
 * Deterministic: the same event times give the same clock (docs/security.md, "Clock jumps").
 */

/** How far one alert may move the clock (either way) before it is an outlier. */
export const CLOCK_LEAP_NS = 3_600_000_000_000n; // 1 h
/** Outliers in a row, agreeing with each other, that move the clock. */
export const CLOCK_CONFIRM = 3;

/** What one event time did to the clock. */
export type ClockTick = 'in' | 'outlier_ahead' | 'outlier_behind' | 'jump_ahead' | 'jump_behind';

export class EventClock {
  private nowNs = 0n;
  /** The current run of outliers (same side, within leapNs of each other). */
  private run: bigint[] = [];
  private runAhead = false;

  constructor(
    private readonly leapNs: bigint = CLOCK_LEAP_NS,
    private readonly confirm: number = CLOCK_CONFIRM,
  ) {}

  /** The clock (0 before the first event). */
  get now(): bigint {
    return this.nowNs;
  }

  /** A checkpointed clock (before the first event): kept when later than the current one. */
  restore(ns: bigint): void {
    if (ns > this.nowNs) this.nowNs = ns;
  }

  /** Account for one event time; {@link now} is the clock after it. */
  observe(t: bigint): ClockTick {
    const now = this.nowNs;
    if (now === 0n) {
      this.nowNs = t;
      return 'in';
    }
    const d = t - now;
    if (d <= this.leapNs && d >= -this.leapNs) {
      if (this.run.length > 0) this.run = [];
      if (t > now) this.nowNs = t;
      return 'in';
    }
    const ahead = d > 0n;
    if (this.run.length > 0 && (ahead !== this.runAhead || this.run.some((r) => r - t > this.leapNs || t - r > this.leapNs))) this.run = [];
    this.runAhead = ahead;
    this.run.push(t);
    if (this.run.length < this.confirm) return ahead ? 'outlier_ahead' : 'outlier_behind';
    this.nowNs = this.run.reduce((a, b) => (b > a ? b : a));
    this.run = [];
    return ahead ? 'jump_ahead' : 'jump_behind';
  }
}
