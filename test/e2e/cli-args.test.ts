/**
 * The built CLI's argument parsing, for every command it has (read from its own --help, so a new
 * command is checked too): an option that takes a value takes `-` (stdin, as `--input -` in the
 * README) and a positional takes `-`; a forgotten value is a usage error.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, requireBuilt } from '../support/cli.js';

function cli(args: string[]): { status: number | null; out: string } {
  requireBuilt();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, FALCO_COMPANION_STATE_DIR: '/nonexistent-fc-state' } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

interface CommandHelp {
  readonly name: string;
  /** Positionals, each with its first choice when it has choices. */
  readonly positionals: readonly { name: string; choice: string | null }[];
  /** Options that take a value (string or number). */
  readonly valued: readonly string[];
}

/** Entries of a help section: one per line starting with `  --name` or `  name`, continuation lines joined. */
function entries(help: string, section: string): string[] {
  const at = help.indexOf(`${section}:\n`);
  if (at === -1) return [];
  const out: string[] = [];
  for (const line of help.slice(at + section.length + 2).split('\n')) {
    if (line.trim() === '' || /^\S/.test(line)) break;
    if (/^ {2}\S/.test(line)) out.push(line.trim());
    else if (out.length > 0) out[out.length - 1] += ` ${line.trim()}`;
  }
  return out;
}

function commands(): CommandHelp[] {
  const top = cli(['--help']).out;
  const names = [...new Set([...top.matchAll(/^ {2}falco-companion (\S+)/gm)].map((m) => m[1] as string))];
  return names.map((name) => {
    const help = cli([name, '--help']).out;
    const positionals = entries(help, 'Positionals').map((e) => ({ name: e.split(/\s+/)[0] as string, choice: /\[choices: "([^"]+)"/.exec(e)?.[1] ?? null }));
    const valued = entries(help, 'Options')
      .filter((e) => /\[(string|number)\]/.test(e))
      .map((e) => (/^--([\w-]+)/.exec(e)?.[1] ?? '') as string)
      .filter((n) => n !== '');
    return { name, positionals, valued };
  });
}

describe('e2e: argument parsing of every command', () => {
  const cmds = commands();

  it('finds the commands and their options from --help', () => {
    expect(cmds.map((c) => c.name)).toEqual(expect.arrayContaining(['run', 'replay', 'validate', 'spool']));
    expect(cmds.find((c) => c.name === 'run')?.valued).toEqual(expect.arrayContaining(['input', 'state-dir', 'sidekick-url']));
  });

  for (const c of cmds) {
    it(`${c.name}: every option that takes a value, and every positional, takes "-"`, () => {
      // Followed by an unknown option: strict parsing then names exactly what it did not understand.
      const args = [c.name, ...c.positionals.map((p) => p.choice ?? '-'), ...c.valued.flatMap((o) => [`--${o}`, '-']), '--zzprobe'];
      const r = cli(args);
      expect(r.out, args.join(' ')).toMatch(/Unknown argument: zzprobe\b/);
      expect(r.out).not.toMatch(/Not enough arguments following/);
      expect(r.status).not.toBe(0);
    }, 120_000);
  }

  it('`--input --stdout` (the value forgotten) is a usage error, `--input -weird.json` a file name', () => {
    const forgot = cli(['run', '--input', '--stdout']);
    expect(forgot.status).toBe(1);
    expect(forgot.out).toMatch(/--input needs a value, got the option --stdout/);
    const dashed = cli(['replay', '--input', '-weird.json', 'x', '--zzprobe']);
    expect(dashed.out).toMatch(/Unknown argument: zzprobe\b/);
  }, 120_000);
});
