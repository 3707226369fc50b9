/**
 * The configuration schema: the single source of truth for types, defaults, env variables
 * (FALCO_COMPANION_<SECTION>_<KEY>) and docs. Sections live in ./sections/.
 */
import { obj, str, type Infer } from './dsl.js';
import { grpcSection, httpSection, inputSection, logSection, opsSection, queueSection, routeSection, shutdownSection, sinksSection } from './sections/core.js';
import { enrichSection } from './sections/enrich.js';
import { detectSection } from './sections/detect.js';
import { spoolSection } from './sections/spool.js';
import { metricsSection } from './sections/metrics.js';
import { storeSection } from './sections/store.js';
import { journalSection } from './sections/journal.js';
import { limitsSection, redactSection } from './sections/limits.js';

export const configSchema = obj('falco-companion configuration', {
  state_dir: str('Directory for the state database (spool, baselines, image history).', '/var/lib/falco-companion'),
  log: logSection,
  http: httpSection,
  ops: opsSection,
  grpc: grpcSection,
  input: inputSection,
  queue: queueSection,
  enrich: enrichSection,
  detect: detectSection,
  metrics: metricsSection,
  route: routeSection,
  sinks: sinksSection,
  spool: spoolSection,
  store: storeSection,
  journal: journalSection,
  limits: limitsSection,
  redact: redactSection,
  shutdown: shutdownSection,
});

export type Config = Infer<typeof configSchema>;
