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

/**
 * A queue or buffer cannot take the alert now: the caller should push back (the HTTP edge answers
 * 503 with its configured Retry-After; polling sources wait for `whenNotFull`).
 */
export class QueueFullError extends CompanionError {
  constructor(what: string) {
    super('E_QUEUE_FULL', `${what} is full`);
    this.name = 'QueueFullError';
  }
}

/** The component is stopping or stopped and takes no more input. */
export class StoppedError extends CompanionError {
  constructor(what: string) {
    super('E_STOPPED', `${what} is stopped`);
    this.name = 'StoppedError';
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
