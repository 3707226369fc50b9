#!/usr/bin/env node
/**
 * falco-companion command line: run, validate, replay, demo, spool, emulate, tune, explain.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { systemClock } from './clock.js';
import { configSchema, type Config } from './config/schema.js';
import { loadConfig } from './config/validate.js';
import { ConfigError, errorMessage } from './errors.js';
import { createLogger, type Logger } from './logger.js';
import { Redactor } from './redact.js';
import { Metrics } from './metrics.js';
import { buildApp, type App } from './wiring.js';
import { runDemo } from './demo.js';
import { loadRulesFile } from './detect/rules/load.js';
import { spoolCommand } from './commands/spool.js';
import { baselineCommand } from './commands/baseline.js';
import { emulateCommand } from './emulate/command.js';
import { tuneCommand } from './commands/tune.js';
import { explainCommand } from './commands/explain.js';
import { PARSER_CONFIGURATION, valuesTakeNextArgument, withValueArguments } from './cli-args.js';
import { reportCommand } from './commands/report.js';
import { testCommand } from './commands/test.js';

interface CommonFlags {
  config?: string;
  'http-listen'?: string;
  grpc?: string;
  input?: string;
  'sidekick-url'?: string;
  stdout?: boolean;
  'state-dir'?: string;
  'log-level'?: string;
  record?: string;
}

/** Flags override the config file (and the environment). */
export function flagOverrides(f: CommonFlags): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (f['http-listen'] !== undefined) o['http.listen'] = f['http-listen'];
  if (f.grpc !== undefined) {
    o['grpc.enabled'] = true;
    o['grpc.address'] = f.grpc;
  }
  if (f.input !== undefined) o['input.path'] = f.input;
  if (f['sidekick-url'] !== undefined) o['sinks.falcosidekick.url'] = f['sidekick-url'];
  if (f.stdout) o['sinks.stdout.enabled'] = true;
  if (f['state-dir'] !== undefined) o['state_dir'] = f['state-dir'];
  if (f['log-level'] !== undefined) o['log.level'] = f['log-level'];
  if (f.record !== undefined) o['journal.record.dir'] = f.record;
  return o;
}

function load(f: CommonFlags, extra: Record<string, unknown> = {}): Config {
  return loadConfig<Config>(configSchema, { file: f.config ?? null, overrides: { ...flagOverrides(f), ...extra } });
}

function fail(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`falco-companion: invalid configuration:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`);
    process.exit(2);
  }
  process.stderr.write(`falco-companion: ${errorMessage(err)}\n`);
  process.exit(1);
}

/** Install SIGTERM/SIGINT (graceful, second one forces) and SIGHUP (reload). */
function handleSignals(app: App, logger: Logger, deadlineMs: number, onDone: (code: number) => void): void {
  let stopping = false;
  const onStop = (sig: string): void => {
    if (stopping) {
      logger.warn({ component: 'app', signal: sig }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ component: 'app', signal: sig, deadline_ms: deadlineMs }, 'shutting down');
    app.stop(Date.now() + deadlineMs).then(
      () => onDone(0),
      (err: unknown) => {
        logger.error({ component: 'app', error: errorMessage(err) }, 'shutdown failed');
        onDone(1);
      },
    );
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  process.on('SIGHUP', () => {
    logger.info({ component: 'app', signal: 'SIGHUP' }, 'reloading');
    app.reload();
  });
}

async function run(f: CommonFlags): Promise<void> {
  const config = load(f);
  const logger = createLogger({ level: config.log.level, redactor: new Redactor(config.redact.patterns) });
  const metrics = new Metrics();
  const app = buildApp(config, { logger, metrics, clock: systemClock });
  process.on('uncaughtException', (err) => {
    logger.fatal({ component: 'app', error: err }, 'uncaught exception');
    process.exitCode = 1;
  });
  handleSignals(app, logger, config.shutdown.deadline, (code) => process.exit(code));
  await app.start();
  const done = app.inputDone();
  if (done && config.input.path === '-') {
    // stdin ended: deliver what was accepted (within input.drain_timeout) and exit like a filter.
    await done;
    const r = await app.finish(Date.now() + config.input.drain_timeout);
    process.exit(r.lost > 0 ? 1 : 0);
  }
}

/** The built-in default state directory (a node's daemon database). */
const DEFAULT_STATE_DIR = '/var/lib/falco-companion';

async function replay(f: CommonFlags & { file: string }): Promise<void> {
  let config = load(f, { 'http.enabled': false, 'grpc.enabled': false });
  // A replay never writes into the daemon's database by accident (image history, baselines,
  // statistics, journal): without a state directory of its own it works in a temporary one.
  let scratch: string | null = null;
  if (config.state_dir === DEFAULT_STATE_DIR && f['state-dir'] === undefined) {
    scratch = mkdtempSync(join(tmpdir(), 'falco-companion-replay-'));
    config = load(f, { 'http.enabled': false, 'grpc.enabled': false, state_dir: scratch });
    process.on('exit', () => rmSync(scratch as string, { recursive: true, force: true }));
  }
  const logger = createLogger({ level: config.log.level, redactor: new Redactor(config.redact.patterns) });
  if (scratch) logger.info({ component: 'app', state_dir: scratch }, `replay: no --state-dir, using a temporary state directory (removed at exit; give --state-dir to keep what the replay learned)`);
  const metrics = new Metrics();
  const started = Date.now();
  let last = { lines: 0, alerts: 0, skipped: 0 };
  const progress = (p: { lines: number; alerts: number; skipped: number }, final = false): void => {
    last = p;
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    process.stderr.write(`${final ? '' : '\r'}replay: ${p.lines} lines, ${p.alerts} alerts, ${p.skipped} skipped, ${Math.round(p.alerts / secs)} alerts/s${final ? '\n' : ''}`);
  };
  const app = buildApp(config, { logger, metrics, clock: systemClock, replay: { path: f.file, onProgress: (p) => progress(p) } });
  handleSignals(app, logger, config.shutdown.deadline, (code) => process.exit(code));
  await app.start();
  const counts = (await app.inputDone()) as { lines: number; alerts: number; skipped: number } | null;
  const r = await app.finish(Date.now() + config.input.drain_timeout);
  progress(counts ?? last, true);
  if (r.lost > 0) process.exitCode = 1;
}

export async function main(argv: string[]): Promise<void> {
  const common = {
    config: { type: 'string', describe: 'YAML config file (see docker/config.example.yaml)' },
    'http-listen': { type: 'string', describe: 'HOST:PORT for the receiver and operations endpoints (http.listen)' },
    grpc: { type: 'string', describe: 'Falco gRPC address: unix:///run/falco/falco.sock or HOST:PORT with mTLS (enables grpc)' },
    input: { type: 'string', describe: 'JSON-lines file to follow, or - for stdin (input.path)' },
    'sidekick-url': { type: 'string', describe: 'Falcosidekick URL (sinks.falcosidekick.url)' },
    stdout: { type: 'boolean', describe: 'Also write forwarded alerts to stdout as JSON lines' },
    'state-dir': { type: 'string', describe: 'State directory (state_dir)' },
    'log-level': { type: 'string', describe: 'Log level (log.level)' },
    record: { type: 'string', describe: 'Keep the raw alerts of each detection as a test case in DIR (journal.record.dir; see falco-companion test)' },
  } as const;
  await yargs(argv)
    .scriptName('falco-companion')
    .parserConfiguration(PARSER_CONFIGURATION)
    .usage('$0 <command> [options]')
    .command('run', 'Run the daemon', (y) => valuesTakeNextArgument(y.options(common)), (a) => run(a as CommonFlags).catch(fail))
    .command(
      'validate',
      'Validate a config file and the companion rules file it names (exit 0 when valid; every problem as file:line:col)',
      (y) =>
        valuesTakeNextArgument(
          y.options({
            config: { type: 'string', describe: 'YAML config file (its detect.rules_file is validated too)' },
            rules: { type: 'string', describe: 'A companion rules file to validate on its own' },
          }),
        ).check((a) => (a.config !== undefined || a.rules !== undefined ? true : 'give --config FILE and/or --rules FILE')),
      (a) => {
        try {
          const problems: string[] = [];
          const rulesFiles: string[] = a.rules !== undefined ? [String(a.rules)] : [];
          if (a.config !== undefined) {
            try {
              const config = load(a as CommonFlags);
              if (config.detect.rules_file) rulesFiles.push(config.detect.rules_file);
            } catch (err) {
              if (!(err instanceof ConfigError)) throw err;
              problems.push(...err.problems);
            }
          }
          for (const f of rulesFiles) {
            try {
              for (const w of loadRulesFile(f).warnings) process.stderr.write(`${f}: warning: ${w}\n`);
            } catch (err) {
              if (!(err instanceof ConfigError)) throw err;
              problems.push(...err.problems);
            }
          }
          if (problems.length > 0) fail(new ConfigError(problems));
          for (const f of [a.config, ...rulesFiles].filter((x) => x !== undefined)) process.stdout.write(`${String(f)}: OK\n`);
        } catch (err) {
          fail(err);
        }
      },
    )
    .command(
      'replay <file>',
      'Feed a JSON-lines file of Falco alerts through the pipeline as fast as possible',
      (y) => valuesTakeNextArgument(y.positional('file', { type: 'string', demandOption: true, describe: 'JSON-lines file, or - for stdin' }).options(common)),
      (a) => replay(a as CommonFlags & { file: string }).catch(fail),
    )
    .command(
      'demo',
      'Run the daemon with a built-in Falco emulator feeding a bundled alert stream over gRPC and HTTP',
      (y) => valuesTakeNextArgument(y.options({ 'log-level': { type: 'string', default: 'warn' } })),
      (a) =>
        runDemo({ logLevel: String(a['log-level']) }).then(
          (code) => process.exit(code),
          (err: unknown) => fail(err),
        ),
    )
    .command(withValueArguments(spoolCommand))
    .command(withValueArguments(baselineCommand))
    .command(withValueArguments(emulateCommand))
    .command(withValueArguments(tuneCommand))
    .command(withValueArguments(explainCommand))
    .command(withValueArguments(reportCommand))
    .command(withValueArguments(testCommand))
    .demandCommand(1, 'name a command: run, validate, replay, demo, report or test')
    .strict()
    .help()
    .parseAsync();
}

await main(hideBin(process.argv));
