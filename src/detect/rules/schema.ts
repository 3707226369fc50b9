/**
 * The companion rules file's format, in the config DSL (src/config/dsl.ts): checked by the same
 * validator as the config file, every problem at once as `file:line:col: path: message`.
 *
 * - `signals:`   map Falco alerts to typed signals (rule name / prefix / tags / field predicates)
 * - `detectors:` per-detector settings, each detector declaring its own schema
 * - `suppress:`  allowlists, CI/CD windows and workloads, learning periods
 * - `output:`    forwarding of signal-only alerts, the notify policy (renotify, incidents)
 *
 * Rules between fields (one predicate operator, escape subtypes, entries that match or allow
 * everything) are the objects' `check`s.
 */
import {
  bool,
  checked,
  cidrs,
  days,
  duration,
  int,
  list,
  map,
  num,
  obj,
  oneOf,
  opt,
  req,
  scalar,
  str,
  strings,
  text,
  utcTime,
  type Infer,
  type ListSpec,
  type ObjectSpec,
  type Report,
  type Spec,
} from '../../config/dsl.js';
import { ESCAPE_SUBTYPES, SIGNAL_KINDS } from '../types.js';
import { PREDICATE_OPS, type DetectorSettingsSpec } from './types.js';

const predicateOps = {
  equals: opt(scalar('The field equals this string, number or boolean (numbers compare as numbers).')),
  in: opt(strings('The field is one of these.')),
  startswith: opt(strings('The field starts with this or one of these.')),
  contains: opt(strings('The field contains this or one of these.')),
  cidr: opt(cidrs('The field is an address in this CIDR or one of these.')),
  gt: opt(num('The field is a number greater than this.', 0)),
  gte: opt(num('The field is a number at least this.', 0)),
  lt: opt(num('The field is a number less than this.', 0)),
  lte: opt(num('The field is a number at most this.', 0)),
  exists: opt(bool('The field is present (null and `<NA>` count as absent), or absent with false.', true)),
};

type PredicateValue = { readonly field: string | null } & { readonly [K in keyof typeof predicateOps]: Infer<(typeof predicateOps)[K]> };

/** One operator with a field; list operators not empty. `inline`: the entry's own `field` + operator (both optional there). */
function checkPredicate(p: PredicateValue, report: Report, inline: boolean): void {
  const ops = PREDICATE_OPS.filter((k) => p[k] !== null);
  if (p.field === null) {
    if (inline && ops.length > 0) report('a predicate operator needs a `field`');
    return;
  }
  if (ops.length !== 1) {
    report(`give exactly one of ${PREDICATE_OPS.join(', ')} with \`field\`${ops.length > 1 ? ` (got ${ops.join(', ')})` : ''}`);
    return;
  }
  for (const k of ['in', 'startswith', 'contains'] as const) if (p[k]?.length === 0) report('must be a non-empty string or list of strings', [k]);
  if (p.cidr?.length === 0) report('must list at least one CIDR', ['cidr']);
}

const predicateFields = obj('A field predicate: `field` and exactly one operator.', { field: req(text('An output field, `companion.<key>`, or rule / priority / source / hostname.')), ...predicateOps });
export const predicateSpec = checked(predicateFields, (v, report) => checkPredicate(v as Infer<typeof predicateFields>, report, false));

const subtypeFromSpec = obj('Subtype taken from a field.', {
  field: req(text('The field whose value names the subtype.')),
  map: map('Field value → subtype.'),
  default: opt(text('Subtype of values not in `map` (absent: the raw value).')),
});

const emitFields = obj('The signal an entry emits.', {
  kind: req(oneOf('Signal kind.', SIGNAL_KINDS, 'listen')),
  subtype: opt(text('Subtype (for `escape`: one of the escape subtypes).')),
  subtype_from: opt(subtypeFromSpec),
});

const emitSpec = checked(emitFields, (v, report) => {
  const e = v as Infer<typeof emitFields>;
  if (e.kind !== 'escape') return;
  const ok = (s: string | null): boolean => s === null || (ESCAPE_SUBTYPES as readonly string[]).includes(s);
  const bad = (s: string | null): string => `escape subtype must be one of ${ESCAPE_SUBTYPES.join(', ')}; got ${JSON.stringify(s)}`;
  if (!ok(e.subtype)) report(bad(e.subtype), ['subtype']);
  if (e.subtype_from) {
    for (const [k, s] of Object.entries(e.subtype_from.map)) if (!ok(s)) report(bad(s), ['subtype_from', 'map', k]);
    if (!ok(e.subtype_from.default)) report(bad(e.subtype_from.default), ['subtype_from', 'default']);
  }
  if (e.subtype === null && e.subtype_from === null) report('an escape signal needs `subtype` or `subtype_from`');
});

const signalFields = obj('One alert → signal mapping entry.', {
  name: opt(str('Label for logs (default: the first rule name).', null)),
  rule: opt(strings('Exact Falco rule name(s).')),
  rule_prefix: opt(text('The rule name starts with this.')),
  tags: opt(strings('The alert carries at least one of these tags.')),
  where: list('Predicates; all must hold.', predicateSpec),
  field: opt(text('The field of a single inline predicate.')),
  ...predicateOps,
  emit: req(emitSpec),
  extract: map('Extra signal keys: key → output field (`companion.<key>` reads enrichment).'),
});

export const signalSpec = checked(signalFields, (v, report) => {
  const s = v as Infer<typeof signalFields>;
  checkPredicate(s, report, true);
  if (s.rule === null && s.rule_prefix === null && s.tags === null && s.where.length === 0 && s.field === null) {
    report('matches every alert: give `rule`, `rule_prefix`, `tags` or a field predicate');
  }
});

/** A list whose lone scalar is one item. */
function itemList<I extends ListSpec['items']>(doc: string, items: I, def: readonly unknown[] = []): ListSpec & { items: I } {
  return { ...list(doc, items, def), scalar: 'item' };
}

/** An allow entry for these detector ids. */
export function allowSpec(detectorIds: readonly string[]) {
  return checked(
    obj('An allow entry: suppresses a signal for a detector when all its given conditions hold.', {
      name: opt(str('Label for logs.', null)),
      detectors: opt(itemList('Only for these detectors (absent: all).', oneOf('Detector id.', detectorIds, detectorIds[0] ?? ''))),
      kinds: opt(itemList('Only for these signal kinds (absent: all).', oneOf('Signal kind.', SIGNAL_KINDS, 'listen'))),
      image: strings('Image globs (`repo` or `repo:tag`).'),
      namespace: strings('Namespace globs.'),
      pod_labels: map('Pod label → glob.'),
      exe: strings('Executable path or process name globs.'),
      ancestor: strings('Ancestor name or executable globs.'),
      dest_cidr: cidrs('Remote address in one of these CIDRs.'),
      dest_domain: strings('Remote domain suffixes (`example.com`: itself and below; `.example.com`: below only).'),
    }),
    (v, report) => {
      const e = v as { image: string[]; namespace: string[]; pod_labels: object; exe: string[]; ancestor: string[]; dest_cidr: unknown[]; dest_domain: string[] };
      if (e.image.length + e.namespace.length + Object.keys(e.pod_labels).length + e.exe.length + e.ancestor.length + e.dest_cidr.length + e.dest_domain.length === 0) {
        report('allows everything: give at least one of image, namespace, pod_labels, exe, ancestor, dest_cidr, dest_domain');
      }
    },
  );
}

export const ciWindowSpec = checked(
  obj('A UTC time window on some days.', {
    days: days('Days the window starts on: `mon-fri`, `sat,sun` or a list.'),
    from: req(utcTime('Start, UTC `HH:MM`.')),
    to: req(utcTime('End, UTC `HH:MM` (before `from`: past midnight).')),
  }),
  (v, report) => {
    if (v['from'] === v['to']) report('`from` and `to` are equal: the window is empty');
  },
);

export const ciWorkloadSpec = checked(
  obj('A CI/CD workload: all given selectors must hold.', {
    namespace: strings('Namespace globs.'),
    pod_labels: map('Pod label → glob.'),
    image: strings('Image globs.'),
  }),
  (v, report) => {
    const w = v as { namespace: string[]; pod_labels: object; image: string[] };
    if (w.namespace.length + w.image.length + Object.keys(w.pod_labels).length === 0) report('selects every workload: give namespace, pod_labels or image');
  },
);

export const outputSpec = obj('Output of the detection engine: forwarding of signal alerts, and the notify policy (which findings become detections; see docs/detections.md).', {
  forward_signal_alerts: bool('Forward alerts of the companion signal rules (rule names starting with "Companion signal:") to the sinks. Detections and all other alerts are always forwarded.', true),
  renotify: opt(duration('An open incident is sent again at most once per this period, with the number of findings folded since ("repeated N times since …"); sooner only when its priority rises or a new MITRE technique appears. Default 24h.', 86_400_000, { min: 60_000 })),
  incident_idle: duration('An incident without a finding for this long (event time) is closed: the next finding on that workload opens a new incident and is sent.', 86_400_000, { min: 60_000 }),
  max_incidents: opt(int('Incidents remembered (least recently active evicted first, counted). Default 10000.', 10_000, { min: 10 })),
  dedup_window: opt(duration('Deprecated (accepted with a warning): use `renotify`. Taken as `renotify` when that is not set.', 600_000, { min: 1000 })),
  max_dedup_keys: opt(int('Deprecated (accepted with a warning): use `max_incidents`. Taken as `max_incidents` when that is not set.', 10_000, { min: 10 })),
});

/** Defaults of the optional `output:` keys (optional so a deprecated key can stand in for them). */
export const OUTPUT_DEFAULTS = { renotifyMs: 86_400_000, maxIncidents: 10_000 } as const;

/**
 * The whole file for these detectors. `ciDefault`: the detectors CI windows and workloads silence
 * when the file does not list `suppress.ci.detectors`.
 */
export function rulesFileSpec(detectors: readonly DetectorSettingsSpec[], ciDefault: readonly string[]): ObjectSpec {
  const ids = detectors.map((d) => d.id);
  const detectorIds = oneOf('Detector id.', ids, ids[0] ?? '');
  const byDetector = (make: (d: DetectorSettingsSpec) => Spec): Record<string, Spec> => Object.fromEntries(detectors.map((d) => [d.id, make(d)]));
  return obj('The companion rules file.', {
    version: opt(int('Format version.', 1, { check: (n) => (n === 1 ? null : 'only version 1 is supported') })),
    extends: opt(str('`builtin`: include the built-in signals, allowlists and CI workloads before this file\'s own.', null, {
      check: (s) => (s === 'builtin' ? null : 'only `extends: builtin` is supported (include the built-in signals and allowlists)'),
    })),
    signals: list('Alert → signal mapping entries.', signalSpec),
    detectors: {
      ...obj('Per-detector settings.', byDetector((d) => obj(d.settings.doc, { enabled: bool(`Run the ${d.id} detector.`, true), ...d.settings.fields }))),
      keyNoun: 'detector',
    },
    suppress: obj('Allowlists, CI/CD windows and workloads, learning periods.', {
      allow: list('Allow entries (OR\'ed).', allowSpec(ids)),
      ci: obj('CI/CD bursts.', {
        windows: list('UTC time windows.', ciWindowSpec),
        workloads: list('CI/CD workloads.', ciWorkloadSpec),
        detectors: itemList('Detectors CI windows and workloads silence.', detectorIds, ciDefault),
      }),
      learning: { ...obj('Detector id → learning period (findings suppressed until it has passed in event time).', byDetector((d) => duration(`Learning period of ${d.id}.`, 0))), keyNoun: 'detector' },
    }),
    output: outputSpec,
  });
}
