/**
 * `falco-companion demo`: the embedded default. Starts the daemon and a built-in Falco emulator,
 * feeds a bundled realistic alert stream over gRPC (Falco 0.24–0.43 path) and HTTP (http_output,
 * the Falco 0.44+ path), prints what is forwarded (detections included) and exits 0 when every
 * alert went through.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Alert } from './alert.js';
import { systemClock } from './clock.js';
import { sleep } from './component.js';
import { configSchema, type Config } from './config/schema.js';
import { loadConfig } from './config/validate.js';
import { readFileSync } from 'node:fs';
import { demoResourcePath, loadDemoScenarios, loadDemoStream } from './emulator/demo-stream.js';
import { replayRecording } from './resource/recording.js';
import { analyserSettings } from './sources/metrics.js';
import { FalcoGrpcEmulator } from './emulator/falco-grpc.js';
import { postLikeFalco } from './emulator/http-poster.js';
import { createLogger, type LogLevel } from './logger.js';
import { Metrics } from './metrics.js';
import { buildApp } from './wiring.js';

const c = {
  dim: (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s),
  bold: (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s),
  red: (s: string) => (process.stdout.isTTY ? `\x1b[31m${s}\x1b[0m` : s),
};

function describe(a: Alert): string {
  const f = a.outputFields ?? {};
  const bits: string[] = [];
  const cid = f['container.id'];
  if (typeof cid === 'string' && cid !== '' && cid !== 'host') bits.push(`container=${cid}`);
  const img = a.companion['image.repository'] ?? f['container.image.repository'];
  if (typeof img === 'string' && img !== '') bits.push(`image=${img}`);
  const dest = a.companion['dest.ip'];
  if (typeof dest === 'string') bits.push(`dest=${dest}${a.companion['dest.class'] ? `(${String(a.companion['dest.class'])})` : ''}`);
  if (a.companion['score'] !== undefined) bits.push(`score=${String(a.companion['score'])}`);
  // A later detection of an incident: findings folded since its previous one.
  if (a.companion['repeated'] !== undefined) bits.push(`repeated ${String(a.companion['repeated'])}× since ${String(a.companion['repeated_since'] ?? 'its previous detection')}`);
  return bits.join(' ');
}

export async function runDemo(opts: { logLevel: string }): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'falco-companion-demo-'));
  const sock = `unix://${join(dir, 'falco.sock')}`;
  const emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.0', jsonOutput: true });
  await emulator.start();

  const config = loadConfig<Config>(configSchema, {
    file: null,
    env: {},
    overrides: {
      state_dir: join(dir, 'state'),
      'log.level': opts.logLevel,
      'http.listen': '127.0.0.1:0',
      'grpc.enabled': true,
      'grpc.address': sock,
      'grpc.request_interval': 50,
      'enrich.container.enabled': false,
      // The demo is self-contained: no lookups through the machine's DNS resolver.
      'enrich.egress.rdns.enabled': false,
      // It replays a recording of resource samples instead of sampling this machine's containers.
      'metrics.enabled': false,
    },
  });
  const logger = createLogger({ level: config.log.level as LogLevel });
  const metrics = new Metrics({ collectDefault: false });
  let forwarded = 0;
  let detections = 0;
  const byOrigin: Record<string, number> = {};
  const app = buildApp(config, {
    logger,
    metrics,
    clock: systemClock,
    onForwarded: (a) => {
      if (a.origin.kind === 'detector') {
        detections++;
        process.stdout.write(`${c.red(c.bold(`★ DETECTION ${a.priority.padEnd(8)}`))} ${c.bold(a.rule)}  ${c.dim(describe(a))}\n`);
        process.stdout.write(`  ${a.output}\n`);
      } else {
        forwarded++;
        byOrigin[a.origin.kind] = (byOrigin[a.origin.kind] ?? 0) + 1;
        process.stdout.write(`→ via ${a.origin.kind.padEnd(4)} ${a.priority.padEnd(13)} ${a.rule}  ${c.dim(describe(a))}\n`);
      }
    },
  });
  await app.start();
  const addr = app.httpAddress();
  if (!addr) throw new Error('demo: HTTP receiver did not start');
  const url = `http://127.0.0.1:${addr.port}/`;

  const stream = loadDemoStream();
  const scenarios = loadDemoScenarios();
  // A recording of resource samples and Falco alerts, run through the metrics source's analyser
  // (default settings, fresh baselines): its deviation signals are sent like the alerts.
  const mc = config.metrics;
  const resource = replayRecording(readFileSync(demoResourcePath(), 'utf8'), {
    analyser: analyserSettings(mc),
    baseline: { windowMs: mc.baseline.window, slots: mc.baseline.slots, learningPeriodMs: mc.baseline.learning_period, minSamples: mc.baseline.min_samples, maxKeys: mc.baseline.max_keys },
    logger,
    metrics,
    hostname: 'node-7',
  });
  const total = stream.length + scenarios.reduce((n, sc) => n + sc.alerts.length, 0) + resource.items.length;
  process.stdout.write(c.bold(`falco-companion demo: ${total} Falco alerts over gRPC (${sock}) and HTTP (${url})\n\n`));
  let sentHttp = 0;
  let sentGrpc = 0;
  const send = async (line: string, viaGrpc: boolean): Promise<void> => {
    if (viaGrpc) {
      emulator.push(line);
      sentGrpc++;
    } else {
      await postLikeFalco(url, line, { keepAlive: true });
      sentHttp++;
    }
  };
  /** Wait until nothing new has been printed for a while (bounded). */
  const settle = async (): Promise<void> => {
    const deadline = Date.now() + 3000;
    let seen = -1;
    while (Date.now() < deadline && seen !== forwarded + detections) {
      seen = forwarded + detections;
      await sleep(config.grpc.request_interval * 4);
    }
  };
  const waitForwarded = async (n: number, ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (forwarded < n && Date.now() < deadline) await sleep(20);
  };
  // 1. A plain stream of official-rule alerts, alternating between the two channels.
  for (let i = 0; i < stream.length; i++) await send(stream[i] as string, i % 2 === 0);
  await waitForwarded(stream.length, 20_000);
  // 2. Attack chains (and a benign look-alike): each sequence in order over one channel, since the
  //    detectors correlate in event-time order; the channels alternate between sequences.
  let expected = stream.length;
  for (const [i, sc] of scenarios.entries()) {
    process.stdout.write(`\n${c.bold(`# ${sc.name}`)} ${c.dim(`(${sc.alerts.length} alerts: ${sc.description})`)}\n`);
    for (const line of sc.alerts) await send(line, i % 2 === 0);
    expected += sc.alerts.length;
    await waitForwarded(expected, 20_000);
    await settle(); // let the detections this sequence completed print under its header
  }
  // 3. Resource usage: the recording's Falco alerts and the deviation signals found in its samples,
  //    in event-time order over HTTP.
  process.stdout.write(`\n${c.bold(`# ${resource.header.name}`)} ${c.dim(`(${resource.ticks} samples of every container and ${resource.items.filter((i) => i.kind === 'alert').length} Falco alert(s): ${resource.header.description})`)}\n`);
  for (const item of resource.items) await send(item.line, false);
  expected += resource.items.length;
  await waitForwarded(expected, 20_000);
  await settle();
  const lines = { length: total };
  await sleep(100);
  await app.stop(Date.now() + 5000);
  await emulator.stop();
  rmSync(dir, { recursive: true, force: true });

  const ok = forwarded === lines.length;
  process.stdout.write(
    `\n${c.bold('summary')}: ${lines.length} sent (${sentGrpc} gRPC, ${sentHttp} HTTP), ${forwarded} forwarded (${Object.entries(byOrigin)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ')}), ${detections} detections\n`,
  );
  if (!ok) process.stderr.write(`demo: only ${forwarded} of ${lines.length} alerts were forwarded\n`);
  if (detections === 0) process.stderr.write('demo: the attack chains produced no detection\n');
  return ok && detections > 0 ? 0 : 1;
}
