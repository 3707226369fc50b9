import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    // Tests talk to loopback only: no reverse-DNS lookups through the machine's resolver (the
    // companion CLIs the tests start inherit this; rDNS tests use their own dnsmasq on 127.0.0.1).
    env: { FALCO_COMPANION_ENRICH_EGRESS_RDNS_ENABLED: 'false' },
    // The JSON report is what .ci/run counts ("N passed, N failed").
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results.json' },
  },
});
