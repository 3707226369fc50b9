// Converts scenario folders in the older layout (alerts.jsonl, enrichment.json, expected.json) into
// detection test cases (case.yaml, docs/testing-detections.md). Needs a build (npm run build).
//   node scripts/convert-scenarios.mjs [SRC_DIR] [OUT_DIR] [--force]
// Defaults: test/fixtures/scenarios → examples/detection-tests. Prints each case written.
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { convertLegacy, LEGACY_EXPECTED } from '../dist/src/cases/load.js';

const args = process.argv.slice(2).filter((a) => a !== '--force');
const force = process.argv.includes('--force');
const src = args[0] ?? 'test/fixtures/scenarios';
const out = args[1] ?? 'examples/detection-tests';
let n = 0;
for (const e of readdirSync(src, { withFileTypes: true })) {
  if (!e.isDirectory() || !existsSync(join(src, e.name, LEGACY_EXPECTED))) continue;
  const file = convertLegacy(join(src, e.name), out, force);
  if (file) {
    console.log(file);
    n++;
  } else console.log(`${join(out, e.name)}: exists (use --force to overwrite)`);
}
console.log(`${n} case(s) written to ${out}`);
