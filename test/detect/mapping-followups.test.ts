/**
 * What the default mapping does with what a real Falco printed for the rules pack
 * (../shared/falco-reference/recorded/README.md and notes/e-rules-followups.md): the container
 * runtime's own start-up maps to nothing, a unix socket's fd.name gives the server's path, failed
 * escape attempts carry their result and requested path, a container start carries the sensitive
 * mounts it has, a prctl rename its new name.
 */
import { describe, expect, it } from 'vitest';
import { compileMapping, isRuntimeStartup, sensitiveMounts } from '../../src/detect/mapping.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { alertAt, DETECTOR_SPECS } from './helpers.js';

const mapping = compileMapping(loadRulesFile(null, { detectors: DETECTOR_SPECS }).signals);
const RUNC_SYSCTL = {
  'container.id': 'f3828a61dc73',
  'fd.name': '/proc/sys/net/ipv4/ip_unprivileged_port_start',
  'proc.aname[2]': 'containerd-shim',
  'proc.cmdline': 'runc:[1:CHILD] init',
  'proc.exepath': '/usr/sbin/runc',
  'proc.name': 'runc:[1:CHILD]',
  'proc.pid': 14385,
  'proc.pname': 'runc',
  'evt.res': 'SUCCESS',
};

describe('default mapping: follow-ups of the rules fix', () => {
  it('drops the container runtime\'s own start-up (older rules packs still send it), never a look-alike', () => {
    expect(mapping.mapAlert(alertAt(0, 'Companion signal: /proc/sys write from container', RUNC_SYSCTL))).toEqual([]);
    const rename = { ...RUNC_SYSCTL, 'container.id': 'host', 'proc.name': 'runc', 'proc.exepath': 'runc', 'evt.arg.arg2_str': 'runc:[0:PARENT]' };
    expect(mapping.mapAlert(alertAt(0, 'Companion signal: process renamed with prctl', rename))).toEqual([]);
    // runc 1.2 re-executing from a memfd under the runtime manager
    expect(isRuntimeStartup({ 'proc.name': 'runc:[2:INIT]', 'proc.pname': 'runc', 'proc.exepath': 'memfd:runc_cloned:/proc/self/exe', 'proc.aname[2]': 'conmon' })).toBe(true);
    // Names are forgeable: a `runc` from /tmp, a runc stage under a shell, a memfd under a shell.
    for (const f of [
      { ...RUNC_SYSCTL, 'proc.exepath': '/tmp/runc' },
      { ...RUNC_SYSCTL, 'proc.pname': 'sh' },
      { ...RUNC_SYSCTL, 'proc.exepath': 'memfd:x', 'proc.aname[2]': 'sh' },
    ]) {
      expect(isRuntimeStartup(f), JSON.stringify(f)).toBe(false);
      expect(mapping.mapAlert(alertAt(0, 'Companion signal: /proc/sys write from container', f)).map((s) => s.subtype)).toEqual(['proc_sys_write']);
    }
  });

  it('reads the path the server bound from a unix socket\'s fd.name', () => {
    const [s] = mapping.mapAlert(alertAt(0, 'Companion signal: container runtime socket connect', { 'fd.name': 'ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock', 'evt.res': 'SUCCESS' }));
    expect(s?.subtype).toBe('runtime_socket');
    expect(s?.keys).toMatchObject({ file: '/var/run/docker.sock', result: 'SUCCESS' });
  });

  it('carries the result and the requested path of escape attempts (a failed open has no fd.name)', () => {
    const [core] = mapping.mapAlert(alertAt(0, 'Companion signal: core_pattern write', { 'fd.name': null, 'evt.arg.name': '/proc/sys/kernel/core_pattern', 'evt.res': 'EROFS' }));
    expect(core?.keys).toEqual({ path: '/proc/sys/kernel/core_pattern', result: 'EROFS' });
    const [mnt] = mapping.mapAlert(alertAt(0, 'Companion signal: mount in container', { 'evt.arg.dev': 'cgroup', 'evt.arg.dir': '/tmp/cgrp', 'evt.arg.type': 'cgroup', 'evt.arg.flags': '0', 'evt.res': 'EPERM' }));
    expect(mnt?.keys).toEqual({ dev: 'cgroup', dir: '/tmp/cgrp', type: 'cgroup', flags: '0', result: 'EPERM' });
    for (const rule of ['Companion signal: namespace change in container', 'Companion signal: kernel module loaded', 'Companion signal: sysrq-trigger write', 'Companion signal: cgroup release_agent or notify_on_release write']) {
      expect(mapping.mapAlert(alertAt(0, rule, { 'evt.res': 'EPERM' }))[0]?.keys['result'], rule).toBe('EPERM');
    }
  });

  it('marks container starts with sensitive host mounts from container.mounts', () => {
    expect(sensitiveMounts('/var/run/docker.sock:/run/docker.sock::true:rprivate')).toEqual(['/var/run/docker.sock:/run/docker.sock']);
    expect(sensitiveMounts('/:/host::false:rslave,/proc:/host/proc::false:rprivate,/var/lib/kubelet/pods/x/volumes/y:/data::true:rprivate,/etc/kubernetes:/k::false:rprivate')).toEqual([
      '/:/host',
      '/proc:/host/proc',
      '/etc/kubernetes:/k',
    ]);
    expect(sensitiveMounts('/var/lib/kubelet/pods/6b1f/etc-hosts:/etc/hosts::true:rprivate,/home2:/x::true:')).toEqual([]);
    expect(sensitiveMounts('')).toEqual([]);
    const start = (mounts: string) => mapping.mapAlert(alertAt(0, 'Companion signal: privileged or host-namespace container started', { 'container.privileged': false, 'container.host_pid': false, 'container.mounts': mounts }))[0];
    expect(start('/var/run/docker.sock:/run/docker.sock::true:rprivate')?.keys).toMatchObject({ sensitive_mount: true, sensitive_mounts: '/var/run/docker.sock:/run/docker.sock' });
    expect(start('')?.keys['sensitive_mount']).toBeUndefined();
  });

  it('carries the new name of a prctl rename and the socket type of a raw socket', () => {
    expect(mapping.mapAlert(alertAt(0, 'Companion signal: process renamed with prctl', { 'evt.arg.arg2_str': 'kworker/0:1' }))[0]?.keys).toEqual({ new_name: 'kworker/0:1' });
    expect(mapping.mapAlert(alertAt(0, 'Companion signal: packet or raw socket created', { 'evt.arg.domain': 'AF_INET', 'evt.arg.type': '524291', 'evt.arg.proto': '1' }))[0]?.keys).toEqual({ type: '524291', proto: '1' });
  });
});
