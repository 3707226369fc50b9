/**
 * Argument parsing rules shared by every command: an option that takes a value takes the next
 * argument whatever it looks like, as getopt does (`--input -` is stdin, `--input -odd.json` a
 * file name, `--timeout -1` a number). yargs' default takes `-` (and anything starting with `-`)
 * for a positional or an option instead, which broke the README's `falco ... | falco-companion run
 * --input -`. A value that is one of the command's own long options (`--input --stdout`: the
 * value was forgotten) is a usage error rather than a file named `--stdout` (write `./--stdout`).
 */
import type { Argv, CommandModule } from 'yargs';

/** yargs parser configuration for the whole command line (options with `nargs` eat their value). */
export const PARSER_CONFIGURATION = { 'nargs-eats-options': true } as const;

interface ParsedOptions {
  readonly boolean: readonly string[];
  readonly array: readonly string[];
  readonly string: readonly string[];
  readonly number: readonly string[];
  readonly key: Readonly<Record<string, unknown>>;
}

/** Every string or number option and positional of a built command takes exactly one value. */
export function valuesTakeNextArgument<T>(y: Argv<T>): Argv<T> {
  // getOptions() is public in yargs 18 but missing from @types/yargs.
  const o = (y as unknown as { getOptions(): ParsedOptions }).getOptions();
  // Array options (repeatable, `--benign a b`) keep yargs' own rule: they stop at an argument starting with `-`.
  const skip = new Set([...o.boolean, ...o.array]);
  const valued = [...new Set([...o.string, ...o.number])].filter((k) => !skip.has(k));
  for (const k of valued) y.nargs(k, 1);
  const longOptions = new Set(Object.keys(o.key).map((k) => `--${k}`));
  return y.check((argv) => {
    for (const k of valued) {
      const v: unknown = argv[k];
      if (typeof v !== 'string' || !v.startsWith('--')) continue;
      const name = v.split('=', 1)[0] as string;
      if (longOptions.has(name)) return `--${k} needs a value, got the option ${name}`;
    }
    return true;
  });
}

/** A command module whose builder applies {@link valuesTakeNextArgument} after its own options. */
export function withValueArguments<T, U>(cmd: CommandModule<T, U>): CommandModule<T, U> {
  const builder = cmd.builder;
  return {
    ...cmd,
    builder: (y: Argv<T>): Argv<U> => {
      let built: Argv<U>;
      if (typeof builder === 'function') built = (builder(y) ?? y) as Argv<U>;
      else if (builder) built = y.options(builder) as unknown as Argv<U>;
      else built = y as unknown as Argv<U>;
      return valuesTakeNextArgument(built);
    },
  };
}
