/**
 * Escape attempts that fail still count (one priority step lower while nothing succeeded); mounts
 * count only when they can reach the host. API-server contact is recognised from any connect to a
 * known API-server address (KUBERNETES_SERVICE_HOST, config, learned from the official alert), and
 * an in-cluster client doing its job stays informational.
 */
import { describe, expect, it } from 'vitest';
import { createEscapeDetector, escapeMount } from '../../../src/detect/detectors/escape.js';
import { createK8sSpreadDetector, K8S_SPREAD_RULES } from '../../../src/detect/detectors/k8s-spread.js';
import { discoverCluster, type DetectorEnv } from '../../../src/detect/cluster.js';
import { runDetector, sig } from '../../support/signals.js';

const esc = (t: number, subtype: string, result = 'SUCCESS', keys: Record<string, string> = {}) => sig({ kind: 'escape', subtype, t, keys: { result, ...keys } });

describe('escape chain with failed attempts', () => {
  it('counts distinct vectors whether or not they failed; one step lower while every attempt failed, back up on a success', () => {
    const { findings } = runDetector(createEscapeDetector(), [esc(0, 'namespace_change', 'EPERM'), esc(1, 'core_pattern', 'EROFS'), esc(2, 'sysrq', 'EROFS'), esc(3, 'release_agent', 'SUCCESS')]);
    expect(findings.map((f) => [f.priority, f.fields['escape.count'], f.fields['escape.all_failed']])).toEqual([
      ['Warning', 2, true], // Error, one step lower: nothing escaped yet
      ['Error', 3, true], // Critical, one step lower
      ['Critical', 4, false],
    ]);
    expect(findings[2]?.fields['escape.failed']).toBe('core_pattern,namespace_change,sysrq');
  });

  it('a lone vector retried (a sandbox probing unshare) is never a chain; a new chain after the old one expired is reported again', () => {
    expect(runDetector(createEscapeDetector(), [0, 1, 2, 3].map((t) => esc(t, 'namespace_change', 'EPERM'))).findings).toEqual([]);
    const { findings } = runDetector(createEscapeDetector(), [esc(0, 'mount', 'EPERM'), esc(1, 'sysrq', 'EROFS'), esc(2, 'sysrq', 'EROFS'), esc(300, 'mount', 'EPERM'), esc(301, 'sysrq', 'EROFS')]);
    expect(findings).toHaveLength(2);
  });

  it('counts a mount only when it can reach the host', () => {
    const m = (keys: Record<string, string>, result = 'SUCCESS') => escapeMount(esc(0, 'mount', result, keys));
    expect(m({ type: 'tmpfs', dev: 'none', flags: '0' })).toBe(false);
    expect(m({ type: 'cgroup2', dev: 'none', flags: '0' })).toBe(false);
    expect(m({ type: 'bpf', dev: 'bpf', flags: '0' })).toBe(false);
    expect(m({ flags: 'MS_REC|MS_SHARED', dir: '/' })).toBe(false); // mount --make-rshared /
    expect(m({ type: 'cgroup', dev: 'cgroup', flags: '0' })).toBe(true); // the release_agent trick needs cgroup v1
    expect(m({ type: 'ext4', dev: '/dev/sda1', flags: '0' })).toBe(true);
    expect(m({ dev: '/proc/1/root', flags: 'MS_BIND' })).toBe(true);
    expect(m({ dev: '/data', flags: '4096' })).toBe(false); // bind of the container's own path
    expect(m({ type: 'tmpfs', dev: 'none', flags: '0' }, 'EPERM')).toBe(true); // failed: nothing legitimate tries
    expect(escapeMount(sig({ kind: 'escape', subtype: 'mount' }))).toBe(true); // official rule: no arguments
    // dind: privileged start + its own mounts is not an escape chain
    const dind = [sig({ kind: 'container_start', t: 0, keys: { privileged: true } }), esc(1, 'mount', 'SUCCESS', { type: 'securityfs', dev: 'none', flags: '0' }), esc(1.1, 'mount', 'SUCCESS', { type: 'tmpfs', dev: 'none', flags: '0' })];
    expect(runDetector(createEscapeDetector(), dind).findings).toEqual([]);
  });
});

describe('Kubernetes spread: API-server contact from our own connect signals', () => {
  const env: DetectorEnv = { cluster: discoverCluster({ config: { discover: true, pod_cidrs: [], service_cidrs: [], node_cidrs: [], api_servers: ['192.168.10.5'] }, env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' } }) };
  const token = (t: number, exe = '/bin/cat', name?: string) => sig({ kind: 'sa_token_read', t, exe, name });
  const connect = (t: number, dest: string, port: number, exe = '/usr/bin/curl') => sig({ kind: 'connect', t, dest, port, exe });

  it('recognises the Service address of KUBERNETES_SERVICE_HOST:PORT and configured endpoints (any port)', () => {
    const det = createK8sSpreadDetector({}, env);
    expect(runDetector(det, [token(0), connect(3, '10.96.0.1', 443)]).findings.map((f) => [f.rule, f.priority, f.fields['k8s_spread.contact']])).toEqual([[K8S_SPREAD_RULES.token, 'Error', 'connect']]);
    expect(runDetector(det, [token(0), connect(3, '192.168.10.5', 6443)]).findings).toHaveLength(1);
    expect(runDetector(det, [token(0), connect(3, '10.96.0.1', 80)]).findings).toEqual([]); // another port of the Service IP
    expect(runDetector(createK8sSpreadDetector(), [token(0), connect(3, '10.96.0.1', 443)]).findings).toEqual([]); // nothing known
  });

  it('learns the API-server destinations of the official alert and recognises them later in plain connects', () => {
    const { findings } = runDetector(createK8sSpreadDetector(), [
      sig({ kind: 'k8s_api_contact', t: 0, container: 'other', dest: '172.18.0.2', port: 6443 }),
      token(100),
      connect(101, '172.18.0.2', 6443),
    ]);
    expect(findings.map((f) => f.fields['k8s_spread.dest'])).toEqual(['172.18.0.2']);
  });

  it('an in-cluster client reading its own token and calling the API is Notice; another program, a tool, or a shell-read token raise it', () => {
    const det = () => createK8sSpreadDetector({}, env);
    const ctl = '/app/cmd/controller/controller';
    expect(runDetector(det(), [token(0, ctl, 'controller'), connect(1, '10.96.0.1', 443, ctl)]).findings.map((f) => f.priority)).toEqual(['Notice']);
    expect(runDetector(det(), [token(0, ctl, 'controller'), connect(1, '10.96.0.1', 443, '/app/other')]).findings.map((f) => f.priority)).toEqual(['Warning']);
    expect(runDetector(det(), [token(0, ctl, 'controller'), connect(1, '10.96.0.1', 443, '/tmp/kubectl')]).findings.map((f) => f.priority)).toEqual(['Warning']);
    expect(runDetector(det(), [token(0, '/bin/cat', 'cat'), connect(1, '10.96.0.1', 443, ctl)]).findings.map((f) => f.priority)).toEqual(['Error']);
  });
});
