/**
 * pino JSON logs, one child logger per component. Field vocabulary:
 * component, rule, priority, source, sink, status, stage, error, alert_id.
 *
 * Every line is redacted before it is written (src/redact.ts: built-in secret patterns plus
 * `redact.patterns`), whatever a log call includes. Alert payloads (output, output_fields) are
 * logged at debug at most.
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import { Redactor } from './redact.js';

export type { Logger } from 'pino';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Defaults to stderr, so `--stdout` alert output stays clean JSON lines. */
  readonly destination?: DestinationStream;
  /** Secret redaction of every line (default: the built-in patterns). */
  readonly redactor?: Redactor;
}

export function createLogger(opts: LoggerOptions): Logger {
  const dest = opts.destination ?? pino.destination({ fd: 2, sync: true });
  const redactor = opts.redactor ?? new Redactor();
  return pino(
    {
      level: opts.level,
      base: { app: 'falco-companion' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { error: pino.stdSerializers.err },
      hooks: { streamWrite: (line) => redactor.redactLogLine(line) },
    },
    dest,
  );
}

/** A logger that drops everything (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
