import { describe, expect, it } from 'vitest';
import type { FieldValue } from '../../src/alert.js';
import { compileMapping } from '../../src/detect/mapping.js';
import { loadRulesFile } from '../../src/detect/rules/load.js';
import { podLabelKeys, Suppression } from '../../src/detect/suppress.js';
import type { Signal } from '../../src/detect/types.js';
import { alertAt } from './helpers.js';

const CONNECT = 'Companion signal: outbound connection from container';

/** Signals of one alert under these rules, and the rules' suppression. */
function setup(suppress: string): { signal: (rule: string, fields: Record<string, FieldValue>) => Signal; s: Suppression } {
  const rules = loadRulesFile('/r.yaml', { text: `extends: builtin\nsuppress:\n${suppress}` });
  const mapping = compileMapping(rules.signals, { podLabelKeys: podLabelKeys(rules.suppress) });
  return {
    signal: (rule, fields) => {
      const [sig] = mapping.mapAlert(alertAt(7200, rule, fields));
      if (!sig) throw new Error(`no signal for ${rule}`);
      return sig;
    },
    s: new Suppression(rules.suppress),
  };
}

describe('suppression', () => {
  it('an allowlist dest_cidr holds the IPv4-mapped forms of its addresses (one parser for detection and enrichment)', () => {
    const { signal, s } = setup('  allow:\n    - {name: corp, detectors: [beacon], dest_cidr: 1.2.3.0/24}\n');
    for (const dst of ['1.2.3.4', '::ffff:1.2.3.4', '::ffff:0102:0304']) {
      const sig = signal(CONNECT, { 'fd.name': `10.0.0.5:40000->${dst.includes(':') ? `[${dst}]` : dst}:443` });
      expect(sig.net.remoteIp, dst).toBe('1.2.3.4');
      expect(s.signal(sig, 'beacon'), dst).toBe('allowlist');
    }
    expect(s.signal(signal(CONNECT, { 'fd.name': '10.0.0.5:40000->1.2.4.1:443' }), 'beacon')).toBeNull();
    expect(s.signal(signal(CONNECT, { 'fd.sip': '::ffff:0102:0304', 'fd.sport': 443 }), 'beacon')).toBe('allowlist');
    // Another detector: not this entry.
    expect(s.signal(signal(CONNECT, { 'fd.name': '10.0.0.5:40000->1.2.3.4:443' }), 'socket_filter')).toBeNull();
  });

  it('selects on pod labels and ancestors the mapping put on the signal', () => {
    const { signal, s } = setup(
      [
        '  allow:',
        '    - {name: by-label, detectors: [socket_filter], pod_labels: {team: "net*"}}',
        '    - {name: by-parent, detectors: [knock], ancestor: ["*/supervisor"]}',
        '  ci:',
        '    workloads: [{pod_labels: {app.kubernetes.io/component: runner}}]',
        '    detectors: [beacon]',
      ].join('\n') + '\n',
    );
    const direct = signal(CONNECT, { 'k8s.pod.label[team]': 'netops' });
    expect(direct.podLabels).toEqual({ team: 'netops' });
    expect(s.signal(direct, 'socket_filter')).toBe('allowlist');
    const listed = signal(CONNECT, { 'k8s.pod.labels': 'app.kubernetes.io/component:runner, team:web' });
    expect(listed.podLabels).toEqual({ team: 'web', 'app.kubernetes.io/component': 'runner' });
    expect(s.signal(listed, 'socket_filter')).toBeNull();
    expect(s.signal(listed, 'beacon')).toBe('ci_workload');
    const child = signal(CONNECT, { 'proc.pname': 'sh', 'proc.aexepath[2]': '/usr/bin/supervisor' });
    expect(child.proc.ancestors).toEqual(['sh', '/usr/bin/supervisor']);
    expect(s.signal(child, 'knock')).toBe('allowlist');
    expect(s.signal(signal(CONNECT, { 'proc.pname': 'sh' }), 'knock')).toBeNull();
  });

  it('learning periods run on event time from the first signal', () => {
    const { s } = setup('  learning: {knock: 1h}\n');
    const first = 1_000_000_000_000n;
    expect(s.learning('knock', first, first + 3_599_000_000_000n)).toBe(true);
    expect(s.learning('knock', first, first + 3_600_000_000_000n)).toBe(false);
    expect(s.learning('beacon', first, first)).toBe(false);
  });
});
