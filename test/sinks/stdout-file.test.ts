import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import { StoppedError } from '../../src/errors.js';
import { LosslessNumber, parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { FileSink } from '../../src/sinks/file.js';
import { StdoutSink } from '../../src/sinks/stdout.js';

function alert(i: number): Alert {
  return createAlert({
    time: '2023-11-14T22:13:20.123456789Z',
    rule: 'Test rule',
    priority: 'Notice',
    outputFields: { seq: i, 'evt.time': new LosslessNumber('1700000000123456789') },
    origin: { kind: 'test', component: 'test' },
  });
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A writable that holds writes until released (tiny highWaterMark: back-pressure at once). */
class SlowStream extends Writable {
  readonly lines: string[] = [];
  private held: (() => void)[] = [];
  constructor() {
    super({ highWaterMark: 16 });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.lines.push(chunk.toString());
    this.held.push(() => cb());
  }
  release(): void {
    for (const h of this.held.splice(0)) h();
  }
}

describe('StdoutSink', () => {
  it('writes one JSON line per alert, big integers exact', async () => {
    const out: string[] = [];
    const stream = new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) });
    const sink = new StdoutSink({ logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), stream });
    await sink.start();
    await sink.write(alert(1));
    await sink.write(alert(2));
    await sink.stop(Date.now() + 1000);
    const lines = out.join('').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('"evt.time":1700000000123456789');
    expect((parse(lines[1] as string) as { rule: string }).rule).toBe('Test rule');
    await expect(sink.write(alert(3))).rejects.toBeInstanceOf(StoppedError);
  });

  it('waits for drain when the stream pushes back', async () => {
    const stream = new SlowStream();
    const sink = new StdoutSink({ logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), stream });
    await sink.start();
    let done = false;
    const w = sink.write(alert(1)).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    expect(sink.pending()).toBe(1);
    stream.release();
    await w;
    expect(done).toBe(true);
    expect(sink.pending()).toBe(0);
  });
});

describe('FileSink', () => {
  it('appends JSON lines, reopens for rotation, flushes on stop', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-file-'));
    dirs.push(dir);
    const path = join(dir, 'alerts.jsonl');
    const sink = new FileSink({ config: { path }, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    await expect(sink.write(alert(0))).rejects.toThrow(/not started/);
    await sink.start();
    for (let i = 0; i < 3; i++) await sink.write(alert(i));
    renameSync(path, path + '.1'); // logrotate moves the file...
    await sink.write(alert(3)); // ...lines still go to the old inode until reopen
    await sink.reopen();
    for (let i = 4; i < 6; i++) await sink.write(alert(i));
    await sink.stop(Date.now() + 2000);
    const seq = (f: string) =>
      readFileSync(f, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (parse(l) as { output_fields: { seq: number } }).output_fields.seq);
    expect(seq(path + '.1')).toEqual([0, 1, 2, 3]);
    expect(seq(path)).toEqual([4, 5]);
    expect(readFileSync(path, 'utf8')).toContain('"evt.time":1700000000123456789');
  });

  it('appends to an existing file and fails clearly when the directory is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-file-'));
    dirs.push(dir);
    const path = join(dir, 'a.jsonl');
    for (let round = 0; round < 2; round++) {
      const sink = new FileSink({ config: { path }, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
      await sink.start();
      await sink.write(alert(round));
      await sink.stop(Date.now() + 1000);
    }
    expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(2);
    const bad = new FileSink({ config: { path: join(dir, 'missing', 'x.jsonl') }, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    await expect(bad.start()).rejects.toThrow(/cannot open/);
  });
});
