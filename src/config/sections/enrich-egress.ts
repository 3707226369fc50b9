/** Egress destination enricher settings (src/enrich/egress.ts). */
import { bool, obj } from '../dsl.js';

export const egressEnrichSection = obj('Egress destination classification, reverse DNS, ASN, threat intel, baseline.', {
  enabled: bool('Classify destinations.', true),
});
