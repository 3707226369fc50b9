/**
 * Chaos: a SIGHUP storm during load. SIGHUP reloads the companion rules file and reopens the
 * output file (logrotate). Hundreds of them while alerts arrive over HTTP, the output file rotated
 * under the companion every second, and the rules file rewritten (valid, then broken, then valid)
 * in between: the companion stays up, keeps the last good rules, every accepted alert reaches
 * Falcosidekick and the output file (across its rotated pieces), and detection still works after.
 */
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isJsonObject, parse, stringify } from '../../src/json/lossless.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { until } from '../support/wait.js';
import { chaosScope, endsHealthyNothingLost, every, load, metricValue, postAlert, STRETCH } from './support.js';

const s = chaosScope('fc-chaos-hup-');

/** seqs found in the output file and its rotated pieces. */
function fileSeqs(dir: string): Set<number> {
  const seqs = new Set<number>();
  for (const f of readdirSync(dir).filter((n) => n.startsWith('out.jsonl'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const v = parse(line);
      const fields = isJsonObject(v) ? v['output_fields'] : undefined;
      if (isJsonObject(fields) && fields['test.seq'] !== undefined) seqs.add(Number(stringify(fields['test.seq'])));
    }
  }
  return seqs;
}

describe('chaos: SIGHUP storm during load', () => {
  it('hundreds of SIGHUPs, the output file rotated and the rules file rewritten under load: nothing lost, last good rules kept', async () => {
    const dir = s.tmp();
    const rules = join(dir, 'rules.yaml');
    copyFileSync('src/detect/defaults/companion-rules.yaml', rules);
    const good = readFileSync(rules, 'utf8');
    const { sidekick: sk, cli, base } = await s.httpCompanion({ FALCO_COMPANION_SINKS_FILE_PATH: join(dir, 'out.jsonl'), FALCO_COMPANION_DETECT_RULES_FILE: rules });
    const pid = cli.child.pid as number;
    const phaseMs = 4000 * STRETCH;
    let hups = 0;
    const storm = every(15, phaseMs, () => {
      process.kill(pid, 'SIGHUP');
      hups++;
    });
    const rotate = every(1000, phaseMs, (i) => {
      if (existsSync(join(dir, 'out.jsonl'))) renameSync(join(dir, 'out.jsonl'), join(dir, `out.jsonl.${i}`));
      // the rules file: broken every other second (a reload must keep the last good rules)
      writeFileSync(rules, i % 2 === 0 ? 'detectors: [this is not: valid' : good);
      process.kill(pid, 'SIGHUP');
    });
    const [l] = await Promise.all([load({ base, perSecond: 50, durationMs: phaseMs }), storm, rotate]);
    writeFileSync(rules, good);
    process.kill(pid, 'SIGHUP');
    expect(hups).toBeGreaterThan(100);
    expect(l.refused).toEqual([]);
    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked: l.acked, probeSeq: 1_000_000 });
    // every accepted alert in the output file too (some pieces rotated away under it)
    await until(() => l.acked.every((n) => fileSeqs(dir).has(n)), 10_000, 'every accepted alert in the output file');
    // the broken rules were refused and counted, never in force
    expect(await metricValue(base, /^falco_companion_rules_reloads_total\{result="invalid"\} (\d+)$/)).toBeGreaterThan(0);
    expect(await metricValue(base, /^falco_companion_rules_reloads_total\{result="ok"\} (\d+)$/)).toBeGreaterThan(0);
    // and detection works on the rules in force: a service-account token read, then the API server
    const pair = readFileSync('examples/detection-tests/k8s-spread/alerts.jsonl', 'utf8').split('\n').filter((x) => x.trim());
    for (const line of pair) expect(await postAlert(base, withOutputFields(line, { 'container.id': 'feedfacecafe' }))).toBe(200);
    await until(() => sk.accepted.some((a) => String(a.parsed['rule']).startsWith('Kubernetes spread') && stringify(a.parsed['output_fields']).includes('feedfacecafe')), 10_000, 'a detection after the storm');
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
