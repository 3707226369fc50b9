/**
 * The tuning assistant's proposals from real statistics (a SignalStats observer writing a real
 * SQLite file, fed a synthetic day): sound (never hides a Warning+ detection not marked benign),
 * narrowest-first, volume and spread required; the output loads (the allow part with the real
 * rules loader, the Falco part against the rule pack's declared exceptions and libsinsp's
 * field types).
 */
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AjvModule from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { renderTune, yamlScalar, type TuneMeta } from '../../src/commands/tune.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { defaultFalcoRulesPath, falcoValueWritable, loadFalcoExceptions, propose, type TuneInput, type TuneResult } from '../../src/detect/stats-tune.js';
import { SignalStats } from '../../src/detect/stats.js';
import type { Finding, Signal } from '../../src/detect/types.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { readFindingStats, readSignalStats } from '../../src/store/signal-stats.js';
import { sig } from '../support/signals.js';
import { checkExceptions, type Problem } from '../falco-rules/field-types.js';
import { parseCondition } from '../falco-rules/falco-condition.js';
import { HAVE_REF, MAIN_RULES, REF_DIR, loadFieldList, loadYamlItems, type RuleItem } from '../falco-rules/support.js';

const dir = mkdtempSync(join(tmpdir(), 'fc-tune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FALCO = loadFalcoExceptions(MAIN_RULES);
const HOUR = 3600;
const POLLER = { image: 'registry.example.com/acme/billing-sync', exe: '/usr/local/bin/poller', namespace: 'billing', container: 'c-poll' };
const PROM = { image: 'quay.io/prometheus/prometheus', exe: '/bin/prometheus', namespace: 'monitoring', container: 'c-prom' };
const WEB = { image: 'ghcr.io/acme/web', namespace: 'shop', container: 'c-web' };
const NGINX = { image: 'docker.io/library/nginx', exe: '/usr/sbin/nginx', namespace: 'shop', container: 'c-nginx' };
const BATCH = { image: 'registry.example.com/acme/batch', exe: '/usr/bin/python3', namespace: 'jobs', container: 'c-batch' };

/** Any alert: the observer only records whether one was emitted. */
const EMITTED = sig({ kind: 'listen' }).alert;

function finding(detector: string, rule: string, priority: Finding['priority'], key: string, evidence: Signal[]): Finding {
  return { detector, rule, priority, score: 0.5, message: `${rule} (${key})`, mitre: [], key, evidence, fields: {}, timeNs: (evidence[evidence.length - 1] as Signal).timeNs };
}

/** A day: a SaaS poller (beacon Error), a scraper fanning out to 12 targets (first-seen Notice each), nginx pid files, a one-hour batch burst, and an implant beaconing for an hour. */
function noisyDay(stats: SignalStats, opts: { attackExe?: string; attackDest?: string } = {}): void {
  let n = 0;
  const obs = (s: Signal, ...detectors: string[]): void => {
    for (const d of detectors) stats.signal(s, d, 'consumed');
    if (++n % 2000 === 0) stats.drain();
  };
  const pollEv: Signal[] = [];
  for (let t = 0; t < 24 * HOUR; t += 300) {
    const s = sig({ kind: 'connect', t, ...POLLER, dest: '198.51.100.20', port: 443, domain: 'api.vendor.example' });
    obs(s, 'beacon', 'first_seen_egress');
    pollEv.push(s);
    if (t > 0 && t % (6 * HOUR) === 0) stats.finding(finding('beacon', 'C2 beaconing: periodic outbound connections', 'Error', 'beacon|c-poll|api.vendor.example:443', pollEv.slice(-6)), t === 6 * HOUR ? EMITTED : null, 'i-poll');
  }
  for (let i = 0; i < 12; i++) {
    for (let t = 5 * i; t < 24 * HOUR; t += 300) {
      const s = sig({ kind: 'connect', t, ...PROM, dest: `10.244.${i}.5`, port: 9100 });
      obs(s, 'beacon', 'first_seen_egress');
      if (t === 5 * i) stats.finding(finding('first_seen_egress', 'First-seen egress destination', 'Notice', `first_seen_egress|${PROM.image}|10.244.${i}.5:9100`, [s]), EMITTED, `i-prom-${i}`);
    }
  }
  for (let t = 0; t < 24 * HOUR; t += 600) obs(sig({ kind: 'pidfile_create', t, ...NGINX, keys: { file: '/run/nginx.pid' } }), 'socket_filter');
  for (let t = 2 * HOUR; t < 3 * HOUR; t += 30) {
    const s = sig({ kind: 'connect', t, ...BATCH, dest: '203.0.113.10', port: 443 });
    obs(s, 'beacon', 'first_seen_egress');
    if (t === 2 * HOUR) stats.finding(finding('first_seen_egress', 'First-seen egress destination', 'Notice', `first_seen_egress|${BATCH.image}|203.0.113.10:443`, [s]), EMITTED, 'i-batch');
  }
  const attack: Signal[] = [];
  for (let t = 10 * HOUR; t < 11 * HOUR; t += 60) {
    const s = sig({ kind: 'connect', t, ...WEB, exe: opts.attackExe ?? '/tmp/.cache/kworkerd', dest: opts.attackDest ?? '203.0.113.77', port: 8443 });
    obs(s, 'beacon', 'first_seen_egress');
    attack.push(s);
  }
  stats.finding(finding('beacon', 'C2 beaconing: periodic outbound connections', 'Error', 'beacon|c-web|203.0.113.77:8443', attack.slice(-30)), EMITTED, 'i-web');
  // the web app itself: python talking to the same API all day (Notice first-seen once)
  for (let t = 0; t < 24 * HOUR; t += 120) {
    const s = sig({ kind: 'connect', t, ...WEB, exe: '/usr/bin/python3', dest: '203.0.113.77', port: 8443 });
    obs(s, 'beacon', 'first_seen_egress');
    if (t === 0) stats.finding(finding('first_seen_egress', 'First-seen egress destination', 'Notice', `first_seen_egress|${WEB.image}|py|203.0.113.77:8443`, [s]), EMITTED, 'i-webpy');
  }
}

let n = 0;
async function day(opts: Parameters<typeof noisyDay>[1] = {}, statsOpts: { maxTuples?: number } = {}): Promise<Db> {
  const db = openStateDb(join(dir, `d${++n}`));
  const stats = new SignalStats({ db: () => db, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), retentionMs: 8 * 24 * HOUR * 1000, maxRows: 500_000, ...statsOpts });
  noisyDay(stats, opts);
  await stats.stop(Date.now() + 5000);
  return db;
}

function tune(db: Db, over: Partial<TuneInput> = {}): TuneResult {
  return propose({ signals: readSignalStats(db, 0), findings: readFindingStats(db, 0), dropped: 0, falcoRules: FALCO, minSignals: 50, minHours: 3, benign: [], ...over });
}

const META: TuneMeta = { database: 'test.db', rulesFile: 'rules.yaml', falcoRules: MAIN_RULES, fromMs: 0, toMs: 3_600_000, minSignals: 50, minHours: 3, benign: [] };

let db: Db;
beforeAll(async () => {
  db = await day();
});

describe('tune: allow entries', () => {
  it('proposes one image+exe entry for a scraper fanning out to 12 targets (not 12 entries), never for a Warning+ detection not marked benign', () => {
    const r = tune(db);
    expect(r.allow.map((a) => [a.level, a.entry.detectors, a.entry.kinds, a.entry.image, a.entry.exe, a.entry.dest_cidr])).toEqual([
      ['image+exe+dest', ['first_seen_egress'], ['connect'], [WEB.image], ['/usr/bin/python3'], ['203.0.113.0/24']],
      ['image+exe', ['first_seen_egress'], ['connect'], [PROM.image], [PROM.exe], undefined],
    ]);
    const prom = r.allow[1];
    expect(prom?.detections).toHaveLength(12);
    expect(prom?.signals).toBe(12 * 288);
    expect(prom?.hours).toBe(24);
    expect(prom?.example).toMatch(/Companion signal: outbound connection from container/);
    // the poller's and the implant's beacon detections are Error: listed, protected
    expect(r.protectedDetections.map((d) => d.key).sort()).toEqual(['beacon|c-poll|api.vendor.example:443', 'beacon|c-web|203.0.113.77:8443']);
  });

  it('a one-hour burst is not a baseline: not proposed, and it says why', () => {
    const r = tune(db);
    const batch = r.notProposed.find((x) => x.what.includes(BATCH.image));
    expect(batch?.reason).toMatch(/over 1 hour\(s\).*a burst is not a baseline/);
    expect(r.allow.some((a) => a.entry.image?.includes(BATCH.image))).toBe(false);
  });

  it('the narrowest level keeps an entry for the web app’s own program away from the implant in the same image', () => {
    const py = tune(db).allow.find((a) => a.entry.image?.[0] === WEB.image);
    expect(py?.entry).toMatchObject({ exe: ['/usr/bin/python3'], dest_cidr: ['203.0.113.0/24'] });
    expect(py?.signals).toBe(720);
  });

  it('marking the poller benign gives the narrowest entry for it: image + exe + destination domain', () => {
    const r = tune(db, { benign: ['beacon|c-poll|*'] });
    const poll = r.allow.find((a) => a.entry.detectors.includes('beacon'));
    expect(poll?.level).toBe('image+exe+dest');
    expect(poll?.entry).toMatchObject({ detectors: ['beacon'], kinds: ['connect'], image: [POLLER.image], exe: [POLLER.exe], dest_domain: ['api.vendor.example'] });
    expect(poll?.detections.map((d) => [d.key, d.count])).toEqual([['beacon|c-poll|api.vendor.example:443', 3]]);
    expect(r.protectedDetections.map((d) => d.key)).toEqual(['beacon|c-web|203.0.113.77:8443']);
  });

  it('says "not proposed: would hide detection X" when every entry that covers benign noise also matches an attack', async () => {
    // a benign job and an exfiltration run the same program in the same image to the same SaaS
    const mini = openStateDb(join(dir, 'hide'));
    const stats = new SignalStats({ db: () => mini, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), retentionMs: 8 * 24 * HOUR * 1000, maxRows: 100_000 });
    const job = { image: 'registry.example.com/acme/sync', exe: '/usr/bin/curl', namespace: 'ops', dest: '198.51.100.20', port: 443, domain: 'files.saas.example' };
    const benign: Signal[] = [];
    for (let t = 0; t < 24 * HOUR; t += 300) {
      const s = sig({ kind: 'connect', t, ...job, container: 'c-job' });
      stats.signal(s, 'beacon', 'consumed');
      benign.push(s);
    }
    stats.finding(finding('beacon', 'C2 beaconing: periodic outbound connections', 'Error', 'beacon|c-job', benign.slice(-6)), EMITTED, 'i1');
    const exfil: Signal[] = [];
    for (let t = 5 * HOUR; t < 6 * HOUR; t += 60) {
      const s = sig({ kind: 'connect', t, ...job, container: 'c-job-2' });
      stats.signal(s, 'beacon', 'consumed');
      exfil.push(s);
    }
    stats.finding(finding('beacon', 'C2 beaconing: periodic outbound connections', 'Critical', 'beacon|c-job-2', exfil.slice(-6)), EMITTED, 'i2');
    await stats.stop(Date.now() + 1000);
    const r = tune(mini, { benign: ['beacon|c-job'] });
    expect(r.allow).toEqual([]);
    const why = r.notProposed.find((x) => x.what.includes('key beacon|c-job,'));
    expect(why?.reason).toMatch(/^image\+exe\+dest entry .*would hide detection "C2 beaconing: periodic outbound connections" \(Critical, key beacon\|c-job-2/);
    expect(why?.hint).toBe("if it is benign, re-run with --benign 'beacon|c-job-2'");
    // the same on the Falco side: the job's connects are the exfiltration's
    expect(r.falco).toEqual([]);
    expect(r.notProposed.some((x) => x.what.startsWith('Falco exception image_destination') && x.reason.includes('beacon|c-job-2'))).toBe(true);
  });

  it('detectors whose Warning+ detections overflowed the statistics get no proposal (they cannot be checked)', async () => {
    const small = openStateDb(join(dir, 'overflow'));
    const stats = new SignalStats({ db: () => small, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), retentionMs: 8 * 24 * HOUR * 1000, maxRows: 100_000, maxTuples: 1 });
    noisyDay(stats);
    // a second Error beacon in the implant's hour and group: the group keeps one key, the other overflows
    stats.finding(finding('beacon', 'C2 beaconing: periodic outbound connections', 'Error', 'beacon|c-other', [sig({ kind: 'connect', t: 10 * HOUR + 5, dest: '203.0.113.99', port: 443 })]), EMITTED, 'i-x');
    await stats.stop(Date.now() + 1000);
    const r = tune(small, { benign: ['beacon|c-poll|*'] });
    expect(r.unchecked).toEqual(['beacon']);
    expect(r.allow.some((a) => a.entry.detectors.includes('beacon'))).toBe(false);
    expect(r.notProposed.some((x) => x.reason.includes('overflowed the statistics'))).toBe(true);
  });
});

describe('tune: Falco exceptions', () => {
  it('fills the declared exceptions of our rules: proc_file for pid files, image_port for the scraper (12 addresses would be too many rows), never for the implant or a protected detection', () => {
    const r = tune(db);
    const got = r.falco.map((f) => [f.rule, f.exception, f.rows.map((x) => x.values)]);
    expect(got).toContainEqual(['Companion signal: pid or lock file under /var/run', 'proc_file', [[NGINX.exe, '/run/nginx.pid']]]);
    expect(got).toContainEqual(['Companion signal: outbound connection from container', 'image_port', [[PROM.image, 9100]]]);
    const flat = JSON.stringify(got);
    expect(flat).not.toContain(WEB.image); // the implant's and python's connects share 203.0.113.77:8443 with the protected beacon
    expect(flat).not.toContain(POLLER.image); // the poller's Error detection is not marked benign
    expect(r.notProposed.some((x) => x.what.includes(POLLER.image) && /would hide detection "C2 beaconing/.test(x.reason))).toBe(true);
    const port = r.falco.find((f) => f.exception === 'image_port')?.rows[0];
    expect(port?.signals).toBe(12 * 288);
    expect(port?.detections).toBe(12);
  });

  it('with the poller marked benign its destination gets the most specific exception (image_destination)', () => {
    const r = tune(db, { benign: ['beacon|c-poll|*'] });
    const dest = r.falco.find((f) => f.exception === 'image_destination');
    expect(dest?.rows.map((x) => x.values)).toEqual([[POLLER.image, '198.51.100.20']]);
  });

  it('values Falco cannot take as they are are never written', () => {
    expect(['/usr/bin/app', 'registry:5000/a/b', 9100].every(falcoValueWritable)).toBe(true);
    expect(['/opt/my app', 'a(b)', 'x,y', 'a=b', "o'k", 'q"'].some(falcoValueWritable)).toBe(false);
  });
});

describe('tune: the output loads', () => {
  function render(r: TuneResult): { text: string; companion: unknown; falco: unknown } {
    const text = renderTune(r, META, FALCO);
    const docs = parseAllDocuments(text);
    expect(docs.every((d) => d.errors.length === 0)).toBe(true);
    expect(docs).toHaveLength(2);
    return { text, companion: (docs as { toJS(): unknown }[])[0]?.toJS(), falco: (docs as { toJS(): unknown }[])[1]?.toJS() };
  }

  it('part 1 is a companion rules file the real loader accepts; its entries merge into an existing rules file', () => {
    const r = tune(db, { benign: ['beacon|c-poll|*'] });
    const { text } = render(r);
    const part1 = text.slice(0, text.indexOf('\n---\n') + 1);
    const file = join(dir, 'proposal.yaml');
    writeFileSync(file, part1);
    const loaded = loadRulesFile(file);
    const names = loaded.suppress.allow.map((a) => a.name);
    for (const a of r.allow) expect(names).toContain(a.entry.name);
    expect(names).toContain('dhcp-clients'); // extends: builtin
    // merged into a user's own rules file
    const mine = join(dir, 'mine.yaml');
    writeFileSync(mine, `version: 1\nextends: builtin\nsuppress:\n  allow:\n    - name: mine\n      exe: ["/opt/x"]\n${part1.split('\n  allow:\n')[1] ?? ''}`);
    expect(loadRulesFile(mine).suppress.allow.map((a) => a.name)).toEqual(expect.arrayContaining(['mine', ...r.allow.map((a) => a.entry.name)]));
  });

  it.skipIf(!HAVE_REF)('part 2 appends only values to exceptions our rules declare, valid for the Falco schema and the field types of 0.40 and 0.44', () => {
    const r = tune(db, { benign: ['beacon|c-poll|*'] });
    const { falco } = render(r);
    expect(Array.isArray(falco)).toBe(true);
    const items = falco as RuleItem[];
    expect(items.length).toBeGreaterThan(0);
    // Falco's rules JSON schema
    const require = createRequire(import.meta.url);
    const Ajv = ((AjvModule as unknown as { default?: unknown }).default ?? AjvModule) as unknown as typeof AjvModule.default;
    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json') as object);
    const validate = ajv.compile(JSON.parse(readFileSync(join(REF_DIR, 'falco-rules.schema.json'), 'utf8')) as object);
    expect(validate(items), ajv.errorsText(validate.errors)).toBe(true);
    const pack = new Map(loadYamlItems(MAIN_RULES).filter((i) => typeof i.rule === 'string').map((i) => [String(i.rule), i]));
    const problems: Problem[] = [];
    for (const it of items) {
      const declared = pack.get(String(it.rule));
      expect(declared, String(it.rule)).toBeDefined();
      expect(it.override).toEqual({ exceptions: 'append' });
      for (const e of it.exceptions as Record<string, unknown>[]) {
        // appending to an existing exception: values only (Falco refuses fields/comps there)
        expect(Object.keys(e).sort()).toEqual(['name', 'values']);
        const d = (declared?.exceptions as Record<string, unknown>[]).find((x) => x.name === e.name);
        expect(d, `${String(it.rule)} / ${String(e.name)}`).toBeDefined();
        const fields = d?.fields as string[];
        for (const row of e.values as unknown[][]) expect(row).toHaveLength(fields.length);
        // the declared fields and comps with the new values pass the operator/type check of the rules pack, on both field lists
        for (const v of ['0.40.0', '0.44.0'] as const) checkExceptions({ rule: it.rule, exceptions: [{ ...d, values: e.values }] }, loadFieldList(v), problems);
        // and the condition Falco builds from them parses
        const comps = (d?.comps as string[] | undefined) ?? fields.map(() => '=');
        const cond = (e.values as unknown[][]).map((row) => `(${fields.map((f, i) => `${f} ${comps[i]} ${String(row[i]).includes(' ') ? `"${String(row[i])}"` : String(row[i])}`).join(' and ')})`).join(' or ');
        expect(() => parseCondition(`evt.type=open and not (${cond})`)).not.toThrow();
      }
    }
    expect(problems).toEqual([]);
  });

  it('an empty proposal is still two loadable documents', () => {
    const empty = propose({ signals: [], findings: [], dropped: 0, falcoRules: FALCO, minSignals: 50, minHours: 3, benign: [] });
    const { companion, falco } = render(empty);
    expect(companion).toEqual({ version: 1, extends: 'builtin', suppress: { allow: [] } });
    expect(falco).toEqual([]);
  });

  it('scalars are plain only when YAML reads them back as the same string', () => {
    for (const v of ['/usr/bin/x', 'registry:5000/a', '9100', 'true', 'null', '-x', '#x', 'a: b', '', '1e3', 'yes', 'docker.io/library/nginx']) {
      const back = parseAllDocuments(`v: ${yamlScalar(v)}`)[0] as unknown as { toJS(): { v: unknown } };
      expect(back.toJS().v, v).toBe(v);
    }
  });

  it('finds the installed rules pack', () => {
    expect(defaultFalcoRulesPath()).toBe(MAIN_RULES);
  });
});
