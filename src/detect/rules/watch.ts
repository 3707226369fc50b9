/**
 * The rules file in force, reloaded on an explicit `reload()` (the CLI calls it on SIGHUP) and on
 * file change (mtime/size/inode polling). An invalid new file keeps the old rules running, logs
 * every problem and shows in /readyz detail; `rules_reloads_total{result="ok"|"invalid"}` counts
 * reloads.
 */
import { statSync } from 'node:fs';
import type { Component, ComponentHealth } from '../../component.js';
import { ConfigError, errorMessage } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Metrics } from '../../metrics.js';
import { loadRulesFile } from './load.js';
import type { DetectorSettingsSpec, LoadedRules } from './types.js';

export interface RulesWatcherOptions {
  /** Rules file to watch; null: built-in defaults (never change; reload is a no-op success). */
  readonly path: string | null;
  /** The rules loaded at start (the engine was built from them). */
  readonly initial: LoadedRules;
  /** Settings schemas besides the registry's (tests); see LoadRulesOptions. */
  readonly detectors?: readonly DetectorSettingsSpec[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Called with the new rules after a successful reload. */
  readonly onReload: (rules: LoadedRules) => void;
  /** mtime polling interval (0: no polling). */
  readonly pollMs?: number;
}

export class RulesWatcher implements Component {
  readonly id = 'detect/rules';
  private current: LoadedRules;
  private timer: NodeJS.Timeout | null = null;
  private stamp: string | null;
  private readonly reloads;
  private lastError: string | null = null;
  private readonly log: Logger;

  constructor(private readonly opts: RulesWatcherOptions) {
    this.current = opts.initial;
    this.stamp = this.fileStamp();
    this.log = opts.logger.child({ component: this.id });
    this.reloads = opts.metrics.counter('rules_reloads_total', 'Companion rules file reloads, by result (ok, invalid)', ['result']);
  }

  get rules(): LoadedRules {
    return this.current;
  }

  /** Problems of the last failed reload (null after a good one). */
  get error(): string | null {
    return this.lastError;
  }

  /** Starts polling the file (no-op for the built-in defaults or `pollMs: 0`). */
  async start(): Promise<void> {
    const every = this.opts.pollMs ?? 2000;
    if (this.opts.path === null || every <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      const s = this.fileStamp();
      if (s !== this.stamp) this.reload('file change');
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Always ready: an invalid reload keeps the previous rules (said in the detail). */
  health(): ComponentHealth {
    const err = this.lastError;
    return err ? { ready: true, detail: `last reload invalid, old rules kept: ${err.slice(0, 200)}` } : { ready: true };
  }

  /** Reload now. Returns true when new rules are in force. */
  reload(why = 'SIGHUP'): boolean {
    this.stamp = this.fileStamp();
    let next: LoadedRules;
    try {
      next = loadRulesFile(this.opts.path, this.opts.detectors ? { detectors: this.opts.detectors } : {});
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
      this.lastError = problems.join('\n');
      this.reloads.inc({ result: 'invalid' });
      this.log.error({ file: this.opts.path, problems, reason: why }, `rules file reload failed, keeping the previous rules: ${problems.length} problem(s)`);
      return false;
    }
    this.current = next;
    this.lastError = null;
    this.reloads.inc({ result: 'ok' });
    this.log.info({ file: next.file, reason: why, signals: next.signals.length }, 'rules file reloaded');
    this.opts.onReload(next);
    return true;
  }

  private fileStamp(): string | null {
    if (this.opts.path === null) return null;
    try {
      const st = statSync(this.opts.path);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return 'missing';
    }
  }
}
