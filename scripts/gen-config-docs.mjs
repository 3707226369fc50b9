// Regenerates docs/config.md and docker/config.example.yaml from the compiled schema.
import { writeFileSync } from 'node:fs';
import { configSchema } from '../dist/src/config/schema.js';
import { renderExampleYaml, renderMarkdown } from '../dist/src/config/render.js';
writeFileSync(new URL('../docs/config.md', import.meta.url), renderMarkdown(configSchema));
writeFileSync(new URL('../docker/config.example.yaml', import.meta.url), renderExampleYaml(configSchema));
console.log('wrote docs/config.md and docker/config.example.yaml');
