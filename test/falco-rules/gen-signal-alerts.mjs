#!/usr/bin/env node
/* global URL, process */
// Regenerates test/fixtures/signal-alerts.jsonl: one JSON alert per companion rule, shaped exactly
// as Falco 0.40+ emits it with json_output (alphabetical keys, `output` = time + priority +
// formatted message, typed output_fields, evt.time as a nanosecond integer, null for <NA>,
// sorted tags). Values come from a BPFDoor-like scenario in one container (the kernel module load
// is on the host). Run: node test/falco-rules/gen-signal-alerts.mjs
// test/falco-rules/signal-alerts.test.ts checks the file stays consistent with the rules.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const rules = parse(readFileSync(`${root}falco-rules/falco-companion_rules.yaml`, 'utf8')).filter((i) => typeof i.rule === 'string');
const fieldTypes = new Map(
  readFileSync(`${root}../shared/falco-reference/supported-fields-falco-0.44.0.txt`, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split('\t'))
    .map(([n, t]) => [n, t]),
);

const NUMERIC = new Set(['INT16', 'INT32', 'INT64', 'UINT32', 'UINT64', 'PORT', 'ABSTIME', 'RELTIME', 'DOUBLE']);
const PRIORITY = { INFO: 'Informational', NOTICE: 'Notice', WARNING: 'Warning' };

const container = {
  'container.id': '3f2a9c1b7d4e',
  'container.name': 'web-7d9f8c6b5-x2k4q_shop',
  'container.image.repository': 'registry.example.com/shop/web',
  'container.image.tag': '1.4.2',
  'container.image.digest': 'sha256:9b2c6e5f0a1d4e7b8c3f2a1d0e9f8c7b6a5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f',
  'k8s.ns.name': 'shop',
  'k8s.pod.name': 'web-7d9f8c6b5-x2k4q',
};
const host = {
  'container.id': 'host',
  'container.name': 'host',
  'container.image.repository': null,
  'container.image.tag': null,
  'container.image.digest': null,
  'k8s.ns.name': null,
  'k8s.pod.name': null,
};
// The implant: started from /dev/shm, renamed, session leader of its own session.
const implant = {
  'proc.pid': 31337,
  'proc.ppid': 31330,
  'proc.sid': 31337,
  'proc.apid[2]': 1,
  'proc.apid[3]': null,
  'proc.name': 'kdmtmpflush',
  'proc.exepath': '/dev/shm/kdmtmpflush',
  'proc.pname': 'sh',
  'proc.aname[2]': 'nginx',
  'proc.cmdline': 'kdmtmpflush --init',
  'user.name': 'root',
  'user.uid': 0,
  'evt.res': 'SUCCESS',
};
const noNet = {
  'fd.name': null,
  'fd.type': null,
  'fd.l4proto': null,
  'fd.cip': null,
  'fd.cport': null,
  'fd.sip': null,
  'fd.sport': null,
};

/** Per rule: the values of the fields its output names (anything not given is null). */
const scenarios = {
  'Companion signal: execution from tmpfs': {
    ...implant,
    ...container,
    'evt.type': 'execve',
    'proc.exe': '/dev/shm/kdmtmpflush',
    'proc.is_exe_from_memfd': false,
    'proc.is_exe_upper_layer': true,
    'proc.cwd': '/dev/shm/',
    'proc.pcmdline': 'sh -c cp /tmp/x /dev/shm/kdmtmpflush && /dev/shm/kdmtmpflush --init',
    'proc.pid': 31336,
    'proc.sid': 1,
  },
  'Companion signal: process renamed with prctl': {
    ...implant,
    ...container,
    'evt.type': 'prctl',
    'evt.arg.arg2_str': 'dbus-daemon',
    'evt.arg.option': 'PR_SET_NAME',
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: pid or lock file under /var/run': {
    ...implant,
    ...container,
    'evt.type': 'openat',
    'fd.name': '/var/run/haldrund.pid',
    'fd.directory': '/var/run',
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: packet or raw socket created': {
    ...implant,
    ...container,
    ...noNet,
    'evt.type': 'socket',
    'evt.arg.domain': 'AF_PACKET',
    'evt.arg.type': '3',
    'evt.arg.proto': '8',
    'fd.typechar': 'o',
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: socket filter attached': {
    ...implant,
    ...container,
    'evt.type': 'setsockopt',
    'evt.arg.level': 'SOL_SOCKET',
    'evt.arg.optname': 'SO_ATTACH_FILTER',
    'evt.arg.optlen': '16',
    'fd.typechar': 'o',
    'fd.l4proto': null,
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: BPF program loaded in container': {
    ...implant,
    ...container,
    'evt.type': 'bpf',
    'evt.arg.cmd': 'BPF_PROG_LOAD',
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: firewall tool run': {
    ...container,
    'evt.type': 'execve',
    'evt.res': 'SUCCESS',
    'proc.pid': 31402,
    'proc.ppid': 31401,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'iptables',
    'proc.exepath': '/usr/sbin/iptables',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'iptables -t nat -A PREROUTING -s 203.0.113.7 -p tcp --dport 443 -j REDIRECT --to-ports 42391',
    'proc.args': '-t nat -A PREROUTING -s 203.0.113.7 -p tcp --dport 443 -j REDIRECT --to-ports 42391',
    'proc.pcmdline': 'sh -c iptables -t nat -A PREROUTING -s 203.0.113.7 -p tcp --dport 443 -j REDIRECT --to-ports 42391',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: listening socket in container': {
    ...implant,
    ...container,
    'evt.type': 'listen',
    'fd.name': '0.0.0.0:42391',
    'fd.type': 'ipv4',
    'fd.l4proto': 'tcp',
    'fd.cip': null,
    'fd.cport': null,
    'fd.sip': '0.0.0.0',
    'fd.sport': 42391,
    'evt.arg.backlog': '1',
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: inbound connection accepted in container': {
    ...implant,
    ...container,
    'evt.type': 'accept4',
    'fd.name': '203.0.113.7:51515->10.42.0.17:42391',
    'fd.type': 'ipv4',
    'fd.l4proto': 'tcp',
    'fd.cip': '203.0.113.7',
    'fd.cport': 51515,
    'fd.sip': '10.42.0.17',
    'fd.sport': 42391,
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: outbound connection from container': {
    ...implant,
    ...container,
    'evt.type': 'connect',
    'evt.res': 'EINPROGRESS',
    'fd.name': '10.42.0.17:40022->198.51.100.23:443',
    'fd.type': 'ipv4',
    'fd.l4proto': 'tcp',
    'fd.cip': '10.42.0.17',
    'fd.cport': 40022,
    'fd.sip': '198.51.100.23',
    'fd.sport': 443,
    'proc.cmdline': 'dbus-daemon --system',
  },
  'Companion signal: shell with socket stdio': {
    ...container,
    'evt.type': 'execve',
    'evt.res': 'SUCCESS',
    'proc.pid': 31410,
    'proc.ppid': 31337,
    'proc.sid': 31337,
    'proc.apid[2]': 31330,
    'proc.apid[3]': 1,
    'proc.name': 'sh',
    'proc.exepath': '/bin/sh',
    'proc.pname': 'kdmtmpflush',
    'proc.aname[2]': 'sh',
    'proc.cmdline': 'sh',
    'proc.pcmdline': 'dbus-daemon --system',
    'proc.stdin.type': 'ipv4',
    'proc.stdin.name': '203.0.113.7:51515->10.42.0.17:42391',
    'proc.stdout.type': 'ipv4',
    'proc.stdout.name': '203.0.113.7:51515->10.42.0.17:42391',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: namespace change in container': {
    ...container,
    'evt.type': 'setns',
    'evt.res': 'SUCCESS',
    'evt.arg.nstype': 'CLONE_NEWNS',
    'fd.name': '/proc/1/ns/mnt',
    'proc.pid': 31500,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'nsenter',
    'proc.exepath': '/usr/bin/nsenter',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'nsenter --target 1 --mount --uts --ipc --net --pid sh',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: mount in container': {
    ...container,
    'evt.type': 'mount',
    'evt.res': 'SUCCESS',
    'evt.arg.dev': '/dev/sda1',
    'evt.arg.dir': '/mnt/host',
    'evt.arg.type': 'ext4',
    'evt.arg.flags': '0',
    'container.privileged': true,
    'proc.pid': 31510,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'mount',
    'proc.exepath': '/usr/bin/mount',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'mount /dev/sda1 /mnt/host',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: cgroup release_agent or notify_on_release write': {
    ...container,
    'evt.type': 'openat',
    'evt.res': 'SUCCESS',
    'fd.name': '/tmp/cgrp/x/notify_on_release',
    'thread.cap_effective': 'CAP_CHOWN CAP_DAC_OVERRIDE CAP_SYS_ADMIN',
    'container.privileged': true,
    'proc.pid': 31520,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'sh',
    'proc.exepath': '/bin/sh',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'sh -c echo 1 > /tmp/cgrp/x/notify_on_release',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: core_pattern write': {
    ...container,
    'evt.type': 'openat',
    'evt.res': 'SUCCESS',
    'fd.name': '/proc/sys/kernel/core_pattern',
    'thread.cap_effective': 'CAP_CHOWN CAP_DAC_OVERRIDE CAP_SYS_ADMIN',
    'container.privileged': true,
    'proc.pid': 31530,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'sh',
    'proc.exepath': '/bin/sh',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'sh -c echo "|/tmp/x.sh" > /proc/sys/kernel/core_pattern',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: sysrq-trigger write': {
    ...container,
    'evt.type': 'openat',
    'evt.res': 'SUCCESS',
    'fd.name': '/proc/sysrq-trigger',
    'thread.cap_effective': 'CAP_CHOWN CAP_DAC_OVERRIDE CAP_SYS_ADMIN',
    'container.privileged': true,
    'proc.pid': 31540,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'sh',
    'proc.exepath': '/bin/sh',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'sh -c echo b > /proc/sysrq-trigger',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: /proc/sys write from container': {
    ...container,
    'evt.type': 'openat',
    'evt.res': 'SUCCESS',
    'fd.name': '/proc/sys/net/ipv4/ip_forward',
    'thread.cap_effective': 'CAP_CHOWN CAP_DAC_OVERRIDE CAP_SYS_ADMIN',
    'container.privileged': true,
    'proc.pid': 31550,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'sh',
    'proc.exepath': '/bin/sh',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'sh -c echo 1 > /proc/sys/net/ipv4/ip_forward',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: container runtime socket connect': {
    ...container,
    'evt.type': 'connect',
    'evt.res': 'SUCCESS',
    'fd.name': '/var/run/docker.sock',
    'fd.type': 'unix',
    'proc.pid': 31560,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'curl',
    'proc.exepath': '/usr/bin/curl',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'curl --unix-socket /var/run/docker.sock http://localhost/containers/json',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: kernel module loaded': {
    ...host,
    'evt.type': 'finit_module',
    'evt.res': 'SUCCESS',
    'proc.args': '/tmp/.x/rk.ko',
    'fd.name': '/tmp/.x/rk.ko',
    'evt.arg.uargs': '',
    'thread.cap_effective': 'CAP_CHOWN CAP_DAC_OVERRIDE CAP_SYS_MODULE CAP_SYS_ADMIN',
    'proc.pid': 40210,
    'proc.ppid': 40200,
    'proc.sid': 40200,
    'proc.apid[2]': 1,
    'proc.apid[3]': null,
    'proc.name': 'insmod',
    'proc.exepath': '/usr/sbin/insmod',
    'proc.pname': 'bash',
    'proc.aname[2]': 'systemd',
    'proc.cmdline': 'insmod /tmp/.x/rk.ko',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: service account token read': {
    ...container,
    'evt.type': 'openat',
    'evt.res': 'SUCCESS',
    'fd.name': '/var/run/secrets/kubernetes.io/serviceaccount/token',
    'proc.pid': 31570,
    'proc.ppid': 31410,
    'proc.sid': 31337,
    'proc.apid[2]': 31337,
    'proc.apid[3]': 31330,
    'proc.name': 'cat',
    'proc.exepath': '/bin/cat',
    'proc.pname': 'sh',
    'proc.aname[2]': 'kdmtmpflush',
    'proc.cmdline': 'cat /var/run/secrets/kubernetes.io/serviceaccount/token',
    'user.name': 'root',
    'user.uid': 0,
  },
  'Companion signal: privileged or host-namespace container started': {
    ...container,
    'container.id': '8c1d2e3f4a5b',
    'container.name': 'debug-tools_ops',
    'container.image.repository': 'docker.io/nicolaka/netshoot',
    'container.image.tag': 'latest',
    'container.image.digest': 'sha256:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809',
    'container.image': 'docker.io/nicolaka/netshoot:latest',
    'container.type': 'containerd',
    'container.privileged': true,
    'container.host_pid': true,
    'container.host_network': true,
    'container.host_ipc': false,
    'container.mounts': '/:/host::true:rprivate',
    'k8s.ns.name': 'ops',
    'k8s.pod.name': 'debug-tools',
    'evt.type': 'execve',
    'evt.res': 'SUCCESS',
    'proc.pid': 52001,
    'proc.ppid': 51990,
    'proc.sid': 52001,
    'proc.apid[2]': 1,
    'proc.apid[3]': null,
    'proc.name': 'zsh',
    'proc.exepath': '/bin/zsh',
    'proc.pname': 'containerd-shim',
    'proc.aname[2]': 'systemd',
    'proc.cmdline': 'zsh',
    'user.name': 'root',
    'user.uid': 0,
  },
};

function typeOf(field) {
  // Listed as CHARBUF (its text form), but in JSON output Falco writes evt.time as a ns integer.
  if (field === 'evt.time') return 'ABSTIME';
  if (field.startsWith('evt.arg.') || field.startsWith('evt.arg[')) return 'CHARBUF';
  const base = field.replace(/\[.*\]$/, '');
  return fieldTypes.get(base) ?? 'CHARBUF';
}

function jsonValue(field, v) {
  if (v === null || v === undefined) return 'null';
  const t = typeOf(field);
  if (t === 'BOOL') return v ? 'true' : 'false';
  if (NUMERIC.has(t)) return String(v); // exact, may exceed 2^53 (evt.time)
  return JSON.stringify(String(v));
}

function textValue(v) {
  if (v === null || v === undefined) return '<NA>';
  return String(v);
}

const BASE_NS = 1785316800000000000n; // 2026-07-29T09:20:00Z
const lines = [];
const names = Object.keys(scenarios);
for (const [i, rule] of rules.entries()) {
  const values = scenarios[rule.rule];
  if (!values) throw new Error(`no scenario for ${rule.rule}`);
  let ns = BASE_NS + BigInt(i) * 1_000_000_000n + 123_456_789n + BigInt(i);
  // Like real ones, every timestamp must be unrepresentable as a double: a value such as
  // ...123456800 prints back identically from a double yet is another integer (...768).
  while (String(Number(ns)) === ns.toString()) ns += 1n;
  const date = new Date(Number(ns / 1_000_000n));
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  const time = `${date.toISOString().slice(0, 19)}.${frac}Z`;
  const clock = `${date.toISOString().slice(11, 19)}.${frac}`;
  const fields = new Map();
  const message = rule.output.replace(/%([A-Za-z_][A-Za-z0-9_.]*)(\[[^\]]*\])?/g, (_m, name, arg) => {
    const key = `${name}${arg ?? ''}`;
    const v = Object.hasOwn(values, key) ? values[key] : null;
    fields.set(key, v);
    return textValue(v);
  });
  fields.set('evt.time', ns);
  const of = [...fields.keys()].sort().map((k) => `${JSON.stringify(k)}:${jsonValue(k, fields.get(k))}`);
  const priority = PRIORITY[rule.priority];
  const tags = [...rule.tags].sort();
  const line =
    `{"hostname":"node-1","output":${JSON.stringify(`${clock}: ${priority} ${message}`)},` +
    `"output_fields":{${of.join(',')}},"priority":${JSON.stringify(priority)},"rule":${JSON.stringify(rule.rule)},` +
    `"source":"syscall","tags":${JSON.stringify(tags)},"time":${JSON.stringify(time)}}`;
  lines.push(line);
}
for (const n of names) if (!rules.some((r) => r.rule === n)) throw new Error(`scenario without rule: ${n}`);
writeFileSync(`${root}test/fixtures/signal-alerts.jsonl`, `${lines.join('\n')}\n`);
process.stdout.write(`wrote ${lines.length} alerts\n`);
