import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { renderExampleYaml, renderMarkdown } from '../../src/config/render.js';
import { configProblems } from '../support/config-problems.js';
import { parseDuration, parseSize } from '../../src/config/dsl.js';

const load = (text: string, env: Record<string, string> = {}, overrides: Record<string, unknown> = {}): Config =>
  loadConfig<Config>(configSchema, { file: 'test.yaml', text, env, overrides });

const problems = (text: string, env: Record<string, string> = {}): string[] => configProblems(() => load(text, env));

describe('config', () => {
  it('gives defaults for an empty file', () => {
    const c = load('');
    expect(c.http.listen).toBe('0.0.0.0:2804');
    expect(c.grpc.address).toBe('unix:///run/falco/falco.sock');
    expect(c.grpc.mode).toBe('sub');
    expect(c.route.min_priority).toBe('Debug');
    expect(c.sinks.falcosidekick.url).toBeNull();
    expect(Object.isFrozen(c.http)).toBe(true);
  });

  it('parses durations, sizes and case-insensitive priorities', () => {
    const c = load('http:\n  max_body_bytes: 2MiB\n  header_timeout: 2s\nroute:\n  min_priority: warning\n');
    expect(c.http.max_body_bytes).toBe(2 * 1024 * 1024);
    expect(c.http.header_timeout).toBe(2000);
    expect(c.route.min_priority).toBe('Warning');
  });

  it('reports every problem at once with file:line:col', () => {
    const text = ['http:', '  listen: nowhere', '  max_body_bytes: lots', 'grpc:', '  mode: stream', 'sinkz: {}', 'route:', '  min_priority: Loud'].join('\n');
    const p = problems(text);
    expect(p).toHaveLength(5);
    expect(p[0]).toMatch(/^test\.yaml:6:1: sinkz: unknown key/);
    expect(p.find((x) => x.includes('http.listen'))).toMatch(/^test\.yaml:2:11: http\.listen: must be HOST:PORT/);
    expect(p.find((x) => x.includes('max_body_bytes'))).toMatch(/^test\.yaml:3:19: /);
    expect(p.find((x) => x.includes('grpc.mode'))).toMatch(/^test\.yaml:5:9: grpc\.mode: must be one of sub, get/);
    expect(p.find((x) => x.includes('min_priority'))).toMatch(/^test\.yaml:8:17: /);
  });

  it('reports YAML syntax errors with a position', () => {
    const p = problems('http:\n  listen: [unclosed\n');
    expect(p[0]).toMatch(/^test\.yaml:\d+:\d+: /);
  });

  it('suggests the right key for a near miss', () => {
    expect(problems('http:\n  maxbodybytes: 1\n')[0]).toMatch(/did you mean "max_body_bytes"/);
  });

  it('lets environment variables override the file, and flags override both', () => {
    const env = { FALCO_COMPANION_HTTP_LISTEN: '127.0.0.1:9000', FALCO_COMPANION_ROUTE_EXCLUDE_RULES: 'a, b', FALCO_COMPANION_GRPC_ENABLED: 'true' };
    const c = load('http:\n  listen: 127.0.0.1:1\n', env);
    expect(c.http.listen).toBe('127.0.0.1:9000');
    expect(c.route.exclude_rules).toEqual(['a', 'b']);
    expect(c.grpc.enabled).toBe(true);
    const f = load('http:\n  listen: 127.0.0.1:1\n', env, { 'http.listen': '127.0.0.1:2' });
    expect(f.http.listen).toBe('127.0.0.1:2');
  });

  it('names the variable when an environment value is bad', () => {
    expect(problems('', { FALCO_COMPANION_QUEUE_MAX_ALERTS: 'many' })[0]).toMatch(/environment FALCO_COMPANION_QUEUE_MAX_ALERTS/);
  });

  it('parses duration and size units', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('5 parsecs')).toBeNull();
    expect(parseSize('512KiB')).toBe(524288);
    expect(parseSize('1MB')).toBe(1_000_000);
    expect(parseSize('-1')).toBeNull();
  });

  it('ships an example config and a reference that match the schema', () => {
    const example = readFileSync('docker/config.example.yaml', 'utf8');
    expect(example, 'docker/config.example.yaml is stale: run npm run docs:config').toBe(renderExampleYaml(configSchema));
    expect(readFileSync('docs/config.md', 'utf8'), 'docs/config.md is stale: run npm run docs:config').toBe(renderMarkdown(configSchema));
    expect(() => loadConfig(configSchema, { file: 'docker/config.example.yaml', env: {} })).not.toThrow();
  });
});
