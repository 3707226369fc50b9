/**
 * The bundled demo alert stream: realistic Falco 0.42-format JSON alerts (one per line, keys
 * alphabetical, 9-digit times within two minutes of 2026-03-02T10:00:00Z) that `falco-companion demo`
 * replays through the built-in emulator. The file lives in `data/` next to this module; the build
 * copies src/emulator/data to dist/src/emulator/data (scripts/copy-assets.mjs).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DEMO_STREAM_FILE = 'demo-stream.jsonl';

/** Absolute path of the bundled demo stream (resolved relative to this module). */
export function demoStreamPath(): string {
  return fileURLToPath(new URL(`./data/${DEMO_STREAM_FILE}`, import.meta.url));
}

/** The demo alerts as JSON text lines (no blank lines, no trailing newline), in time order. */
export function loadDemoStream(path: string = demoStreamPath()): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
    .filter((l) => l.trim() !== '');
}

export const DEMO_ATTACKS_FILE = 'demo-attacks.jsonl';

export interface DemoScenario {
  readonly name: string;
  readonly description: string;
  /** Falco JSON alert lines, in event-time order. */
  readonly alerts: readonly string[];
}

/**
 * The attack chains the demo replays after the plain stream: blocks headed by
 * `# scenario: <name>: <description>` lines (see scripts/gen-demo-attacks.mjs).
 */
export function loadDemoScenarios(path: string = fileURLToPath(new URL(`./data/${DEMO_ATTACKS_FILE}`, import.meta.url))): DemoScenario[] {
  const out: { name: string; description: string; alerts: string[] }[] = [];
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trimEnd();
    const m = /^# scenario: ([^:]+): (.*)$/.exec(line);
    if (m) out.push({ name: m[1] as string, description: m[2] as string, alerts: [] });
    else if (line.startsWith('{')) out.at(-1)?.alerts.push(line);
  }
  return out;
}

export const DEMO_RESOURCE_FILE = 'demo-resource.jsonl';

/** The bundled resource usage recording (src/resource/recording.ts format) the demo replays last. */
export function demoResourcePath(): string {
  return fileURLToPath(new URL(`./data/${DEMO_RESOURCE_FILE}`, import.meta.url));
}
