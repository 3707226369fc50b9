/**
 * Headless Chromium (Debian `chromium`, /usr/bin/chromium) driven over the DevTools protocol on a
 * pipe (`--remote-debugging-pipe`: fd 3 to the browser, fd 4 from it, NUL-terminated JSON), so no
 * browser download, no npm package and no port. Every request the page makes is seen (Network
 * events) and every one but the page itself is failed before it leaves (Fetch interception); the
 * browser resolves no host name at all. Every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p)) ?? null;

type Json = Record<string, unknown>;

interface Pending {
  resolve(v: Json): void;
  reject(e: Error): void;
}

export interface PageVisit {
  /** Every URL the page asked for (the page itself first). */
  readonly requests: readonly string[];
  /** Requests other than the page (failed before they left). */
  readonly blocked: readonly string[];
  /** Console messages and uncaught exceptions of the page. */
  readonly console: readonly string[];
  /** Evaluate an expression in the page (returned by value). */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the whole page at `width` CSS pixels (its top `maxHeight` pixels when given). */
  screenshot(width?: number, maxHeight?: number): Promise<Buffer>;
}

export class Chromium {
  private readonly child: ChildProcess;
  private readonly out: Writable;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(m: Json) => void>();
  private readonly profile: string;
  private closed = false;

  private constructor(executable: string) {
    this.profile = mkdtempSync(join(tmpdir(), 'fc-chromium-'));
    this.child = spawn(
      executable,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-default-apps',
        '--disable-extensions',
        '--mute-audio',
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        `--user-data-dir=${this.profile}`,
        '--remote-debugging-pipe',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    this.out = this.child.stdio[3] as Writable;
    const input = this.child.stdio[4] as Readable;
    let buf = Buffer.alloc(0);
    input.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let i: number;
      while ((i = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, i).toString('utf8')) as Json;
        buf = buf.subarray(i + 1);
        const id = msg['id'];
        if (typeof id === 'number' && this.pending.has(id)) {
          const p = this.pending.get(id) as Pending;
          this.pending.delete(id);
          if (msg['error']) p.reject(new Error(`CDP: ${JSON.stringify(msg['error'])}`));
          else p.resolve((msg['result'] ?? {}) as Json);
        } else for (const l of this.listeners) l(msg);
      }
    });
    this.child.once('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  static async launch(): Promise<Chromium> {
    if (!CHROMIUM) throw new Error('chromium is not installed (Debian: apt-get install chromium)');
    const c = new Chromium(CHROMIUM);
    await c.send('Browser.getVersion', {}, undefined, 30_000);
    return c;
  }

  send(method: string, params: Json = {}, sessionId?: string, timeoutMs = 15_000): Promise<Json> {
    const id = this.nextId++;
    return new Promise<Json>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`CDP ${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
      this.out.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }

  /** Open `url` in a new tab, every request but the page blocked and recorded; resolves after the load event. */
  async visit(url: string, timeoutMs = 20_000): Promise<PageVisit> {
    const { targetId } = (await this.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
    const { sessionId } = (await this.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const requests: string[] = [];
    const blocked: string[] = [];
    const consoleLines: string[] = [];
    let loaded: () => void = () => undefined;
    const load = new Promise<void>((r) => (loaded = r));
    const onEvent = (m: Json): void => {
      if (m['sessionId'] !== sessionId) return;
      const p = (m['params'] ?? {}) as Json;
      switch (m['method']) {
        case 'Network.requestWillBeSent':
          requests.push(String((p['request'] as Json)['url']));
          break;
        case 'Fetch.requestPaused': {
          const reqUrl = String((p['request'] as Json)['url']);
          if (reqUrl === url) void this.send('Fetch.continueRequest', { requestId: p['requestId'] }, sessionId);
          else {
            blocked.push(reqUrl);
            void this.send('Fetch.failRequest', { requestId: p['requestId'], errorReason: 'BlockedByClient' }, sessionId);
          }
          break;
        }
        case 'Runtime.consoleAPICalled':
          consoleLines.push(`console.${String(p['type'])}`);
          break;
        case 'Runtime.exceptionThrown':
          consoleLines.push(`exception: ${JSON.stringify(p['exceptionDetails'])}`);
          break;
        case 'Page.javascriptDialogOpening':
          consoleLines.push(`dialog: ${String(p['message'])}`);
          void this.send('Page.handleJavaScriptDialog', { accept: false }, sessionId);
          break;
        case 'Page.loadEventFired':
          loaded();
          break;
      }
    };
    this.listeners.add(onEvent);
    await this.send('Network.enable', {}, sessionId);
    await this.send('Fetch.enable', { patterns: [{ urlPattern: '*' }] }, sessionId);
    await this.send('Runtime.enable', {}, sessionId);
    await this.send('Page.enable', {}, sessionId);
    await this.send('Page.navigate', { url }, sessionId);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([load, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${url}: not loaded within ${timeoutMs} ms`)), timeoutMs)))]);
    clearTimeout(t);
    const evaluate = async <T>(expression: string): Promise<T> => {
      const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true }, sessionId)) as { result: { value: T }; exceptionDetails?: unknown };
      if (r.exceptionDetails) throw new Error(`evaluate ${expression}: ${JSON.stringify(r.exceptionDetails)}`);
      return r.result.value;
    };
    const screenshot = async (width = 1040, maxHeight = 16_000): Promise<Buffer> => {
      await this.send('Emulation.setScrollbarsHidden', { hidden: true }, sessionId);
      await this.send('Emulation.setDeviceMetricsOverride', { width, height: 800, deviceScaleFactor: 1, mobile: false }, sessionId);
      const height = Math.min(maxHeight, Math.ceil(await evaluate<number>('document.documentElement.scrollHeight')));
      await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false }, sessionId);
      const r = (await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false }, sessionId, 30_000)) as { data: string };
      return Buffer.from(r.data, 'base64');
    };
    return { requests, blocked, console: consoleLines, evaluate, screenshot };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exited = new Promise<void>((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', () => r())));
    try {
      await this.send('Browser.close', {}, undefined, 5000);
    } catch {
      // fall through to the kill below
    }
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
    rmSync(this.profile, { recursive: true, force: true });
  }
}
