/**
 * End to end, with the built CLI as a child process: a noisy day (everyday workloads making
 * Warning+ detections and many signals, two attack chains) is replayed with a state directory;
 * `tune` proposes entries; the user marks the benign detections; the proposal is applied (the
 * allow entries as the companion's rules file, the Falco exceptions by dropping what they would
 * have kept Falco from emitting); the next day is replayed twice from day 1's state, as it is and
 * tuned: the tuned run has no noise left and every attack detection of the untuned run.
 *
 * Falco itself cannot run here: its exceptions are applied with Falco's semantics for appended
 * exception values (every field of a row equal, or `startswith` where the rule declares it).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadFalcoExceptions } from '../../src/detect/stats-tune.js';
import { CLI, requireBuilt } from '../support/cli.js';
import { ATTACK, noisyDayLines } from '../support/noisy-day.js';
import { MAIN_RULES } from '../falco-rules/support.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-e2e-tune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ENV = { ...process.env, FALCO_COMPANION_ENRICH_CONTAINER_ENABLED: 'false', FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false', FALCO_COMPANION_LOG_LEVEL: 'warn' };

function cli(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 180_000, maxBuffer: 512 * 1024 * 1024, env: { ...ENV, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Detection {
  readonly rule: string;
  readonly priority: string;
  readonly container: string;
  readonly exe: string;
  readonly sip: string;
}

/** Replay a file, return the detections printed on stdout. */
function replay(file: string, stateDir: string, env: Record<string, string> = {}): Detection[] {
  const r = cli(['replay', file, '--stdout', '--state-dir', stateDir], env);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .split('\n')
    .filter((l) => l.includes('"source":"falco-companion"'))
    .map((l) => {
      const o = JSON.parse(l) as { rule: string; priority: string; output_fields: Record<string, unknown> };
      const f = o.output_fields;
      return { rule: o.rule, priority: o.priority, container: String(f['container.id']), exe: String(f['proc.exepath']), sip: String(f['fd.sip']) };
    });
}

const WARNING_OR_ABOVE = ['Emergency', 'Alert', 'Critical', 'Error', 'Warning'];
const isAttack = (d: Detection): boolean => d.container === ATTACK.shellContainer || (d.container === ATTACK.beaconContainer && d.sip === ATTACK.beaconDest);
const label = (d: Detection): string => `${d.priority} ${d.rule} ${d.container} ${d.exe} ${d.sip}`;

/** Drop the alerts Falco would not emit with the proposed exception values appended to our rules. */
function applyFalcoExceptions(lines: readonly string[], items: readonly { rule: string; exceptions: { name: string; values: unknown[][] }[] }[]): string[] {
  const declared = loadFalcoExceptions(MAIN_RULES);
  const checks: { rule: string; fields: readonly string[]; comps: readonly string[]; rows: string[][] }[] = [];
  for (const it of items) {
    for (const e of it.exceptions) {
      const d = declared.get(it.rule)?.find((x) => x.name === e.name);
      expect(d, `${it.rule} / ${e.name} is declared by our rules`).toBeDefined();
      checks.push({ rule: it.rule, fields: d?.fields ?? [], comps: d?.comps ?? [], rows: e.values.map((r) => r.map(String)) });
    }
  }
  return lines.filter((l) => {
    const o = JSON.parse(l) as { rule: string; output_fields: Record<string, unknown> };
    for (const c of checks) {
      if (c.rule !== o.rule) continue;
      const hit = c.rows.some((row) =>
        c.fields.every((f, i) => {
          const v = o.output_fields[f];
          if (v === undefined || v === null || v === '<NA>') return false;
          return c.comps[i] === 'startswith' ? String(v).startsWith(row[i] as string) : String(v) === row[i];
        }),
      );
      if (hit) return false;
    }
    return true;
  });
}

describe('e2e: tune on a noisy day', () => {
  const day1 = join(dir, 'day1.jsonl');
  const day2 = join(dir, 'day2.jsonl');
  const s1 = join(dir, 's1');
  let first: Detection[] = [];
  beforeAll(() => {
    requireBuilt();
    writeFileSync(day1, noisyDayLines(0).join('\n') + '\n');
    writeFileSync(day2, noisyDayLines(1).join('\n') + '\n');
    first = replay(day1, s1);
  }, 180_000);

  it('proposes entries that, applied, remove the noise of the next day and keep every attack detection', () => {
    const noise1 = first.filter((d) => !isAttack(d));
    expect(noise1.some((d) => WARNING_OR_ABOVE.includes(d.priority)), 'benign workloads made Warning+ detections').toBe(true);
    expect(first.filter(isAttack).map((d) => d.rule)).toEqual(
      expect.arrayContaining(['C2 beaconing: periodic outbound connections', 'Traffic signaling: socket filter armed, then outbound connection to a new destination']),
    );

    // 1. What tune sees: the Warning+ detections nobody has called benign, the attacks among them.
    const j = cli(['tune', '--state-dir', s1, '--json']);
    expect(j.status, j.stderr).toBe(0);
    const asJson = JSON.parse(j.stdout) as { protectedDetections: { key: string; rule: string }[]; allow: unknown[] };
    const keys = asJson.protectedDetections.map((d) => d.key);
    expect(keys.some((k) => k.includes(ATTACK.shellContainer))).toBe(true);
    expect(keys.some((k) => k.includes(ATTACK.beaconDest))).toBe(true);
    // 2. The user reviews them: everything but the two attacks is benign.
    const benign = keys.filter((k) => !k.includes(ATTACK.shellContainer) && !k.includes(ATTACK.beaconDest));
    expect(benign.length).toBeGreaterThan(0);
    const proposal = join(dir, 'proposal.yaml');
    const t = cli(['tune', '--state-dir', s1, '--out', proposal, ...benign.flatMap((k) => ['--benign', k])]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/allow entr(y|ies), \d+ Falco exception value\(s\) proposed; written to/);

    // 3. Apply: part 1 is the rules file (validated by the CLI's real loader), part 2 the Falco exceptions.
    const text = readFileSync(proposal, 'utf8');
    const docs = parseAllDocuments(text) as unknown as { errors: unknown[]; toJS(): unknown }[];
    expect(docs).toHaveLength(2);
    const rulesFile = join(dir, 'tuned-rules.yaml');
    writeFileSync(rulesFile, text.slice(0, text.indexOf('\n---\n') + 1));
    const v = cli(['validate', '--rules', rulesFile]);
    expect(v.status, v.stderr).toBe(0);
    const falco = docs[1]?.toJS() as { rule: string; exceptions: { name: string; values: unknown[][] }[] }[];
    expect(falco.length).toBeGreaterThan(0);
    const lines2 = readFileSync(day2, 'utf8').split('\n').filter((l) => l.startsWith('{'));
    const kept = applyFalcoExceptions(lines2, falco);
    expect(lines2.length - kept.length, 'the Falco exceptions cut most of the volume').toBeGreaterThan(lines2.length / 2);
    const tunedDay2 = join(dir, 'day2-tuned.jsonl');
    writeFileSync(tunedDay2, kept.join('\n') + '\n');

    // 4. The next day from day 1's state: as it is; with the allow entries only; with the Falco
    //    exceptions only; with both. Each part alone removes the noise it targets, together all of it.
    const from1 = (name: string): string => {
      const d = join(dir, name);
      cpSync(s1, d, { recursive: true });
      return d;
    };
    const untuned = replay(day2, from1('s2-untuned'));
    const allowOnly = replay(day2, from1('s2-allow'), { FALCO_COMPANION_DETECT_RULES_FILE: rulesFile });
    const falcoOnly = replay(tunedDay2, from1('s2-falco'));
    const tuned = replay(tunedDay2, from1('s2-tuned'), { FALCO_COMPANION_DETECT_RULES_FILE: rulesFile });
    const attacks = untuned.filter(isAttack).map(label).sort();
    expect(attacks.length).toBeGreaterThanOrEqual(2);
    expect(untuned.filter((d) => !isAttack(d)).length, 'day 2 is noisy untuned').toBeGreaterThan(0);
    for (const [name, run] of [['allow entries', allowOnly], ['Falco exceptions', falcoOnly], ['both', tuned]] as const) {
      expect(run.filter((d) => !isAttack(d)).map(label), `${name}: noise left`).toEqual([]);
      expect(run.filter(isAttack).map(label).sort(), `${name}: attack detections`).toEqual(attacks);
    }
  }, 300_000);

  it('without --benign nothing hides a Warning+ detection: every entry covers detections below Warning only, and it says why', () => {
    const t = cli(['tune', '--state-dir', s1]);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/Detections at Warning or above you have not marked benign/);
    const j = cli(['tune', '--state-dir', s1, '--json']);
    const r = JSON.parse(j.stdout) as { allow: { detections: { priority: string }[] }[]; protectedDetections: unknown[] };
    expect(r.protectedDetections.length).toBeGreaterThan(0);
    for (const a of r.allow) for (const d of a.detections) expect(WARNING_OR_ABOVE).not.toContain(d.priority);
  });

  it('fails clearly without statistics or with a bad --since', () => {
    const none = cli(['tune', '--state-dir', join(dir, 'nowhere')]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/falco-companion tune: no state database at .*nowhere/);
    const bad = cli(['tune', '--state-dir', s1, '--since', '10m']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--since "10m": give a duration of at least 1h/);
  });
});
