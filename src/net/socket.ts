/**
 * What a Falco alert says about a socket: the `fd.name` text and the `fd.*` address fields, read
 * one way for detection (src/detect/mapping.ts) and enrichment (src/enrich/egress.ts).
 *
 * `fd.name` forms a real Falco prints (../falco-reference/recorded/):
 * - `client_ip:port->server_ip:port` for TCP/UDP sockets; IPv6 without brackets
 *   (`::1:5000->fd00::2:80`: the port is after the last colon) or with them (`[::1]:5000->...`);
 * - `ip:port` alone for a bound or listening socket;
 * - `ffff88813acaa880->ffff88813aca9680 /var/run/docker.sock` for a unix socket: the kernel
 *   addresses of the two socket structures, then the path the *server* bound (not necessarily the
 *   path the client used);
 * - anything else (a file path, `<NA>`) is not a socket name.
 *
 * Direction: on an outbound connect `fd.lport`/`fd.rport` (and `fd.lip`/`fd.rip`) do not reliably
 * say which side is the server, so they never decide it. The client is `fd.cip`/`fd.cport`, else the
 * left side of the tuple; the server `fd.sip`/`fd.sport`, else the right side. Explicit fields win
 * over the tuple; a missing explicit port is taken from the same side of the tuple.
 */
import type { FieldValue, KnownFields } from '../alert.js';
import { parseIp, type Ip } from './address.js';

export interface Endpoint {
  /** The address text as the alert carried it (trimmed, without brackets). */
  readonly text: string;
  readonly ip: Ip;
  /** 0–65535, or null when not known. */
  readonly port: number | null;
}

export type FdName =
  | { readonly kind: 'inet'; readonly client: Endpoint; readonly server: Endpoint }
  /** A bound or listening socket's own address. */
  | { readonly kind: 'bound'; readonly local: Endpoint }
  /** Kernel socket addresses (hex) of this end and the peer, and the path the server bound (null when unnamed). */
  | { readonly kind: 'unix'; readonly local: string; readonly peer: string; readonly path: string | null };

export type AddressParser = (text: string) => Ip | null;

function portNumber(s: string): number | null {
  if (s.length === 0 || s.length > 5) return null;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return null;
    n = n * 10 + (c - 48);
  }
  return n <= 65535 ? n : null;
}

/** `ip:port`, `[ipv6]:port` or `ipv6:port` (the port after the last colon). */
function parseEndpoint(s: string, parse: AddressParser): Endpoint | null {
  let text: string;
  let port: number | null;
  if (s.charCodeAt(0) === 91 /* [ */) {
    const close = s.indexOf(']');
    if (close < 0 || s.charCodeAt(close + 1) !== 58) return null;
    text = s.slice(1, close);
    port = portNumber(s.slice(close + 2));
  } else {
    const c = s.lastIndexOf(':');
    if (c <= 0) return null;
    text = s.slice(0, c);
    port = portNumber(s.slice(c + 1));
  }
  if (port === null) return null;
  const ip = parse(text);
  return ip ? { text, ip, port } : null;
}

const UNIX = /^([0-9a-f]{1,16})->([0-9a-f]{1,16})(?: (.*))?$/;

/** Parse Falco's `fd.name` (the forms in the module comment); null when it names no socket. */
export function parseFdName(name: string | null | undefined, parse: AddressParser = parseIp): FdName | null {
  if (!name || name.length > 4096) return null;
  const s = name.trim();
  const arrow = s.indexOf('->');
  if (arrow < 0) {
    const local = s.includes(':') ? parseEndpoint(s, parse) : null;
    return local ? { kind: 'bound', local } : null;
  }
  if (s.indexOf('->', arrow + 2) >= 0) return null;
  const unix = s.includes(' ') || !s.includes(':') ? UNIX.exec(s) : null;
  if (unix) {
    const path = unix[3]?.trim() ?? '';
    return { kind: 'unix', local: unix[1] as string, peer: unix[2] as string, path: path === '' ? null : path };
  }
  const client = parseEndpoint(s.slice(0, arrow), parse);
  const server = client ? parseEndpoint(s.slice(arrow + 2), parse) : null;
  return client && server ? { kind: 'inet', client, server } : null;
}

/** Which end of a connection is the remote peer: `server` for connect, `client` for accept, null when the event does not say. */
export type PeerSide = 'client' | 'server';

export interface Peer extends Endpoint {
  /** The Falco field naming it by DNS (`fd.sip.name`, `fd.cip.name`, `fd.rip.name`). */
  readonly nameField: string;
}

type Fields = Readonly<Record<string, FieldValue>>;

/** The `fd.*` fields a view reads, by slot (an alert's known-fields record has them: src/alert.ts). */
export type SocketFields = Pick<KnownFields, 'fdName' | 'fdCip' | 'fdCport' | 'fdSip' | 'fdSport' | 'fdLip' | 'fdLport' | 'fdRip' | 'fdRport'>;

/** The socket slots of output fields given by Falco field name. */
function socketFieldsOf(f: Fields): SocketFields {
  return {
    fdName: f['fd.name'],
    fdCip: f['fd.cip'],
    fdCport: f['fd.cport'],
    fdSip: f['fd.sip'],
    fdSport: f['fd.sport'],
    fdLip: f['fd.lip'],
    fdLport: f['fd.lport'],
    fdRip: f['fd.rip'],
    fdRport: f['fd.rport'],
  };
}

function text(v: FieldValue | undefined): string | null {
  return typeof v === 'string' && v !== '' && v !== '<NA>' ? v : null;
}

function port(v: FieldValue | undefined): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : typeof v === 'object' && v !== null ? Number(v.raw) : Number.NaN;
  return Number.isInteger(n) && n >= 0 && n <= 65535 && !(typeof v === 'string' && v.trim() === '') ? n : null;
}

const SIDE_NAMES = { client: 'fd.cip.name', server: 'fd.sip.name' } as const;

/**
 * One alert's socket as the detection and enrichment stages read it. The `fd.name` tuple is parsed
 * at most once, and only when an explicit field is missing or not an address.
 */
export class SocketView {
  private tupleDone = false;
  private tupleValue: FdName | null = null;
  private readonly f: SocketFields;

  /** Over output fields by Falco field name, or (`slots`) over an alert's known-fields record. */
  constructor(
    fields: Fields,
    private readonly parse: AddressParser = parseIp,
    slots?: SocketFields,
  ) {
    this.f = slots ?? socketFieldsOf(fields);
  }

  /** The view of an alert's known-fields record (`alert.known`). */
  static of(slots: SocketFields, parse: AddressParser = parseIp): SocketView {
    return new SocketView(NO_FIELDS, parse, slots);
  }

  /** The parsed `fd.name` (any form), or null. */
  get name(): FdName | null {
    if (!this.tupleDone) {
      this.tupleDone = true;
      this.tupleValue = parseFdName(text(this.f.fdName), this.parse);
    }
    return this.tupleValue;
  }

  private tupleEnd(side: PeerSide): Endpoint | null {
    const t = this.name;
    return t !== null && t.kind === 'inet' ? t[side] : null;
  }

  /** The client or server end: the explicit `fd.cip`/`fd.sip` (port `fd.cport`/`fd.sport`), else the tuple's side. */
  end(side: PeerSide): Endpoint | null {
    const client = side === 'client';
    const t = text(client ? this.f.fdCip : this.f.fdSip);
    const ip = t === null ? null : this.parse(t);
    if (t !== null && ip !== null) return { text: t, ip, port: port(client ? this.f.fdCport : this.f.fdSport) ?? this.tupleEnd(side)?.port ?? null };
    return this.tupleEnd(side);
  }

  /** An address field and its port field taken as they are (`fd.rip`/`fd.rport`, `fd.lip`/`fd.lport`). */
  field(ipKey: 'fd.rip' | 'fd.lip', portKey: 'fd.rport' | 'fd.lport'): Endpoint | null {
    const t = text(ipKey === 'fd.rip' ? this.f.fdRip : this.f.fdLip);
    const ip = t === null ? null : this.parse(t);
    return t !== null && ip !== null ? { text: t, ip, port: port(portKey === 'fd.rport' ? this.f.fdRport : this.f.fdLport) } : null;
  }

  /**
   * The remote peer. With a known side (`server` for connect, `client` for accept): that end
   * ({@link end}), else `fd.rip`/`fd.rport` as the last resort. With no side (events that do not say
   * which end is remote): `fd.rip`/`fd.rport`, else the server end.
   */
  remote(side: PeerSide | null): Peer | null {
    if (side !== null) {
      const e = this.end(side);
      if (e) return peer(e, SIDE_NAMES[side]);
      const r = this.field('fd.rip', 'fd.rport');
      return r ? peer(r, 'fd.rip.name') : null;
    }
    const r = this.field('fd.rip', 'fd.rport');
    if (r) return peer(r, 'fd.rip.name');
    const e = this.end('server');
    return e ? peer(e, SIDE_NAMES.server) : null;
  }
}

const NO_FIELDS: Fields = Object.freeze({});

/** (An object literal: a spread of the endpoint costs ten times as much on this path.) */
function peer(e: Endpoint, nameField: string): Peer {
  return { text: e.text, ip: e.ip, port: e.port, nameField };
}
