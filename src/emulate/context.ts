/**
 * What a scenario's plan (src/emulate/plans.ts) works with, and what runs it (src/emulate/run.ts):
 * the run's options, the context a plan gets, the scenario-independent defaults.
 */
import type { Spawned, Executor } from './executor.js';
import type { FootprintEnv, Check } from './footprint.js';
import type { Journal, JournalEntry } from './journal.js';
import type { NetRef } from './net.js';
import type { Scenario } from './scenarios.js';

export interface DockerMode {
  readonly socket: string;
  /** Image the throwaway container runs (needs /bin/sh; the helper is mounted in). */
  readonly image: string;
}

export interface RunOptions {
  readonly scenario: Scenario;
  /** Bound on the whole run (seconds); default the scenario's. */
  readonly timeoutS?: number;
  /** socket-filter-host: ms between arming and trigger. */
  readonly delayMs?: number;
  /** Beacon / scraper cadence. */
  readonly fast?: boolean;
  readonly count?: number;
  readonly intervalMs?: number;
  readonly jitterPct?: number;
  /** Run the helper in a throwaway container through this engine. */
  readonly docker?: DockerMode;
  readonly helper?: string;
  readonly iptables?: string;
  readonly apiServer?: string;
  readonly runtimeSocket?: string;
  readonly registry?: string;
  /** Base image of the unexpected-image scenario (default: the --docker image). */
  readonly baseImage?: string;
  /** Override the detected container id (in-container runs). */
  readonly containerId?: string;
  readonly signal: AbortSignal;
  /** Progress lines (stderr). */
  readonly progress?: (line: string) => void;
}

/** What a plan works with. */
export interface RunCtx {
  readonly scenario: Scenario;
  readonly run: string;
  readonly exec: Executor;
  readonly journal: Journal;
  readonly vars: Record<string, string>;
  readonly opts: RunOptions;
  readonly signal: AbortSignal;
  /** The helpers run as host processes (not in a container). */
  readonly hostRun: boolean;
  readonly foot: FootprintEnv;
  /** The target and peer namespaces (the same unless the plan set up a pair). */
  net: { target: NetRef; peer: NetRef };
  /** Start a declared role (argv from the scenario's template). */
  role(name: string, o?: { netns?: NetRef; tty?: boolean }): Promise<Spawned>;
  /** Wait for a journal step of a role (the role's fatal error or death rejects). */
  step(role: string, step: string, timeoutMs?: number): Promise<JournalEntry>;
  /** The runner-side pid of a journal entry's process (throws when it is gone). */
  pidOf(e: JournalEntry): number;
  /** Let a helper waiting on ctl/<name> go on. */
  release(name: string): void;
  check(c: Check | Check[] | Promise<Check | Check[]>): Promise<void>;
  cleanup(what: string, fn: () => Promise<unknown> | unknown): void;
  note(text: string): void;
  progress(text: string): void;
  /** Wait for a spawned role to exit (bounded); its code. */
  exited(s: Spawned, timeoutMs?: number): Promise<number | null | undefined>;
  /** Run a command in a namespace and require success (setup). */
  netRun(ref: NetRef, argv: readonly string[], what: string): Promise<string>;
  /** Create a network namespace of the run's own (host runs). */
  newNetns(suffix: string): Promise<NetRef>;
  /** A path inside the helpers' filesystem, as the runner can write it. */
  rootPath(p: string): string;
  /** Seconds a single wait may take. */
  readonly waitS: number;
  /** What the plan's prepare() found (docker-registry scenarios). */
  readonly prepared: Readonly<Record<string, string>>;
}

/** Scenario-independent defaults. */
export const DEFAULTS = {
  beacon: { count: 20, intervalMs: 5000, jitterPct: 10 },
  beaconFast: { count: 18, intervalMs: 1000, jitterPct: 10 },
  scrape: { count: 12, intervalMs: 5000 },
  scrapeFast: { count: 6, intervalMs: 1000 },
  delayMs: 2000,
  registry: '127.0.0.1:5000',
  runtimeSocket: '/var/run/docker.sock',
} as const;
