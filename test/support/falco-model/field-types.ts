/**
 * The libsinsp type of every field our rules pack (falco-rules/falco-companion_rules.yaml) uses in
 * an output or a condition: the project's own table, so that the Falco model renders our alerts
 * as Falco 0.40 prints them (render.mjs: numeric types as JSON numbers, BOOL as true/false, the
 * rest as strings) when Falco's supported-fields list (../shared) is not on the machine.
 *
 * `evt.arg.*` and `evt.time` are not listed: the renderer types them itself (argument text; the
 * event time in ns). test/kernel/field-types.test.ts holds the table to the pack (every field it
 * references has an entry, nothing stale) and, when ../shared is present, to the supported-fields
 * lists of Falco 0.40 and 0.44 (same type for every entry).
 */
import { collectRefs } from '../../falco-rules/falco-condition.js';
import { outputRefs, type RuleSet } from './rules.js';

/** Falco field name → libsinsp type (`falco --list=syscall` spelling). */
export const COMPANION_FIELD_TYPES: ReadonlyMap<string, string> = new Map([
  // The event. evt.res is text (SUCCESS or the errno name); evt.rawres is the number behind it.
  ['evt.type', 'CHARBUF'],
  ['evt.dir', 'CHARBUF'],
  ['evt.num', 'UINT64'],
  ['evt.res', 'CHARBUF'],
  ['evt.rawres', 'INT64'],
  ['evt.is_open_read', 'BOOL'],
  ['evt.is_open_write', 'BOOL'],
  ['evt.is_open_create', 'BOOL'],
  // The process and its ancestors. Ids are signed 64-bit in libsinsp (threadinfo's int64_t).
  ['proc.pid', 'INT64'],
  ['proc.ppid', 'INT64'],
  ['proc.vpid', 'INT64'],
  ['proc.sid', 'INT64'],
  ['proc.apid', 'INT64'],
  ['proc.name', 'CHARBUF'],
  ['proc.pname', 'CHARBUF'],
  ['proc.aname', 'CHARBUF'],
  ['proc.exe', 'CHARBUF'],
  ['proc.exepath', 'CHARBUF'],
  ['proc.args', 'CHARBUF'],
  ['proc.cmdline', 'CHARBUF'],
  ['proc.pcmdline', 'CHARBUF'],
  ['proc.cwd', 'CHARBUF'],
  ['proc.is_exe_upper_layer', 'BOOL'],
  ['proc.is_exe_lower_layer', 'BOOL'],
  ['proc.is_exe_from_memfd', 'BOOL'],
  ['proc.stdin.type', 'CHARBUF'],
  ['proc.stdin.name', 'CHARBUF'],
  ['proc.stdout.type', 'CHARBUF'],
  ['proc.stdout.name', 'CHARBUF'],
  ['thread.ismain', 'BOOL'],
  // Capability sets print as names (CAP_NET_RAW CAP_SYS_ADMIN ...), not as a bit mask.
  ['thread.cap_effective', 'CHARBUF'],
  ['user.name', 'CHARBUF'],
  ['user.uid', 'UINT32'],
  // The file descriptor. Addresses and networks are text in JSON (IPADDR, IPNET); ports are numbers.
  ['fd.num', 'INT64'],
  ['fd.type', 'CHARBUF'],
  ['fd.typechar', 'CHARBUF'],
  ['fd.name', 'CHARBUF'],
  ['fd.directory', 'CHARBUF'],
  ['fd.filename', 'CHARBUF'],
  ['fd.l4proto', 'CHARBUF'],
  ['fd.cip', 'IPADDR'],
  ['fd.sip', 'IPADDR'],
  ['fd.snet', 'IPNET'],
  ['fd.cport', 'PORT'],
  ['fd.sport', 'PORT'],
  // Container metadata (libsinsp on 0.40, the container plugin on 0.42+: the same types).
  ['container.id', 'CHARBUF'],
  ['container.name', 'CHARBUF'],
  ['container.type', 'CHARBUF'],
  ['container.image', 'CHARBUF'],
  ['container.image.repository', 'CHARBUF'],
  ['container.image.tag', 'CHARBUF'],
  ['container.image.digest', 'CHARBUF'],
  ['container.privileged', 'BOOL'],
  ['container.host_pid', 'BOOL'],
  ['container.host_network', 'BOOL'],
  ['container.host_ipc', 'BOOL'],
  ['container.mounts', 'CHARBUF'],
  ['container.mount.dest', 'CHARBUF'],
  // Kubernetes metadata (not modelled here: always without a value).
  ['k8s.ns.name', 'CHARBUF'],
  ['k8s.pod.name', 'CHARBUF'],
]);

/** Fields the renderer types by itself (render.mjs fieldType), so no table lists them. */
export function typedByRenderer(name: string): boolean {
  return name === 'evt.time' || name === 'evt.args' || name.startsWith('evt.arg.') || name.startsWith('evt.rawarg.');
}

/** The field names (without `[arg]`) the rules' conditions (macros and exceptions expanded) and outputs reference. */
export function referencedFields(rules: RuleSet): { output: Set<string>; condition: Set<string> } {
  const output = new Set<string>();
  const condition = new Set<string>();
  for (const r of rules.rules) {
    for (const f of collectRefs(r.condition).fields) condition.add(f.name);
    for (const f of outputRefs(r.output)) output.add(f.name);
  }
  return { output, condition };
}

/** Output fields of the rules without a type in `types` (the renderer would print them as strings). */
export function untypedOutputFields(rules: RuleSet, types: ReadonlyMap<string, string>): string[] {
  return [...referencedFields(rules).output].filter((f) => !typedByRenderer(f) && !types.has(f)).sort();
}
