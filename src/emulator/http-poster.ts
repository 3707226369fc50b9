/**
 * Posts alerts the way Falco's `http_output` does (libcurl): one POST per alert,
 * `Content-Type: application/json`, the JSON line without its trailing newline, no batching,
 * no custom headers. Falco ignores the status code, and a refused connection or timeout simply
 * loses the alert: this helper therefore never throws, it returns what happened.
 */
import http from 'node:http';
import https from 'node:https';
import { stringify, type JsonValue } from '../json/lossless.js';

export interface PostLikeFalcoOptions {
  /** Reuse connections (Falco's `http_output.keep_alive`; default false: one connection per alert). */
  readonly keepAlive?: boolean;
  /** Give up after this long (curl timeout: the alert is lost). Default 5000 ms. */
  readonly timeoutMs?: number;
  /** A specific agent (e.g. mTLS client certificates, or a private keep-alive pool). */
  readonly agent?: http.Agent;
  /** Falco's `http_output.user_agent` (default `falcosecurity/falco`). */
  readonly userAgent?: string;
}

/** The status Falco would have ignored, or the error that lost the alert. */
export type PostResult = { readonly status: number; readonly error: null } | { readonly status: null; readonly error: string };

export function postLikeFalco(url: string, alertJsonText: string, opts: PostLikeFalcoOptions = {}): Promise<PostResult> {
  const body = Buffer.from(alertJsonText.replace(/\r?\n$/, ''), 'utf8');
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.resolve({ status: null, error: `invalid URL ${url}` });
  }
  const mod = target.protocol === 'https:' ? https : http;
  // Node's global agents keep connections alive; `false` opens one connection per request.
  const agent = opts.agent ?? (opts.keepAlive ? undefined : false);
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: PostResult): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = mod.request(
      target,
      {
        method: 'POST',
        agent,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': body.length,
          'User-Agent': opts.userAgent ?? 'falcosecurity/falco',
          Accept: '*/*',
          ...(opts.keepAlive ? {} : { Connection: 'close' }),
        },
      },
      (res) => {
        res.resume(); // body ignored, like Falco
        res.on('end', () => done({ status: res.statusCode ?? 0, error: null }));
        // The status arrived; a broken response body changes nothing for Falco.
        res.on('error', () => done({ status: res.statusCode ?? 0, error: null }));
      },
    );
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 5000} ms`)));
    req.on('error', (err) => done({ status: null, error: err.message }));
    req.end(body);
  });
}

/**
 * A Falco JSON alert line from parts, keys in current Falco's alphabetical order, big integers
 * exact (pass LosslessNumber for ns values). `time` defaults to now with 9 fractional digits.
 */
export function falcoJsonLine(alert: { readonly rule: string; readonly priority: string; readonly [key: string]: JsonValue | undefined }): string {
  const o: Record<string, JsonValue> = {};
  const withTime: Record<string, JsonValue | undefined> = { time: new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z'), ...alert };
  for (const k of Object.keys(withTime).sort()) {
    const v = withTime[k];
    if (v !== undefined) o[k] = v;
  }
  return stringify(o);
}
