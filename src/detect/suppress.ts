/**
 * Suppression: why a signal or finding must not reach a detector's output, compiled once per rules
 * load from the rules file's `suppress:` section.
 *
 * - allow entries (`allowlist`): all given conditions of one entry hold (images, namespaces, pod
 *   labels, executables, ancestors, destination CIDRs and domains), for the entry's detectors and
 *   signal kinds;
 * - CI/CD (`ci_window`, `ci_workload`): for the detectors CI silences, a signal inside a UTC window
 *   or from a CI workload;
 * - learning periods (`learning`): a detector's findings until its learning period has passed in
 *   event time since the first signal it saw.
 *
 * The engine counts every suppression by detector and reason; nothing here keeps state beyond the
 * per-signal memo. Globs: `*` any run of characters (slashes too), `?` one character.
 */
import { cidrContains } from '../net/cidr.js';
import { parseIp } from '../net/address.js';
import type { AllowEntry, CiWindow, SuppressSettings, WorkloadSelector } from './rules/types.js';
import type { Signal } from './types.js';

export type SuppressReason = 'allowlist' | 'ci_window' | 'ci_workload' | 'learning';

// ---------------------------------------------------------------------------------------------
// Matchers

/**
 * A glob where `*` matches any run of characters (slashes and line breaks too) and `?` one
 * character (UTF-16 code unit). The text is attacker-controlled (executables, command lines):
 * matching is linear in it whatever the glob (a regular expression with two or more `.*` is
 * quadratic or worse when it fails, seconds on a 4 KiB path).
 */
export function compileGlob(glob: string): (s: string) => boolean {
  if (!/[*?]/.test(glob)) return (s) => s === glob;
  // Fast paths for the common shapes: `*suffix`, `prefix*`, `*infix*`.
  if (!glob.includes('?')) {
    const inner = glob.slice(1, -1);
    if (glob.startsWith('*') && glob.endsWith('*') && glob.length >= 2 && !inner.includes('*')) return (s) => s.includes(inner);
    const tail = glob.slice(1);
    if (glob.startsWith('*') && !tail.includes('*')) return (s) => s.endsWith(tail);
    const head = glob.slice(0, -1);
    if (glob.endsWith('*') && !head.includes('*')) return (s) => s.startsWith(head);
  }
  if (!regexSafe(glob)) return (s) => wildcardMatch(glob, s);
  const re = new RegExp(globSource(glob), 's');
  return (s) => re.test(s);
}

/** Glob matching by the greedy algorithm with one backtrack point: O(len(s) × len(glob)) at worst. */
export function wildcardMatch(glob: string, s: string): boolean {
  let g = 0;
  let i = 0;
  let star = -1;
  let mark = 0;
  while (i < s.length) {
    const c = glob.charCodeAt(g);
    if (g < glob.length && c !== 42 /* * */ && (c === 63 /* ? */ || c === s.charCodeAt(i))) {
      g++;
      i++;
    } else if (g < glob.length && c === 42) {
      star = g++;
      mark = i;
    } else if (star >= 0) {
      g = star + 1;
      i = ++mark;
    } else return false;
  }
  while (g < glob.length && glob.charCodeAt(g) === 42) g++;
  return g === glob.length;
}

const RE_SPECIAL = /[.+^${}()|[\]\\*?]/g;

/** A glob whose regular expression has at most one `.*` (linear to match). */
function regexSafe(glob: string): boolean {
  let stars = 0;
  for (let i = 0; i < glob.length; i++) if (glob.charCodeAt(i) === 42) stars++;
  if (stars <= 1) return true;
  // `*infix*` becomes a plain substring search.
  return stars === 2 && !glob.includes('?') && glob.startsWith('*') && glob.endsWith('*') && glob.length >= 2;
}

/** The regular-expression source (flag `s`) that matches exactly what `compileGlob(glob)` matches. */
function globSource(glob: string): string {
  const lit = (s: string): string => s.replace(RE_SPECIAL, '\\$&');
  if (!/[*?]/.test(glob)) return `^${lit(glob)}$`;
  if (!glob.includes('?')) {
    const inner = glob.slice(1, -1);
    if (glob.startsWith('*') && glob.endsWith('*') && glob.length >= 2 && !inner.includes('*')) return lit(inner);
    const tail = glob.slice(1);
    if (glob.startsWith('*') && !tail.includes('*')) return `${lit(tail)}$`;
    const head = glob.slice(0, -1);
    if (glob.endsWith('*') && !head.includes('*')) return `^${lit(head)}`;
  }
  return '^' + glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$';
}

/**
 * One matcher for a list of globs: true when any glob matches (`compileGlob` semantics). The globs
 * whose expression is linear are joined into a single regular expression built once (one scan
 * instead of one call per glob); the others are matched by {@link wildcardMatch}.
 */
export function compileGlobs(globs: readonly string[]): (s: string) => boolean {
  if (globs.length === 0) return () => false;
  if (globs.length === 1) return compileGlob(globs[0] as string);
  const safe = globs.filter(regexSafe);
  const rest = globs.filter((g) => !regexSafe(g));
  const re = safe.length > 0 ? new RegExp(safe.map((g) => `(?:${globSource(g)})`).join('|'), 's') : null;
  if (rest.length === 0 && re) return (s) => re.test(s);
  return (s) => (re !== null && re.test(s)) || rest.some((g) => wildcardMatch(g, s));
}

/** `example.com` matches itself and any subdomain; `.example.com` only subdomains. Case-insensitive. */
function domainMatches(suffix: string, domain: string): boolean {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const s = suffix.toLowerCase().replace(/\.$/, '');
  if (s.startsWith('.')) return d.endsWith(s);
  return d === s || d.endsWith('.' + s);
}

/** True when event time `ns` falls inside the window (UTC). */
export function inCiWindow(w: CiWindow, ns: bigint): boolean {
  const ms = Number(ns / 1_000_000n);
  const d = new Date(ms);
  const day = d.getUTCDay();
  const min = d.getUTCHours() * 60 + d.getUTCMinutes();
  if (w.fromMin < w.toMin) return w.days.includes(day) && min >= w.fromMin && min < w.toMin;
  // Wraps midnight: the part after `from` belongs to today's window, before `to` to yesterday's.
  if (min >= w.fromMin) return w.days.includes(day);
  if (min < w.toMin) return w.days.includes((day + 6) % 7);
  return false;
}

/** Pod label keys the suppression settings select on (the mapping extracts these into `Signal.podLabels`). */
export function podLabelKeys(s: SuppressSettings): string[] {
  const keys = new Set<string>();
  for (const a of s.allow) for (const k of Object.keys(a.podLabels)) keys.add(k);
  for (const w of s.ci.workloads) for (const k of Object.keys(w.podLabels)) keys.add(k);
  return [...keys];
}

// ---------------------------------------------------------------------------------------------
// Compiled suppression

type Matcher = (s: string) => boolean;

/** A workload selector compiled: one matcher per glob list (null: empty, no condition). */
interface CompiledSelector {
  readonly images: Matcher | null;
  readonly namespaces: Matcher | null;
  readonly labels: readonly (readonly [string, Matcher])[];
}

interface CompiledAllow extends CompiledSelector {
  readonly index: number;
  readonly entry: AllowEntry;
  readonly exes: Matcher | null;
  readonly ancestors: Matcher | null;
}

const globs = (xs: readonly string[]): Matcher | null => (xs.length ? compileGlobs(xs) : null);

function compileSelector(w: WorkloadSelector): CompiledSelector {
  return { images: globs(w.images), namespaces: globs(w.namespaces), labels: Object.entries(w.podLabels).map(([k, v]) => [k, compileGlob(v)] as const) };
}

/** What the matchers derive from one signal, computed at most once per signal. */
class SigMemo {
  images: string[] | undefined;
  ciWorkload: boolean | undefined;
  readonly allow: (boolean | undefined)[] = [];
  constructor(readonly sig: Signal | null) {}
}

export class Suppression {
  private readonly allow: CompiledAllow[];
  /** Allow entries applicable to a detector and a signal kind (built lazily). */
  private readonly allowBy = new Map<string, Map<string, CompiledAllow[]>>();
  private readonly ciDetectors: ReadonlySet<string>;
  private readonly ciWindows: readonly CiWindow[];
  private readonly ciWorkloads: CompiledSelector[];
  private readonly learningNs = new Map<string, bigint>();
  /** The memo of the signal in hand (signals are checked once per detector that consumes them). */
  private memo = new SigMemo(null);

  constructor(
    settings: SuppressSettings,
    private readonly onAllow: (detector: string, sig: Signal, entry: AllowEntry) => void = () => {},
  ) {
    this.allow = settings.allow.map((entry, index) => ({ ...compileSelector(entry), index, entry, exes: globs(entry.exes), ancestors: globs(entry.ancestors) }));
    this.ciDetectors = new Set(settings.ci.detectors);
    this.ciWindows = settings.ci.windows;
    this.ciWorkloads = settings.ci.workloads.map(compileSelector);
    for (const [id, ms] of Object.entries(settings.learning)) if (ms > 0) this.learningNs.set(id, BigInt(ms) * 1_000_000n);
  }

  /** Why a signal is suppressed for a detector, or null. */
  signal(sig: Signal, detector: string): SuppressReason | null {
    let byKind = this.allowBy.get(detector);
    if (!byKind) this.allowBy.set(detector, (byKind = new Map()));
    let entries = byKind.get(sig.kind);
    if (!entries) {
      entries = this.allow.filter((a) => (!a.entry.detectors || a.entry.detectors.includes(detector)) && (!a.entry.kinds || a.entry.kinds.includes(sig.kind)));
      byKind.set(sig.kind, entries);
    }
    const ci = this.ciDetectors.has(detector);
    if (entries.length === 0 && !ci) return null;
    const memo = this.memo.sig === sig ? this.memo : (this.memo = new SigMemo(sig));
    for (const a of entries) {
      // Entries shared by several detectors are matched once per signal.
      let hit = memo.allow[a.index];
      if (hit === undefined) memo.allow[a.index] = hit = allowMatches(a, sig, memo);
      if (hit) {
        this.onAllow(detector, sig, a.entry);
        return 'allowlist';
      }
    }
    if (ci) {
      if (this.ciWindows.some((w) => inCiWindow(w, sig.timeNs))) return 'ci_window';
      memo.ciWorkload ??= this.ciWorkloads.some((w) => selectorMatches(w, sig, memo));
      if (memo.ciWorkload) return 'ci_workload';
    }
    return null;
  }

  /** True when a finding at `findingNs` falls in the detector's learning period (which began at `firstNs`). */
  learning(detector: string, firstNs: bigint | null, findingNs: bigint): boolean {
    const period = this.learningNs.get(detector);
    return period !== undefined && firstNs !== null && findingNs < firstNs + period;
  }
}

function imageCandidates(sig: Signal): string[] {
  const repo = sig.imageRepository;
  if (!repo) return [];
  return sig.imageTag ? [repo, `${repo}:${sig.imageTag}`] : [repo];
}

function selectorMatches(w: CompiledSelector, sig: Signal, memo: SigMemo): boolean {
  if (w.namespaces && !(sig.namespace !== null && w.namespaces(sig.namespace))) return false;
  for (const [k, m] of w.labels) {
    const v = Object.hasOwn(sig.podLabels, k) ? sig.podLabels[k] : undefined;
    if (v === undefined || !m(v)) return false;
  }
  if (w.images) {
    const m = w.images;
    if (!(memo.images ??= imageCandidates(sig)).some((x) => m(x))) return false;
  }
  return true;
}

function allowMatches(a: CompiledAllow, sig: Signal, memo: SigMemo): boolean {
  if (!selectorMatches(a, sig, memo)) return false;
  if (a.exes) {
    const exe = sig.proc.exepath ?? sig.proc.name;
    if (exe === null || !(a.exes(exe) || (sig.proc.name !== null && a.exes(sig.proc.name)))) return false;
  }
  if (a.ancestors) {
    const m = a.ancestors;
    if (!sig.proc.ancestors.some((x) => m(x))) return false;
  }
  if (a.entry.destCidrs.length) {
    const ip = sig.net.remoteIp ? parseIp(sig.net.remoteIp) : null;
    if (!ip || !a.entry.destCidrs.some((c) => cidrContains(c, ip))) return false;
  }
  if (a.entry.destDomains.length) {
    const d = sig.net.remoteDomain;
    if (!d || !a.entry.destDomains.some((s) => domainMatches(s, d))) return false;
  }
  return true;
}
