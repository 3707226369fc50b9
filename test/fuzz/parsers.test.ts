/**
 * Fuzzing every parser of untrusted input (docs/security-parsers.md). `npm test` runs a short pass
 * of each target; `npm run fuzz` runs 10^5 cases per target and records the results.
 */
import { describe, it } from 'vitest';
import { fuzz, runsFor, type FuzzTarget } from './harness.js';
import { grpcMessages } from './targets/grpc.js';
import { jsonLines } from './targets/lines.js';
import { addresses, fdNames, globLists } from './targets/net.js';
import { firewallCmdlines, intelLists, reportEscaping } from './targets/text.js';
import { caseYaml, configYaml, rulesYaml } from './targets/yaml.js';
import { redaction } from './targets/redact.js';
import { httpBody, limitsTarget, losslessJson, rfc3339Times } from './targets/http.js';

const targets: FuzzTarget<never>[] = [httpBody, losslessJson, limitsTarget, rfc3339Times, grpcMessages, jsonLines, addresses, globLists, fdNames, firewallCmdlines, intelLists, reportEscaping, configYaml, rulesYaml, caseYaml, redaction] as unknown as FuzzTarget<never>[];

describe('fuzz: parsers of untrusted input', () => {
  for (const t of targets) {
    it(`${t.name} (${runsFor(t)} cases)`, async () => {
      await fuzz(t);
    }, process.env['FUZZ_RUNS'] ? 0 : 60_000);
  }
});
