/**
 * Coded errors. `code` is stable (logs, metrics, docs refer to it); `message` is for humans.
 */
export class CompanionError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'CompanionError';
  }
}

/** Configuration problems, each with file:line:col when known. */
export class ConfigError extends CompanionError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('E_CONFIG', problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** A queue or buffer is full: the caller should push back (HTTP 503 + Retry-After). */
export class QueueFullError extends CompanionError {
  readonly retryAfterSeconds: number;
  constructor(what: string, retryAfterSeconds = 1) {
    super('E_QUEUE_FULL', `${what} is full`);
    this.name = 'QueueFullError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The component is stopping or stopped and takes no more input. */
export class StoppedError extends CompanionError {
  constructor(what: string) {
    super('E_STOPPED', `${what} is stopped`);
    this.name = 'StoppedError';
  }
}

/** Delivery failure sorted into permanent (never retried) or retryable. */
export class DeliveryError extends CompanionError {
  readonly retryable: boolean;
  readonly status: number | null;
  readonly retryAfterMs: number | null;
  constructor(message: string, opts: { retryable: boolean; status?: number | null; retryAfterMs?: number | null; cause?: unknown }) {
    super(opts.retryable ? 'E_DELIVERY_RETRYABLE' : 'E_DELIVERY_PERMANENT', message, { cause: opts.cause });
    this.name = 'DeliveryError';
    this.retryable = opts.retryable;
    this.status = opts.status ?? null;
    this.retryAfterMs = opts.retryAfterMs ?? null;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function errorCode(err: unknown): string {
  if (err instanceof CompanionError) return err.code;
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return 'E_UNKNOWN';
}
