/**
 * Replayable recordings of resource samples and Falco alerts (JSON lines, in event-time order):
 *
 *   # comment
 *   {"recording": {"name": "...", "description": "...", "interval": "10s"}}
 *   {"container": {"id": "<64 hex>", "name": "...", "image": "repo", "tag": "t", "namespace": "ns",
 *                  "pod": "pod", "container_name": "c", "started": "<RFC 3339>"}}
 *   {"tick": "<RFC 3339>", "samples": [{"id": "<id>", "cpu_ns": 1, "memory": 1, "pids": 1,
 *            "rx_bytes": 1, "tx_bytes": 1, "rx_packets": 1, "tx_packets": 1}, ...]}
 *   {"rule": "...", "time": "...", ...}        ← a Falco alert as Falco prints it
 *
 * {@link replayRecording} runs the ticks through the same analyser the live source uses (fresh
 * in-memory baselines, the given settings) and returns the Falco alert lines and the deviation
 * signal alerts it produces, in order: what the companion would have received live. Counter
 * fields may be omitted (not available from that source). `formatTick` writes ticks (recorders).
 */
import { parseTime, serializeAlert } from '../alert.js';
import { CompanionError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { ResourceAnalyser, type AnalyserSettings, type Reading } from './analyser.js';
import { ResourceBaselines, type BaselineSettings } from './baseline.js';
import { deviationAlert } from './signal.js';
import { emptyMeta, type ContainerMeta, type RawSample } from './types.js';

export interface RecordingHeader {
  readonly name: string;
  readonly description: string;
}

export interface ReplayItem {
  /** `alert`: a Falco alert line of the recording; `signal`: a deviation the analyser found. */
  readonly kind: 'alert' | 'signal';
  /** The Falco JSON line to feed the companion. */
  readonly line: string;
}

export interface Replay {
  readonly header: RecordingHeader;
  readonly items: ReplayItem[];
  readonly ticks: number;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

function bad(lineNo: number, msg: string): CompanionError {
  return new CompanionError('E_RECORDING', `recording line ${lineNo}: ${msg}`);
}

function metaOf(o: Obj, lineNo: number): ContainerMeta {
  const id = str(o['id']);
  if (!id) throw bad(lineNo, 'container without "id"');
  const started = str(o['started']);
  return {
    ...emptyMeta(id),
    name: str(o['name']),
    image: str(o['image']),
    tag: str(o['tag']),
    namespace: str(o['namespace']),
    pod: str(o['pod']),
    containerName: str(o['container_name']),
    hostNetwork: o['host_network'] === true,
    startedNs: started ? (parseTime(started)?.ns ?? null) : null,
  };
}

function sampleOf(o: Obj, timeNs: bigint, lineNo: number): RawSample {
  const id = str(o['id']);
  if (!id) throw bad(lineNo, 'sample without "id"');
  return {
    id,
    timeNs,
    source: 'recording',
    cpuNs: num(o['cpu_ns']),
    memoryBytes: num(o['memory']),
    pids: num(o['pids']),
    rxBytes: num(o['rx_bytes']),
    txBytes: num(o['tx_bytes']),
    rxPackets: num(o['rx_packets']),
    txPackets: num(o['tx_packets']),
  };
}

export interface ReplayOptions {
  readonly analyser: AnalyserSettings;
  readonly baseline: BaselineSettings;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly hostname?: string | null;
}

/** Replay a recording's text; throws E_RECORDING naming the line for anything it cannot read. */
export function replayRecording(text: string, o: ReplayOptions): Replay {
  const baselines = new ResourceBaselines({ settings: o.baseline, db: null, logger: o.logger, metrics: o.metrics });
  const analyser = new ResourceAnalyser(o.analyser, baselines);
  const metas = new Map<string, ContainerMeta>();
  const items: ReplayItem[] = [];
  let header: RecordingHeader = { name: 'recording', description: '' };
  let ticks = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const lineNo = i + 1;
    if (line === '' || line.startsWith('#')) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw bad(lineNo, 'not JSON');
    }
    if (!isObj(v)) throw bad(lineNo, 'not a JSON object');
    if (isObj(v['recording'])) {
      header = { name: str(v['recording']['name']) ?? header.name, description: str(v['recording']['description']) ?? '' };
    } else if (isObj(v['container'])) {
      const m = metaOf(v['container'], lineNo);
      metas.set(m.id, m);
    } else if (typeof v['tick'] === 'string') {
      const t = parseTime(v['tick']);
      if (!t) throw bad(lineNo, `"tick" is not an RFC 3339 time: ${JSON.stringify(v['tick']).slice(0, 40)}`);
      if (!Array.isArray(v['samples'])) throw bad(lineNo, '"samples" must be an array');
      const readings: Reading[] = v['samples'].filter(isObj).map((s) => {
        const sample = sampleOf(s, t.ns, lineNo);
        return { meta: metas.get(sample.id) ?? emptyMeta(sample.id), sample };
      });
      ticks++;
      for (const ev of analyser.tick(t.ns, readings)) {
        items.push({ kind: 'signal', line: serializeAlert(deviationAlert(ev, { hostname: o.hostname ?? null, origin: { kind: 'replay', component: 'resource/recording' } })) });
      }
    } else if (typeof v['rule'] === 'string') {
      items.push({ kind: 'alert', line });
    } else throw bad(lineNo, 'neither a recording header, a container, a tick nor a Falco alert');
  });
  return { header, items, ticks };
}

/** A tick line of a recording. */
export function formatTick(time: string, readings: readonly RawSample[]): string {
  const samples = readings.map((s) => {
    const o: Record<string, string | number> = { id: s.id };
    const put = (k: string, v: number | null): void => {
      if (v !== null) o[k] = Math.round(v);
    };
    put('cpu_ns', s.cpuNs);
    put('memory', s.memoryBytes);
    put('pids', s.pids);
    put('rx_bytes', s.rxBytes);
    put('tx_bytes', s.txBytes);
    put('rx_packets', s.rxPackets);
    put('tx_packets', s.txPackets);
    return o;
  });
  return JSON.stringify({ tick: time, samples });
}
