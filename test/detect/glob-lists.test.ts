import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileGlob, compileGlobs } from '../../src/detect/suppress.js';

describe('compileGlobs (one regular expression per glob list)', () => {
  it('matches exactly when one of the globs matches on its own', () => {
    const ch = fc.constantFrom('a', 'b', '/', '.', '*', '?', '-', '\n', '(', '$', '\\');
    const glob = fc.array(ch, { maxLength: 8 }).map((xs) => xs.join(''));
    const text = fc.array(fc.constantFrom('a', 'b', '/', '.', '-', '\n', '(', '$', '\\', 'x'), { maxLength: 12 }).map((xs) => xs.join(''));
    fc.assert(
      fc.property(fc.array(glob, { maxLength: 5 }), text, (globs, s) => {
        const one = globs.some((g) => compileGlob(g)(s));
        expect(compileGlobs(globs)(s), `${JSON.stringify(globs)} ~ ${JSON.stringify(s)}`).toBe(one);
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps the shipped shapes', () => {
    const m = compileGlobs(['*/dhclient', '*kube-proxy*', 'docker.io/*', 'a*b*c', 'exact']);
    expect(m('/sbin/dhclient')).toBe(true);
    expect(m('/sbin/dhclient6')).toBe(false);
    expect(m('registry.k8s.io/kube-proxy:v1')).toBe(true);
    expect(m('docker.io/library/x')).toBe(true);
    expect(m('aXbYc')).toBe(true);
    expect(m('exact')).toBe(true);
    expect(m('exactly')).toBe(false);
    expect(compileGlobs([])('anything')).toBe(false);
  });
});
