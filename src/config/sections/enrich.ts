/** Enrichment settings. Subsections are owned by their enrichers. */
import { bool, duration, obj } from '../dsl.js';
import { containerEnrichSection } from './enrich-container.js';
import { egressEnrichSection } from './enrich-egress.js';

export const enrichSection = obj('Enrichment: container/image history and egress destinations.', {
  enabled: bool('Run the enrichers.', true),
  budget: duration('Per-alert enrichment budget; on overrun the alert goes on with companion.enrich_error.', 50, { min: 1, max: 10_000 }),
  container: containerEnrichSection,
  egress: egressEnrichSection,
});
