/**
 * The fuzz harness: each target is a fast-check arbitrary of hostile inputs and a check of the
 * invariants every parser of untrusted input keeps (no exception escapes, a clear coded error for
 * invalid input, an exact round trip where the contract promises one), timed per input.
 *
 * `npm test` runs a short pass (each target's `shortRuns`); `npm run fuzz` (scripts/fuzz.mjs) sets
 * FUZZ_RUNS (10^5 by default) and FUZZ_OUT, and the results (cases, time, slowest input, heap
 * growth) are written there for docs/security-parsers.md.
 */
import fc from 'fast-check';
import { appendFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface FuzzTarget<T> {
  /** What is fuzzed, e.g. `HTTP body → Alert`. */
  readonly name: string;
  /** The module(s) under test. */
  readonly module: string;
  readonly arb: fc.Arbitrary<T>;
  /** Check one input: throw (an assertion) when an invariant breaks. */
  readonly check: (input: T) => void | Promise<void>;
  /** Runs in the short pass of `npm test` (default 100). */
  readonly shortRuns?: number;
}

export interface FuzzResult {
  readonly name: string;
  readonly module: string;
  readonly cases: number;
  readonly seconds: number;
  readonly maxMsPerInput: number;
  /** Heap after the run minus heap before it, both after a full GC (MiB): what the parser kept. */
  readonly heapGrowthMiB: number;
  /** Highest heap seen during the run (sampled, garbage included; MiB). */
  readonly peakHeapMiB: number;
  readonly seed: number;
}

/** Cases per target: FUZZ_RUNS when set (npm run fuzz), else the target's short pass. */
export function runsFor(t: { readonly shortRuns?: number }): number {
  const n = Number(process.env['FUZZ_RUNS'] ?? '');
  return Number.isFinite(n) && n > 0 ? n : (t.shortRuns ?? 100);
}

/**
 * Longest one input may take: a parser that is super-linear on some input fails here (the
 * quadratic glob matching took 13 s on one 4 KiB path). Generous, as the machine may be shared.
 */
export const MAX_MS_PER_INPUT = Number(process.env['FUZZ_MAX_MS'] ?? '') || 5000;

let gcFn: (() => void) | null = null;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

const MiB = 1024 * 1024;

/** Run one target for `runs` cases; throws (with fast-check's counterexample and seed) when an invariant breaks. */
export async function fuzz<T>(t: FuzzTarget<T>, runs = runsFor(t)): Promise<FuzzResult> {
  const seed = Number(process.env['FUZZ_SEED'] ?? '') || (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  gc();
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  let maxMs = 0;
  let n = 0;
  const started = performance.now();
  const timed = async (input: T): Promise<void> => {
    const t0 = performance.now();
    await t.check(input);
    const ms = performance.now() - t0;
    if (ms > maxMs) maxMs = ms;
    if (++n % 512 === 0) {
      const h = process.memoryUsage().heapUsed;
      if (h > peak) peak = h;
    }
    if (ms > MAX_MS_PER_INPUT) throw new Error(`one input took ${ms.toFixed(0)} ms (limit ${MAX_MS_PER_INPUT} ms)`);
  };
  const out = await fc.check(fc.asyncProperty(t.arb, timed), { numRuns: runs, seed, endOnFailure: true });
  if (out.failed) {
    // The counterexample can be megabytes (deep nesting, huge maps): show its start and end.
    const ex = fc.stringify(out.counterexample);
    const shown = ex.length > 1200 ? `${ex.slice(0, 800)} …(${ex.length} chars)… ${ex.slice(-300)}` : ex;
    const cause = out.errorInstance instanceof Error ? out.errorInstance : new Error(String(out.errorInstance));
    throw new Error(`${t.name}: invariant broken after ${out.numRuns} cases (seed ${out.seed}, path "${out.counterexamplePath ?? ''}")\ncounterexample: ${shown}\n${cause.message.slice(0, 2000)}`, { cause });
  }
  const seconds = (performance.now() - started) / 1000;
  gc();
  const after = process.memoryUsage().heapUsed;
  const r: FuzzResult = {
    name: t.name,
    module: t.module,
    cases: runs,
    seconds: Math.round(seconds * 10) / 10,
    maxMsPerInput: Math.round(maxMs * 10) / 10,
    heapGrowthMiB: Math.round(((after - before) / MiB) * 10) / 10,
    peakHeapMiB: Math.round((Math.max(peak, after) / MiB) * 10) / 10,
    seed,
  };
  const file = process.env['FUZZ_OUT'];
  if (file) appendFileSync(file, JSON.stringify(r) + '\n');
  return r;
}

/** Run `f`; return what it threw (undefined when it returned). */
export function thrown(f: () => unknown): unknown {
  try {
    f();
    return undefined;
  } catch (err) {
    return err;
  }
}
