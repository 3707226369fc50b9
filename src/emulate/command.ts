/**
 * `falco-companion emulate list | run <scenario>`: adversary emulation on this node (see
 * docs/emulation.md). Exit codes: 0 pass; 1 the scenario failed (a step, a footprint check,
 * cleanup); 2 it could not start (usage, preflight, helper missing); 3 the companion did not
 * report the declared detections (--verify); 130 / 143 interrupted (after cleanup).
 */
import type { Argv } from 'yargs';
import { errorMessage } from '../errors.js';
import { formatList, formatMarkdown, formatRun } from './report.js';
import type { RunOptions } from './context.js';
import { runScenario } from './run.js';
import { SCENARIOS, scenarioByName } from './scenarios.js';
import { verifyRun, type VerifyReport } from './verify.js';

interface EmulateFlags {
  action: string;
  scenario?: string;
  json?: boolean;
  markdown?: boolean;
  verify?: string;
  'verify-wait'?: number;
  timeout?: number;
  delay?: number;
  fast?: boolean;
  count?: number;
  interval?: number;
  jitter?: number;
  docker?: boolean;
  image?: string;
  socket?: string;
  helper?: string;
  iptables?: string;
  'api-server'?: string;
  'runtime-socket'?: string;
  registry?: string;
  'container-id'?: string;
  quiet?: boolean;
}

const PREFLIGHT_CODES = new Set(['E_EMULATE_PREFLIGHT', 'E_EMULATE_HELPER', 'E_EMULATE_SCENARIO', 'E_EMULATE_UNSAFE']);

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

export async function runEmulateCommand(f: EmulateFlags): Promise<number> {
  if (f.action === 'list') {
    out(f.json ? JSON.stringify(SCENARIOS, null, 2) : f.markdown ? formatMarkdown(SCENARIOS) : formatList(SCENARIOS));
    return 0;
  }
  const s = f.scenario ? scenarioByName(f.scenario) : undefined;
  if (!s) {
    process.stderr.write(`falco-companion emulate: ${f.scenario ? `unknown scenario ${f.scenario}` : 'name a scenario'}; one of: ${SCENARIOS.map((x) => x.name).join(', ')}\n`);
    return 2;
  }
  const ac = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      process.stderr.write(`falco-companion emulate: ${sig}: stopping and cleaning up\n`);
      ac.abort(sig);
    } else if (signals >= 3) {
      process.stderr.write('falco-companion emulate: third signal: exiting without finishing cleanup\n');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
  };
  const onInt = (): void => onSignal('SIGINT');
  const onTerm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  const progress = f.quiet ? undefined : (line: string): void => void process.stderr.write(`${line}\n`);
  const opts: RunOptions = {
    scenario: s,
    signal: ac.signal,
    ...(f.timeout !== undefined ? { timeoutS: f.timeout } : {}),
    ...(f.delay !== undefined ? { delayMs: Math.round(f.delay * 1000) } : {}),
    ...(f.fast ? { fast: true } : {}),
    ...(f.count !== undefined ? { count: f.count } : {}),
    ...(f.interval !== undefined ? { intervalMs: Math.round(f.interval * 1000) } : {}),
    ...(f.jitter !== undefined ? { jitterPct: f.jitter } : {}),
    ...(f.docker || s.where === 'docker-registry' ? { docker: { socket: f.socket ?? '/var/run/docker.sock', image: f.image ?? '' } } : {}),
    ...(f.helper ? { helper: f.helper } : {}),
    ...(f.iptables ? { iptables: f.iptables } : {}),
    ...(f['api-server'] ? { apiServer: f['api-server'] } : {}),
    ...(f['runtime-socket'] ? { runtimeSocket: f['runtime-socket'] } : {}),
    ...(f.registry ? { registry: f.registry } : {}),
    ...(f['container-id'] ? { containerId: f['container-id'] } : {}),
    ...(progress ? { progress } : {}),
  };
  try {
    const report = await runScenario(opts);
    let verify: VerifyReport | null = null;
    if (f.verify && !ac.signal.aborted && (report.ok || report.error?.code === 'E_EMULATE_FOOTPRINT')) {
      verify = await verifyRun({ url: f.verify, waitS: f['verify-wait'] ?? 30, scenario: s, report, signal: ac.signal, ...(progress ? { progress } : {}) });
    }
    out(f.json ? JSON.stringify({ scenario: s.name, report, verify }, null, 2) : formatRun(s, report, verify));
    if (ac.signal.aborted) return ac.signal.reason === 'SIGINT' ? 130 : 143;
    if (!report.ok) return report.error && PREFLIGHT_CODES.has(report.error.code) ? 2 : 1;
    if (verify && !verify.ok) return 3;
    return 0;
  } catch (err) {
    process.stderr.write(`falco-companion emulate: ${errorMessage(err)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

/** The `emulate` command as a yargs command module: register with `.command(emulateCommand)`. */
export const emulateCommand = {
  command: 'emulate <action> [scenario]',
  describe: 'Adversary emulation on this node: list | run <scenario> [--docker] [--verify URL] (docs/emulation.md)',
  builder: (c: Argv): Argv =>
    c
      .positional('action', { type: 'string', choices: ['list', 'run'], demandOption: true })
      .positional('scenario', { type: 'string', describe: 'Scenario name (see `emulate list`)' })
      .options({
        json: { type: 'boolean', default: false, describe: 'JSON output (list: the declarations; run: the report)' },
        markdown: { type: 'boolean', default: false, describe: 'list: the scenarios as Markdown (the Scenarios section of docs/emulation.md)' },
        verify: { type: 'string', describe: 'Companion operations URL (http://HOST:2805, or the receiver port when it is on loopback): check that the declared detections arrived' },
        'verify-wait': { type: 'number', describe: 'Seconds to wait for the detections (default 30)' },
        timeout: { type: 'number', describe: 'Bound on the whole run, seconds (default per scenario)' },
        delay: { type: 'number', describe: 'socket-filter-host: seconds between arming and trigger (default 2)' },
        fast: { type: 'boolean', default: false, describe: 'beacon / metrics-scraper: 1 s cadence, few repetitions (tests)' },
        count: { type: 'number', describe: 'beacon: connects; metrics-scraper: rounds' },
        interval: { type: 'number', describe: 'beacon / metrics-scraper: seconds between repetitions' },
        jitter: { type: 'number', describe: 'beacon: jitter in percent of the interval' },
        docker: { type: 'boolean', default: false, describe: 'Run the helper in a throwaway container (--network none) through the Docker Engine API' },
        image: { type: 'string', describe: '--docker: image to run (needs /bin/sh; the helper is mounted in); unexpected-image: the base image' },
        socket: { type: 'string', describe: 'Docker Engine API socket (default /var/run/docker.sock)' },
        helper: { type: 'string', describe: 'Path of the native helper (default: native/build/fc-emulate, $FC_EMULATE_HELPER, the image’s copy)' },
        iptables: { type: 'string', describe: 'iptables binary the helper runs (port-knock, kube-proxy-sync)' },
        'api-server': { type: 'string', describe: 'escape-attempts: API-server HOST:PORT (default $KUBERNETES_SERVICE_HOST:PORT, else 127.0.0.1:6443)' },
        'runtime-socket': { type: 'string', describe: 'escape-attempts: runtime socket path (default /var/run/docker.sock)' },
        registry: { type: 'string', describe: 'unexpected-image: registry HOST:PORT (default 127.0.0.1:5000)' },
        'container-id': { type: 'string', describe: 'This container’s id, when it cannot be detected (for --verify)' },
        quiet: { type: 'boolean', default: false, describe: 'No progress lines on stderr' },
      }) as unknown as Argv,
  handler: (a: unknown): Promise<void> =>
    runEmulateCommand(a as EmulateFlags).then((code) => {
      process.exitCode = code;
    }),
};
