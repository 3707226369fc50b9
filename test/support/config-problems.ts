/** The problems of a ConfigError the call must throw (config file, rules file): fails the test otherwise. */
import { expect } from 'vitest';
import { ConfigError } from '../../src/errors.js';

export function configProblems(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}
