/**
 * Egress destination enricher (`enrich/egress`): where a network alert's remote side is.
 *
 * Remote side: the one rule of src/net/socket.ts (`SocketView.remote`): for accept/accept4
 * (inbound) the client, `fd.cip`/`fd.cport`, else the client of the `fd.name` tuple; for everything
 * else (connect, sendto, ...) the server, `fd.sip`/`fd.sport`, else the server of the tuple; then
 * `fd.rip`/`fd.rport` as the last resort. fd.lport/fd.rport never decide the direction.
 * Adds `dest.ip`, `dest.port`, `dest.class`, `dest.rdns`, `dest.asn`, `dest.as_org`, `dest.intel`,
 * `dest.new_for_image`, `dest.learning`. Synchronous parts (class, ASN, intel, baseline) are always
 * answered; reverse DNS waits at most `rdns.wait`, then goes on in the background to warm the cache.
 */
import type { Logger } from 'pino';
import { valueString, type Alert, type EnrichValue } from '../alert.js';
import type { Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Enricher } from '../pipeline/types.js';
import type { Db } from '../store/db.js';
import type { ChangeSink } from '../cluster/types.js';
import { formatIp, parseIp, type Ip } from '../net/address.js';
import { SocketView, type AddressParser } from '../net/socket.js';
import { AsnDb } from './asn.js';
import { EgressBaseline } from './baseline.js';
import { IntelLists } from './intel.js';
import { IpClassifier, type IpClass } from './ip-class.js';
import { DEST, ENRICH_ERROR } from './keys.js';
import { ReverseDns, type RdnsResult } from './rdns.js';
import { TtlLru } from './ttl-lru.js';

export type EgressConfig = Config['enrich']['egress'];

export interface EgressEnricherDeps {
  readonly config: EgressConfig;
  /** State database (baseline); null turns the baseline off. */
  readonly db: Db | null;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Override the reverse DNS resolver (tests). */
  readonly resolver?: ReverseDns;
  /** Shared store (cluster) the baseline also writes to; absent: this node only. */
  readonly cluster?: ChangeSink | null;
}

export interface Destination {
  readonly ip: Ip;
  readonly port: number | null;
  /** Falco's DNS-derived name of the remote side (`fd.sip.name` ...), when present. */
  readonly domain: string | null;
  readonly direction: 'outbound' | 'inbound';
}

const INBOUND_EVENTS = new Set(['accept', 'accept4']);
/** Parsed addresses the enricher keeps (keyed by the field's text): a working set, LRU eviction. */
const IP_CACHE_SIZE = 4096;

/** One cached address: parsed, canonical text, class and the class's bound counter. */
interface IpInfo {
  readonly ip: Ip;
  readonly text: string;
  readonly cls: IpClass;
  readonly counted: { inc(): void };
}
const NOTHING: Readonly<Record<string, EnrichValue>> = Object.freeze({});

/** What the synchronous part of one enrichment found, before reverse DNS. */
interface EgressPart {
  readonly out: Record<string, EnrichValue>;
  readonly errors: string[];
  readonly intelHits: Set<string> | null;
}
const MAX_VALUE = 500;

/**
 * The remote side of a network alert, or null when the alert is not about a network peer.
 * `parse` turns an address text into an Ip (the enricher passes its cached parser).
 */
export function destinationOf(a: Alert, parse: AddressParser = parseIp): Destination | null {
  const k = a.known;
  if (k.fdSip === undefined && k.fdRip === undefined && k.fdCip === undefined && k.fdName === undefined) return null;
  const evt = valueString(k.evtType);
  const inbound = evt !== null && INBOUND_EVENTS.has(evt);
  const peer = SocketView.of(k, parse).remote(inbound ? 'client' : 'server');
  if (!peer) return null;
  const domain = valueString(peer.nameField === 'fd.cip.name' ? k.fdCipName : peer.nameField === 'fd.sip.name' ? k.fdSipName : k.fdRipName);
  return { ip: peer.ip, port: peer.port, domain: domain ? normDomain(domain) : null, direction: inbound ? 'inbound' : 'outbound' };
}

/** Lower case, no surrounding blanks or trailing dot, at most 253 characters; null when blank. */
function normDomain(domain: string): string | null {
  // Already normal (the usual case): no scan result to build.
  const n = domain.length;
  if (n > 0 && n <= 253 && domain.charCodeAt(n - 1) !== 46 /* . */) {
    let plain = true;
    for (let i = 0; i < n; i++) {
      const c = domain.charCodeAt(i);
      if (c <= 32 || (c >= 65 && c <= 90) || c >= 127) {
        plain = false;
        break;
      }
    }
    if (plain) return domain;
  }
  const t = domain.trim();
  return t !== '' ? t.toLowerCase().replace(/\.$/, '').slice(0, 253) : null;
}

/** The baseline's image key, or null for host processes and unknown images. */
export function imageKeyOf(a: Alert, mode: EgressConfig['baseline']['image_key']): string | null {
  const k = a.known;
  const cid = valueString(k.containerId);
  if (cid === null || cid === '' || cid === 'host') return null;
  const repo = valueString(k.imageRepository);
  if (mode === 'repository' && repo !== null) return repo; // the default: nothing else to read
  const image = valueString(k.containerImage);
  if (mode === 'repository') return image ? image.replace(/@.*$/, '').replace(/:[^:/]*$/, '') : null;
  const tag = valueString(k.imageTag);
  const repoTag = repo ? (tag ? `${repo}:${tag}` : repo) : image;
  if (mode === 'digest') return valueString(k.imageDigest) ?? repoTag;
  return repoTag;
}

export class EgressEnricher implements Enricher, Component {
  readonly id = 'enrich/egress';
  private readonly c: EgressConfig;
  private readonly logger: Logger;
  private readonly metrics: Metrics;
  private readonly classifier: IpClassifier;
  private readonly rdns: ReverseDns | null;
  private readonly rdnsClasses: ReadonlySet<IpClass>;
  private readonly asn: AsnDb | null;
  private readonly intel: IntelLists | null;
  readonly baseline: EgressBaseline | null;
  private readonly classified;
  private readonly ipCacheEvictions;
  /** Address text → parsed address, canonical text and class (bounded, counted LRU eviction, no TTL). */
  private readonly ipCache = new TtlLru<string, IpInfo>({ max: IP_CACHE_SIZE, onEvict: () => this.ipCacheEvictions.inc() });
  /** The entry the cached parser returned last: usually the chosen address (the tuple is parsed only when an explicit field does not answer); `locate` checks. */
  private lastInfo: IpInfo | null = null;
  private readonly parseCached = (text: string): Ip | null => {
    const info = this.ipInfo(text);
    this.lastInfo = info;
    return info ? info.ip : null;
  };
  private timer: NodeJS.Timeout | null = null;

  constructor(d: EgressEnricherDeps) {
    this.c = d.config;
    this.logger = d.logger.child({ component: this.id });
    this.metrics = d.metrics;
    this.classifier = new IpClassifier({ podCidrs: d.config.cluster_pod_cidrs, serviceCidrs: d.config.cluster_service_cidrs });
    const r = d.config.rdns;
    this.rdns = !r.enabled
      ? null
      : (d.resolver ??
        new ReverseDns({
          servers: r.servers,
          timeoutMs: r.timeout,
          cacheSize: r.cache_size,
          positiveTtlMs: r.positive_ttl,
          negativeTtlMs: r.negative_ttl,
          errorTtlMs: r.error_ttl,
          maxInflight: r.max_inflight,
          clock: d.clock,
          metrics: d.metrics,
          logger: this.logger,
        }));
    this.rdnsClasses = new Set(r.classes.filter((x) => x !== 'loopback'));
    this.asn = d.config.asn_mmdb ? new AsnDb({ path: d.config.asn_mmdb, logger: this.logger, metrics: d.metrics }) : null;
    this.intel = d.config.intel.lists.length > 0 ? new IntelLists({ lists: d.config.intel.lists, maxEntries: d.config.intel.max_entries, logger: this.logger, metrics: d.metrics }) : null;
    const b = d.config.baseline;
    this.baseline =
      b.enabled && d.db
        ? new EgressBaseline({
            db: d.db,
            learningPeriodMs: b.learning_period,
            maxPerImage: b.max_per_image,
            maxTotal: b.max_total,
            maxImages: b.max_images,
            flushIntervalMs: b.flush_interval,
            logger: this.logger,
            metrics: d.metrics,
            cluster: d.cluster ?? null,
          })
        : null;
    this.classified = d.metrics.counter<'class'>('egress_destinations_total', 'Network alerts classified by the egress enricher, by destination class', ['class']);
    this.ipCacheEvictions = d.metrics.counter('egress_ip_cache_evictions_total', 'Parsed addresses dropped from the egress enricher\'s bounded address cache');
  }

  /** Parsed, canonical and classified address for a field's text (cached); null when not an address. */
  private ipInfo(text: string): IpInfo | null {
    const hit = this.ipCache.get(text);
    if (hit !== undefined) return hit;
    const ip = parseIp(text);
    if (!ip) return null; // not cached: a non-address costs a parse each time, never a slot
    const cls = this.classifier.classify(ip) ?? 'reserved';
    const info: IpInfo = { ip, text: formatIp(ip), cls, counted: this.classified.labels({ class: cls }) };
    this.ipCache.set(text, info);
    return info;
  }

  /** The destination of an alert with its address's cached text and class. */
  private locate(alert: Alert): { readonly dest: Destination; readonly info: IpInfo } | null {
    this.lastInfo = null;
    const dest = destinationOf(alert, this.parseCached);
    if (!dest) return null;
    const last = this.lastInfo as IpInfo | null;
    const info = last !== null && last.ip === dest.ip ? last : (this.ipInfo(formatIp(dest.ip)) as IpInfo);
    return { dest, info };
  }

  /** Load the MMDB, intel lists and baseline; fails when a configured file cannot be read. */
  async start(): Promise<void> {
    if (!this.c.enabled) return;
    this.asn?.checkReload(true);
    if (this.intel) {
      this.intel.checkReload();
      const empty = this.intel.missing();
      if (empty.length > 0) throw new CompanionError('E_INTEL_LIST', `intel lists not readable: ${empty.join(', ')}`);
    }
    await this.baseline?.start();
    if (!this.timer && (this.asn || this.intel)) {
      this.timer = setInterval(() => this.reloadFiles(), this.c.reload_interval);
      this.timer.unref();
    }
  }

  async stop(deadlineMs: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.baseline?.stop(deadlineMs);
    if (this.rdns) {
      const left = Math.max(0, deadlineMs - Date.now());
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.rdns.close(), new Promise<void>((res) => (t = setTimeout(res, left)))]);
      clearTimeout(t);
    }
  }

  health(): ComponentHealth {
    const parts: string[] = [];
    if (this.asn) parts.push(`asn: ${this.asn.description}`);
    if (this.intel) parts.push(`intel: ${Object.entries(this.intel.counts()).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    if (this.baseline) parts.push(`baseline: ${this.baseline.health().detail ?? ''}`);
    return { ready: true, detail: parts.join('; ') };
  }

  /** Check the MMDB and intel files for changes now (the timer does this every reload_interval). */
  reloadFiles(): void {
    try {
      this.asn?.checkReload();
      this.intel?.checkReload();
    } catch (err) {
      this.logger.error({ error: errorMessage(err) }, 'reload check failed');
    }
  }

  /**
   * The whole answer without waiting, when reverse DNS is not needed or cached (the pipeline's
   * fast path: no timer, no AbortController); undefined, with no side effect, when it must wait.
   */
  enrichSync(alert: Alert): Readonly<Record<string, EnrichValue>> | undefined {
    if (!this.c.enabled) return NOTHING;
    const found = this.locate(alert);
    if (!found) return NOTHING;
    const { dest, info } = found;
    let res: RdnsResult | null = null;
    if (this.rdns && this.rdnsClasses.has(info.cls)) {
      const hit = this.rdns.hit(info.text);
      if (!hit) return undefined;
      res = hit;
    }
    return this.finish(this.head(alert, dest, info), res);
  }

  async enrich(alert: Alert, signal: AbortSignal): Promise<Readonly<Record<string, EnrichValue>>> {
    const quick = this.enrichSync(alert);
    if (quick !== undefined) return quick;
    // Reverse DNS must wait: everything else first (the baseline sees alerts in arrival order).
    const { dest, info } = this.locate(alert) as { dest: Destination; info: IpInfo };
    const part = this.head(alert, dest, info);
    return this.finish(part, await this.reverse(info.text, signal));
  }

  /** Class, ASN, intel and baseline: synchronous, always answered. */
  private head(alert: Alert, dest: Destination, info: IpInfo): EgressPart {
    const { cls, text: ipText } = info;
    info.counted.inc();
    const out: Record<string, EnrichValue> = { [DEST.ip]: ipText, [DEST.class]: cls };
    if (dest.port !== null) out[DEST.port] = dest.port;
    const errors: string[] = [];

    if (this.asn && cls !== 'loopback') {
      const info = this.asn.lookup(ipText);
      if (info?.asn != null) out[DEST.asn] = info.asn;
      if (info?.org) out[DEST.asOrg] = info.org.slice(0, MAX_VALUE);
    }

    let intelHits: Set<string> | null = null;
    if (this.intel) {
      intelHits = new Set<string>();
      for (const n of this.intel.matchIp(dest.ip)) intelHits.add(n);
      if (dest.domain) for (const n of this.intel.matchDomain(dest.domain)) intelHits.add(n);
    }

    if (this.baseline) {
      const image = imageKeyOf(alert, this.c.baseline.image_key);
      if (image !== null) {
        try {
          const v = this.baseline.isNew(image, dest.domain ?? ipText, dest.port ?? 0, alert.timeNs);
          out[DEST.newForImage] = v.newForImage;
          out[DEST.learning] = v.learning;
        } catch (err) {
          errors.push(`baseline ${errorMessage(err)}`.slice(0, 100));
          this.metrics.errors.inc({ component: this.id, code: 'E_BASELINE' });
        }
      }
    }
    return { out, errors, intelHits };
  }

  /** Reverse DNS answer (null: not looked up), intel on the name, errors. */
  private finish(p: EgressPart, res: RdnsResult | null): Record<string, EnrichValue> {
    const { out, errors, intelHits } = p;
    if (res !== null) {
      if (res.kind === 'name') {
        out[DEST.rdns] = res.name;
        if (this.intel && intelHits) for (const n of this.intel.matchDomain(res.name)) intelHits.add(n);
      } else if (res.kind === 'error') errors.push(`rdns ${res.error}`);
      else if (res.kind === 'pending') errors.push('rdns slow (pending)');
    }
    if (intelHits && intelHits.size > 0) out[DEST.intel] = [...intelHits].join(',').slice(0, MAX_VALUE);
    if (errors.length > 0) out[ENRICH_ERROR] = `egress: ${errors.join(', ')}`.slice(0, MAX_VALUE);
    return out;
  }

  private async reverse(ip: string, signal: AbortSignal): Promise<RdnsResult> {
    const rdns = this.rdns as ReverseDns;
    const hit = rdns.cached(ip);
    if (hit) return rdns.lookup(ip); // counts the hit
    const wait = this.c.rdns.wait;
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    if (signal.aborted) ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const t = setTimeout(onAbort, wait);
    try {
      return await rdns.lookup(ip, ac.signal);
    } finally {
      clearTimeout(t);
      signal.removeEventListener('abort', onAbort);
    }
  }
}
