/**
 * Replays the EVENTS behind the alerts a real Falco 0.40.0 printed with our rules pack
 * (../shared/falco-reference/recorded/, commit d3b06a5 of the pack) through the CURRENT rules:
 * each recorded alert's output_fields give the field values of the event it came from, every
 * companion rule is evaluated on them, and the outcome is held to what the rules must do on a
 * real node:
 *
 *  - the container runtime's own start-up (runc's prctl renames and sysctl writes, the container
 *    lifecycle event of a plain container) and busybox naming its forked applets fire nothing;
 *  - every other recorded signal still fires its rule, and only it (the BPFDoor-like chain keeps
 *    every signal the detectors need);
 *  - events the README says happened but no rule printed (the docker.sock connect with the
 *    fd.name a debug rule printed, the failed core_pattern open, mount and unshare) now fire;
 *  - forged look-alikes of the runtime (a `runc` dropped into a container, a wrong parent, a fake
 *    busybox) still fire: the exclusions do not open an evasion hole.
 *
 * Fields a rule reads that the alert did not print are filled from what Falco knows about that
 * process (FACTS below, each with its evidence); nothing else is invented. Conditions are loaded and
 * evaluated by the shared Falco model (test/support/falco-model: a check on a field without a value
 * is false), with `container.mount.dest[<glob>]` derived from container.mounts the way libsinsp
 * does. Both generations are modelled: 0.40/0.41 (companion_syscall_exit = evt.dir=<)
 * and 0.42+ (the override file's always-true macro).
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMPANION_RULES } from '../../src/detect/types.js';
import { isJsonObject, LosslessNumber, parse, type JsonValue } from '../../src/json/lossless.js';
import { evaluate, globMatch, type FieldValue, type Resolver } from '../support/falco-model/evaluate.js';
import { loadRules, type RuleSet } from '../support/falco-model/rules.js';
import { MAIN_RULES, OVERRIDE_042, REF_DIR, loadYamlItems } from './support.js';

const REC_DIR = join(REF_DIR, 'recorded');
const PRESENT = existsSync(join(REC_DIR, 'README.md')) && existsSync(join(REF_DIR, 'falco_rules-3.2.0.yaml'));
const SKIP = `skipped: recorded Falco alerts not found at ${REC_DIR} (../shared/falco-reference/recorded)`;

type Value = string | number | boolean | null;
type Facts = Readonly<Record<string, Value>>;

// ---------------------------------------------------------------------------------------------
// The rules, for both Falco generations, evaluated by the shared Falco model

type Pack = RuleSet;

function loadPack(withOverride: boolean): Pack {
  return loadRules(withOverride ? [MAIN_RULES, OVERRIDE_042] : [MAIN_RULES]);
}

/** container.mount.dest[<glob>]: destination of the first mount whose source matches; no value otherwise. */
function mountDest(mounts: Value | undefined, glob: string): string | undefined {
  if (typeof mounts !== 'string' || mounts === '') return undefined;
  // Documented as space-separated; libsinsp and the container plugin join with ','.
  for (const m of mounts.split(/[ ,]/)) {
    const [source, dest] = m.split(':');
    if (source !== undefined && dest !== undefined && globMatch(glob, source)) return dest;
  }
  return undefined;
}

/** Falco semantics over recorded facts: a field the facts do not hold, or hold as null, has no value. */
function resolverOf(f: Facts): Resolver {
  return (ref): FieldValue => {
    if (ref.name === 'container.mount.dest' && ref.arg !== null) return mountDest(f['container.mounts'], ref.arg);
    const v = f[ref.raw];
    return v === null || v === undefined ? undefined : v;
  };
}

function firing(pack: Pack, f: Facts): string[] {
  const resolve = resolverOf(f);
  return pack.rules.filter((r) => evaluate(r.condition, resolve)).map((r) => r.name);
}

// ---------------------------------------------------------------------------------------------
// From a recorded alert to the event it came from

/** evt.res → evt.rawres for the results the recordings hold (an unknown one fails the test). */
const RAWRES: Readonly<Record<string, number>> = { SUCCESS: 0, EPERM: -1, ENOENT: -2, EACCES: -13, EROFS: -30, EINPROGRESS: -115 };

/**
 * What Falco computes for each executable of the recordings but the signal outputs do not print
 * (proc.is_exe_upper_layer / is_exe_lower_layer / is_exe_from_memfd), with the evidence.
 */
const EXE_FACTS: Readonly<Record<string, { upper: boolean; lower: boolean; memfd: boolean; evidence: string }>> = {
  runc: { upper: false, lower: false, memfd: false, evidence: "runc 1.1.5 from Debian's runc package on the host's ext4, run through its read-only bind clone (exepath `runc`)" },
  '/usr/sbin/runc': { upper: false, lower: false, memfd: false, evidence: 'the same host binary, as its clone children report it' },
  '/bin/busybox': { upper: false, lower: true, memfd: false, evidence: 'part of the image local/rec-emul:1; the official Terminal-shell alert in shell-reads-shadow.jsonl printed exe_flags=EXE_WRITABLE|EXE_LOWER_LAYER for it' },
  '/bin/kworker': { upper: false, lower: true, memfd: false, evidence: 'the emulator binary, part of the image local/rec-emul:1' },
  '/tmp/kdmtmpflush': { upper: false, lower: false, memfd: false, evidence: 'copied to the --tmpfs /tmp (the tmpfs signal printed exe_upper_layer=false exe_from_memfd=false)' },
  '/usr/bin/tcpdump': { upper: false, lower: false, memfd: false, evidence: 'host binary' },
};

interface Recorded {
  readonly file: string;
  readonly index: number;
  readonly rule: string;
  readonly companion: boolean;
  readonly fields: Record<string, Value>;
  readonly facts: Facts;
}

function plain(v: JsonValue | undefined): Value {
  if (v === undefined || v === null) return null;
  if (v instanceof LosslessNumber) return v.raw;
  if (typeof v === 'object') throw new Error('nested value in output_fields');
  return v;
}

/** evt.dir of an official rule's event: its 3.2.0 condition says `evt.dir=>` for enter events. */
function officialDirections(): Map<string, '<' | '>'> {
  const out = new Map<string, '<' | '>'>();
  for (const it of loadYamlItems(join(REF_DIR, 'falco_rules-3.2.0.yaml'))) {
    if (typeof it.rule === 'string') out.set(it.rule, /evt\.dir\s*=\s*>/.test(String(it.condition)) ? '>' : '<');
  }
  return out;
}

function factsOf(rule: string, companion: boolean, fields: Record<string, Value>, initPids: ReadonlySet<string>, dirs: ReadonlyMap<string, '<' | '>'>): Facts {
  const f: Record<string, Value> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== null) f[k] = v;
  const type = String(f['evt.type']);
  const lifecycle = type === 'container';
  f['evt.num'] = 4242;
  if (!lifecycle) {
    f['evt.dir'] = companion ? '<' : (dirs.get(rule) ?? '<');
    const res = f['evt.res'];
    if (typeof res === 'string') {
      const raw = RAWRES[res];
      if (raw === undefined) throw new Error(`unmodelled evt.res ${res}`);
      f['evt.rawres'] = raw;
      f['evt.failed'] = raw < 0 && res !== 'EINPROGRESS';
    }
    f['thread.ismain'] = true; // runc's nsexec runs before the Go runtime starts threads; busybox and the emulator are single-threaded
  }
  // proc.vpid: the pid that renamed itself runc:[2:INIT] is the container's PID 1; runc's earlier stages live in the host pid namespace.
  const pid = f['proc.pid'];
  if (typeof pid === 'number' && pid > 0) {
    const cid = String(f['container.id']);
    if (initPids.has(`${cid}|${pid}`)) f['proc.vpid'] = 1;
    else if (cid === 'host' || f['proc.pname'] === 'runc') f['proc.vpid'] = pid;
    else f['proc.vpid'] = pid - 14_000; // inside the container's pid namespace: neither 1 nor the host pid
  }
  const exe = f['proc.exepath'];
  if (typeof exe === 'string' && exe !== '') {
    const known = EXE_FACTS[exe];
    if (!known) throw new Error(`no executable facts for ${exe}`);
    f['proc.is_exe_upper_layer'] ??= known.upper;
    f['proc.is_exe_lower_layer'] ??= known.lower;
    f['proc.is_exe_from_memfd'] ??= known.memfd;
  }
  if (!('fd.typechar' in f)) {
    const t = f['fd.type'];
    const name = f['fd.name'];
    f['fd.typechar'] = t === 'ipv4' ? '4' : t === 'ipv6' ? '6' : t === 'unix' ? 'u' : typeof name === 'string' && name.startsWith('/') ? 'f' : null;
  }
  if (f['fd.typechar'] !== null && typeof f['evt.rawres'] === 'number' && f['evt.rawres'] >= 0) f['fd.num'] = 3;
  if (typeof f['fd.sip'] === 'string') f['fd.snet'] = f['fd.sip'];
  if (f['fd.typechar'] === 'f' && typeof f['fd.name'] === 'string') {
    const name = f['fd.name'];
    f['fd.directory'] = name.slice(0, name.lastIndexOf('/'));
    f['fd.filename'] = name.slice(name.lastIndexOf('/') + 1);
    f['evt.arg.name'] ??= name;
  }
  if (['open', 'openat', 'openat2'].includes(type)) {
    const read = /read/i.test(rule);
    f['evt.is_open_read'] = read;
    f['evt.is_open_write'] = !read;
    f['evt.is_open_create'] = /pid or lock file/.test(rule);
  }
  return f;
}

function loadRecordings(): Recorded[] {
  const dirs = officialDirections();
  const out: Recorded[] = [];
  for (const file of readdirSync(REC_DIR).filter((n) => n.endsWith('.jsonl')).sort()) {
    const rows = readFileSync(join(REC_DIR, file), 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => parse(l))
      .filter(isJsonObject);
    const fieldsOf = rows.map((r) => {
      const of = r.output_fields;
      if (!isJsonObject(of)) throw new Error(`${file}: alert without output_fields`);
      return Object.fromEntries(Object.entries(of).map(([k, v]) => [k, plain(v)]));
    });
    const initPids = new Set(fieldsOf.filter((f) => f['evt.arg.arg2_str'] === 'runc:[2:INIT]').map((f) => `${String(f['container.id'])}|${String(f['proc.pid'])}`));
    rows.forEach((r, index) => {
      const rule = String(r.rule);
      const companion = rule in COMPANION_RULES;
      const fields = fieldsOf[index] as Record<string, Value>;
      out.push({ file, index, rule, companion, fields, facts: factsOf(rule, companion, fields, initPids, dirs) });
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// What each recorded event must do now (classified from the recording, not from the rules)

const RUNTIME_EXEPATHS = new Set(['runc', '/usr/sbin/runc']);
const SENSITIVE_SOURCES = ['/', '/proc', '/etc', '/root', '/var/run/docker.sock', '/run/docker.sock', '/var/lib/kubelet', '/sys/fs/cgroup', '/dev', '/home'];

type Why = 'runtime start-up' | 'busybox applet rename' | 'plain container start' | 'signal';

function classify(r: Recorded): Why {
  const f = r.fields;
  if (RUNTIME_EXEPATHS.has(String(f['proc.exepath'])) && f['proc.pname'] === 'runc') return 'runtime start-up';
  if (f['evt.type'] === 'prctl' && f['proc.exepath'] === '/bin/busybox') return 'busybox applet rename';
  if (r.rule === 'Companion signal: privileged or host-namespace container started') {
    const flags = ['container.privileged', 'container.host_pid', 'container.host_network', 'container.host_ipc'].some((k) => f[k] === true);
    const sources = String(f['container.mounts'] ?? '')
      .split(/[ ,]/)
      .filter((m) => m !== '')
      .map((m) => m.split(':')[0] ?? '');
    const sensitive = sources.some((s) => SENSITIVE_SOURCES.some((p) => s === p || (p !== '/' && s.startsWith(`${p}/`))));
    if (!flags && !sensitive) return 'plain container start';
  }
  return 'signal';
}

/** Companion signals each recording must still produce after the fixes (the rest were the runtime or busybox). */
const EXPECTED_SIGNALS: Readonly<Record<string, number>> = {
  'plain-start.jsonl': 0,
  'escape-attempts.jsonl': 2, // release_agent write + the start of a container with the Docker socket mounted
  'bind-shell-container.jsonl': 8, // tmpfs exec, rename to kworker/0:1, packet socket, filter, bind, listen, accept, shell
  'capture-container.jsonl': 3, // rename to tcpdump (an emulator binary, so a masquerade), packet socket, filter
  'capture-host.jsonl': 3, // the real tcpdump: packet socket, filter attached twice
  'beacon-container.jsonl': 12, // the 12 connects
  'shell-reads-shadow.jsonl': 0,
};

// ---------------------------------------------------------------------------------------------
// Events the README says happened in escape-attempts.jsonl but no rule of d3b06a5 printed

function escapeEvents(recs: readonly Recorded[]): Record<string, Facts> {
  const esc = recs.filter((r) => r.file === 'escape-attempts.jsonl');
  const shell = esc.find((r) => r.rule === 'Companion signal: cgroup release_agent or notify_on_release write');
  const mountProc = esc.find((r) => r.fields['evt.arg.arg2_str'] === 'mount');
  const unshareProc = esc.find((r) => r.fields['evt.arg.arg2_str'] === 'unshare');
  if (!shell || !mountProc || !unshareProc) throw new Error('escape-attempts.jsonl lacks the processes the synthetic events need');
  const proc = (r: Recorded): Record<string, Value> => {
    const keep = Object.entries(r.facts).filter(([k]) => /^(proc\.|thread\.ismain|user\.|container\.|k8s\.|evt\.num|evt\.dir)/.test(k));
    return Object.fromEntries(keep) as Record<string, Value>;
  };
  const failed = (res: string): Record<string, Value> => ({ 'evt.res': res, 'evt.rawres': RAWRES[res] as number, 'evt.failed': true });
  return {
    // `/bin/kworker unix /run/docker.sock`, a child of the shell: the connect a debug rule printed
    'docker.sock connect': {
      ...proc(shell),
      'proc.pid': 14330,
      'proc.ppid': 14289,
      'proc.name': 'kworker',
      'proc.exepath': '/bin/kworker',
      'proc.cmdline': 'kworker unix /run/docker.sock',
      'proc.pname': 'sh',
      'proc.aname[2]': 'containerd-shim',
      'proc.is_exe_lower_layer': true,
      'evt.type': 'connect',
      'evt.res': 'SUCCESS',
      'evt.rawres': 0,
      'fd.type': 'unix',
      'fd.typechar': 'u',
      'fd.num': 3,
      'fd.name': 'ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock',
    },
    // `echo '|/tmp/x' >/proc/sys/kernel/core_pattern` by the shell: /proc/sys is read-only, no fd
    'failed core_pattern open': {
      ...proc(shell),
      ...failed('EROFS'),
      'evt.type': 'openat',
      'evt.arg.name': '/proc/sys/kernel/core_pattern',
      'evt.arg.flags': 'O_WRONLY|O_CREAT|O_TRUNC',
      'evt.is_open_write': true,
      'evt.is_open_read': false,
      'evt.is_open_create': false,
    },
    // `mount -t tmpfs none /mnt`: busybox's mount applet (the process that renamed itself `mount`)
    'failed mount': { ...proc(mountProc), ...failed('EPERM'), 'evt.type': 'mount', 'evt.arg.dev': 'none', 'evt.arg.dir': '/mnt', 'evt.arg.type': 'tmpfs' },
    // `unshare -m true`: busybox's unshare applet
    'failed unshare': { ...proc(unshareProc), ...failed('EPERM'), 'evt.type': 'unshare', 'evt.arg.flags': 'CLONE_NEWNS' },
  };
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(!PRESENT)(PRESENT ? 'recorded real Falco 0.40 events replayed through the fixed rules' : SKIP, () => {
  const recs = PRESENT ? loadRecordings() : [];
  const generations = [
    { label: 'Falco 0.40/0.41', pack: PRESENT ? loadPack(false) : null },
    { label: 'Falco 0.42+ (with the override file)', pack: PRESENT ? loadPack(true) : null },
  ];

  it('has every recording and every kind of recorded event', () => {
    expect(new Set(recs.map((r) => r.file)).size).toBe(7);
    expect(Object.keys(EXPECTED_SIGNALS).sort()).toEqual([...new Set(recs.map((r) => r.file))].sort());
    const kinds = new Set(recs.map(classify));
    expect([...kinds].sort()).toEqual(['busybox applet rename', 'plain container start', 'runtime start-up', 'signal']);
  });

  for (const gen of generations) {
    describe(gen.label, () => {
      const pack = gen.pack as Pack;

      it("the runtime's own start-up and busybox applet renames fire no companion rule", () => {
        const noisy = recs.filter((r) => r.companion && classify(r) !== 'signal');
        expect(noisy.length).toBeGreaterThanOrEqual(40); // 6 per container start, plus busybox renames
        for (const r of noisy) expect(firing(pack, r.facts), `${r.file}:${r.index + 1} (${classify(r)}) ${r.rule}`).toEqual([]);
      });

      it('every other recorded signal still fires its own rule, and only it', () => {
        for (const r of recs.filter((x) => x.companion && classify(x) === 'signal')) {
          expect(firing(pack, r.facts), `${r.file}:${r.index + 1} ${r.rule}`).toEqual([r.rule]);
        }
      });

      it('the events behind official alerts fire no companion rule (no second signal for one syscall)', () => {
        const official = recs.filter((r) => !r.companion);
        expect(official.map((r) => r.rule)).toContain('Packet socket created in container');
        for (const r of official) expect(firing(pack, r.facts), `${r.file}:${r.index + 1} ${r.rule}`).toEqual([]);
      });

      it('per recording: the companion signals a real Falco would now print', () => {
        const got: Record<string, number> = {};
        for (const r of recs) {
          got[r.file] ??= 0;
          got[r.file] = (got[r.file] as number) + firing(pack, r.facts).length;
        }
        expect(got).toEqual(EXPECTED_SIGNALS);
      });

      it('the BPFDoor-like chain keeps every signal the socket-filter detector needs', () => {
        const kinds = new Set(
          recs
            .filter((r) => r.file === 'bind-shell-container.jsonl')
            .flatMap((r) => firing(pack, r.facts))
            .map((rule) => COMPANION_RULES[rule]?.kind),
        );
        for (const k of ['tmpfs_exec', 'proc_rename', 'raw_socket', 'filter_attach', 'listen', 'accept', 'shell_socket']) expect(kinds, k).toContain(k);
        const rename = recs.find((r) => r.fields['evt.arg.arg2_str'] === 'kworker/0:1');
        expect(rename && firing(pack, rename.facts)).toEqual(['Companion signal: process renamed with prctl']);
      });

      it('the docker.sock connect (fd.name = kernel addresses + the path dockerd bound) fires the runtime-socket signal', () => {
        const e = escapeEvents(recs)['docker.sock connect'] as Facts;
        expect(firing(pack, e)).toEqual(['Companion signal: container runtime socket connect']);
        // What d3b06a5 did: an exact path list never matches this form.
        expect((pack.lists.get('companion_runtime_sockets') ?? []).includes(String(e['fd.name']))).toBe(false);
      });

      it('the failed escape attempts fire, with the errno in evt.res', () => {
        const ev = escapeEvents(recs);
        expect(firing(pack, ev['failed core_pattern open'] as Facts)).toEqual(['Companion signal: core_pattern write']);
        expect(firing(pack, ev['failed mount'] as Facts)).toEqual(['Companion signal: mount in container']);
        expect(firing(pack, ev['failed unshare'] as Facts)).toEqual(['Companion signal: namespace change in container']);
        for (const e of Object.values(ev)) expect(e['evt.res'] === 'SUCCESS' || e['evt.rawres'] !== 0).toBe(true);
      });

      // Forged look-alikes: each starts from a real recorded event and changes what an attacker in a
      // container could change; the exclusions must not cover them.
      const variant = (pick: (r: Recorded) => boolean, change: Facts): Facts => {
        const base = recs.find(pick);
        if (!base) throw new Error('variant base not found');
        return { ...base.facts, ...change };
      };
      const stage2 = (r: Recorded): boolean => r.fields['evt.arg.arg2_str'] === 'runc:[2:INIT]';
      const sysctl = (r: Recorded): boolean => r.rule === 'Companion signal: /proc/sys write from container';
      const applet = (r: Recorded): boolean => r.fields['evt.arg.arg2_str'] === 'cp';
      const rename = 'Companion signal: process renamed with prctl';
      const cases: [string, () => Facts, string[]][] = [
        ['runc stage rename from a runc written into the container (upper layer)', () => variant(stage2, { 'proc.is_exe_upper_layer': true }), [rename]],
        ['runc stage rename whose parent is not the runtime CLI', () => variant(stage2, { 'proc.pname': 'sh' }), [rename]],
        ['runc stage rename from /tmp/runc', () => variant(stage2, { 'proc.exepath': '/tmp/runc' }), [rename]],
        ['an implant renaming itself runc:[2:INIT]', () => variant((r) => r.fields['evt.arg.arg2_str'] === 'kworker/0:1', { 'evt.arg.arg2_str': 'runc:[2:INIT]' }), [rename]],
        ['runc stage rename from a memfd not started by a runtime manager', () => variant(stage2, { 'proc.exepath': 'memfd:x (deleted)', 'proc.is_exe_from_memfd': true, 'proc.aname[2]': 'sh' }), [rename]],
        ['runc stage rename from a memfd under containerd-shim (the runtime)', () => variant(stage2, { 'proc.exepath': 'memfd:runc_cloned:/proc/self/exe (deleted)', 'proc.is_exe_from_memfd': true }), []],
        ['runc stage rename, runc at /usr/bin/runc', () => variant(stage2, { 'proc.exepath': '/usr/bin/runc' }), []],
        ['busybox applet rename from a busybox dropped in /tmp', () => variant(applet, { 'proc.exepath': '/tmp/busybox', 'proc.is_exe_lower_layer': false }), [rename]],
        ['the image busybox renaming to a kernel-thread name', () => variant(applet, { 'evt.arg.arg2_str': 'kworker/0:1' }), [rename]],
        ['sysctl write by a runc written into the container', () => variant(sysctl, { 'proc.is_exe_upper_layer': true }), ['Companion signal: /proc/sys write from container']],
        ['sysctl write by a process merely named runc:[1:CHILD]', () => variant(sysctl, { 'proc.pname': 'sh' }), ['Companion signal: /proc/sys write from container']],
        ['a failed write elsewhere under /proc/sys (entrypoint sysctl -w)', () => ({ ...(escapeEvents(recs)['failed core_pattern open'] as Facts), 'evt.arg.name': '/proc/sys/net/core/somaxconn' }), []],
        ['a privileged container start', () => variant((r) => r.file === 'plain-start.jsonl' && r.fields['evt.type'] === 'container', { 'container.privileged': true }), ['Companion signal: privileged or host-namespace container started']],
        ['a container start with the host /proc mounted', () => variant((r) => r.file === 'plain-start.jsonl' && r.fields['evt.type'] === 'container', { 'container.mounts': '/proc:/host/proc::false:rprivate' }), ['Companion signal: privileged or host-namespace container started']],
        ['containerd socket, full unix form', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'fd.name': 'ffff8881aa000000->ffff8881aa000400 /run/containerd/containerd.sock' }), ['Companion signal: container runtime socket connect']],
        ['rootless Docker socket', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'fd.name': 'ffff8881aa000000->ffff8881aa000400 /run/user/1000/docker.sock' }), ['Companion signal: container runtime socket connect']],
        ['CRI-O socket', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'fd.name': 'ffff8881aa000000->ffff8881aa000400 /var/run/crio/crio.sock' }), ['Companion signal: container runtime socket connect']],
        ['an unrelated unix socket', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'fd.name': 'ffff8881aa000000->ffff8881aa000400 /run/dbus/system_bus_socket' }), []],
        ['a docker CLI downloaded into the container', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'proc.name': 'docker', 'proc.exepath': '/tmp/docker', 'proc.is_exe_lower_layer': false }), ['Companion signal: container runtime socket connect']],
        ['the docker CLI the image ships (CI runner)', () => ({ ...(escapeEvents(recs)['docker.sock connect'] as Facts), 'proc.name': 'docker', 'proc.exepath': '/usr/bin/docker', 'proc.is_exe_lower_layer': true }), []],
        [
          'an implant named runc executed from /tmp',
          () => variant((r) => r.rule === 'Companion signal: execution from tmpfs', { 'proc.name': 'runc', 'proc.exepath': '/tmp/runc' }),
          ['Companion signal: execution from tmpfs'],
        ],
        [
          "runc's memfd re-exec under the runtime CLI",
          () => variant((r) => r.rule === 'Companion signal: execution from tmpfs', { 'proc.exepath': 'memfd:runc_cloned:/proc/self/exe (deleted)', 'proc.is_exe_from_memfd': true, 'proc.pname': 'runc', 'proc.aname[2]': 'containerd-shim' }),
          [],
        ],
      ];
      it.each(cases)('%s', (_name, facts, expected) => {
        expect(firing(pack, facts())).toEqual(expected);
      });
    });
  }

  it('both generations agree on every recorded and synthetic event (the override only drops evt.dir)', () => {
    const [a, b] = generations.map((g) => g.pack as Pack) as [Pack, Pack];
    const all: Facts[] = [...recs.filter((r) => r.facts['evt.dir'] !== '>').map((r) => r.facts), ...Object.values(escapeEvents(recs))];
    for (const f of all) expect(firing(b, f)).toEqual(firing(a, f));
  });
});
