/** Container and image enricher settings (src/enrich/container.ts). */
import { bool, obj } from '../dsl.js';

export const containerEnrichSection = obj('Container and image history from the container runtime.', {
  enabled: bool('Look up containers and images.', true),
});
