/**
 * The shared store on Redis 7 or Valkey (`store/redis`): standalone, Sentinel or Cluster, TLS,
 * ACL user/password, one key prefix per cluster of companions. Client: ioredis.
 *
 * Key layout (every key carries the hash tag `{<prefix>}`, so a namespace lives in one hash slot
 * and the scripts below stay atomic on a Redis Cluster too):
 *
 * | key                        | type   | what                                                        |
 * |----------------------------|--------|-------------------------------------------------------------|
 * | `{P}:epoch`                | string | random id made by the first node; a new id = the data was lost |
 * | `{P}:seq`                  | string | version counter (INCR once per announced group write)       |
 * | `{P}:nodes`                | zset   | node name → last heartbeat (ms); pruned after the live window |
 * | `{P}:<ns>:idx`             | zset   | group → version of its last announcement (the pull index)   |
 * | `{P}:<ns>:h:<group>`       | hash   | field → tuple (./tuple.ts) + `@<recency last announced>`    |
 * | `{P}:<ns>:v:<group>`       | zset   | field → version of its last announcement                    |
 *
 * Writes go through one script per batch: merge each field by its cell operators, announce the
 * fields other nodes must learn (new, changed, or recency advanced by `announceEvery`), bump the
 * version, trim the group to `maxFields` (least recent first; `~` never), drop the oldest groups
 * beyond `maxGroups`, and refresh the TTL. A pull pass reads the index in version order from the
 * node's cursor, and of each group the fields announced after that cursor (./types.ts
 * SharedStore.pull). Since a write is atomic and merges are idempotent, a pull that races a write
 * at worst reads a change twice.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import { backoffMs } from '../component.js';
import { CompanionError, errorMessage } from '../errors.js';
import type { NamespaceSpec, PullResult, SharedStore } from './types.js';

const LUA_COMMON = `
local SEP = '\\31'
local function split(s)
  local t, i = {}, 1
  while true do
    local j = string.find(s, SEP, i, true)
    if not j then t[#t + 1] = string.sub(s, i) return t end
    t[#t + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end
-- byte order (Lua's own string comparison follows the server's locale)
local function bgt(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local function num(cell) return tonumber(string.sub(cell or '', 2)) end
`;

/** KEYS: seq, idx, then (hash, versions) per group. ARGV: spec, prefix, then per group: name, n, field, value ... */
const PUSH_LUA = `${LUA_COMMON}
local function merge(a, b)
  local av, bv = string.sub(a, 2), string.sub(b, 2)
  if av == '' then return b end
  if bv == '' then return a end
  local op = string.sub(b, 1, 1)
  if op == '<' then if tonumber(bv) < tonumber(av) then return b end return a end
  if op == '>' then if tonumber(bv) > tonumber(av) then return b end return a end
  if op == '+' then return '+' .. string.format('%.0f', tonumber(av) + tonumber(bv)) end
  if op == '^' then if bgt(bv, av) then return b end return a end
  return b
end
local rec = tonumber(ARGV[1]) + 1
local maxFields = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local every = tonumber(ARGV[4])
local stale = tonumber(ARGV[5])
local maxGroups = tonumber(ARGV[6])
local prefix = ARGV[7]
local function trim(h, v, excess)
  local all = redis.call('HGETALL', h)
  local list = {}
  for i = 1, #all, 2 do
    if all[i] ~= '~' then
      list[#list + 1] = { all[i], num(split(all[i + 1])[rec]) or 0 }
    end
  end
  table.sort(list, function(x, y) if x[2] ~= y[2] then return x[2] < y[2] end return bgt(y[1], x[1]) end)
  local dropped = 0
  for i = 1, #list do
    if i <= excess or list[i][2] < stale then
      redis.call('HDEL', h, list[i][1])
      redis.call('ZREM', v, list[i][1])
      dropped = dropped + 1
    else
      break
    end
  end
  return dropped
end
local a, k = 8, 3
local announced, trimmed = 0, 0
while a <= #ARGV do
  local group, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local h, v = KEYS[k], KEYS[k + 1]
  k = k + 2
  local changed = {}
  for i = 1, n do
    local field, inc = ARGV[a], ARGV[a + 1]
    a = a + 2
    local newc = split(inc)
    local old = redis.call('HGET', h, field)
    local out, ann, tell = newc, 0, true
    if old then
      local oldc = split(old)
      local last = oldc[#oldc]
      if string.sub(last, 1, 1) == '@' then
        ann = tonumber(string.sub(last, 2)) or 0
        oldc[#oldc] = nil
      end
      if #oldc == #newc then
        out, tell = {}, false
        for c = 1, #newc do
          local m = merge(oldc[c], newc[c])
          out[c] = m
          if m ~= oldc[c] and c ~= rec and string.sub(m, 1, 1) ~= '+' then tell = true end
        end
        local r = num(out[rec])
        if r and r - ann >= every and r ~= ann then tell = true end
      end
    end
    if tell then
      ann = num(out[rec]) or 0
      changed[#changed + 1] = field
    end
    redis.call('HSET', h, field, table.concat(out, SEP) .. SEP .. '@' .. string.format('%.0f', ann))
  end
  if #changed > 0 then
    local ver = redis.call('INCR', KEYS[1])
    for i = 1, #changed do redis.call('ZADD', v, ver, changed[i]) end
    redis.call('ZADD', KEYS[2], ver, group)
    announced = announced + #changed
  end
  local len = redis.call('HLEN', h)
  if len > maxFields + math.ceil(maxFields / 10) then trimmed = trimmed + trim(h, v, len - maxFields) end
  redis.call('PEXPIRE', h, ttl)
  if redis.call('EXISTS', v) == 1 then redis.call('PEXPIRE', v, ttl) end
end
local ng = redis.call('ZCARD', KEYS[2])
if ng > maxGroups + math.ceil(maxGroups / 10) then
  local popped = redis.call('ZPOPMIN', KEYS[2], ng - maxGroups)
  for i = 1, #popped, 2 do redis.call('DEL', prefix .. 'h:' .. popped[i], prefix .. 'v:' .. popped[i]) end
end
local low = redis.call('ZRANGE', KEYS[2], 0, 1)
for i = 1, #low do
  if redis.call('EXISTS', prefix .. 'h:' .. low[i]) == 0 then redis.call('ZREM', KEYS[2], low[i]) end
end
return { announced, trimmed }
`;

/** KEYS: hash, versions. ARGV: cursor. Returns field, value, field, value ... announced after the cursor. */
const PULL_GROUP_LUA = `
local fs = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')
local out = {}
local i = 1
while i <= #fs do
  local chunk = {}
  for j = i, math.min(i + 499, #fs) do chunk[#chunk + 1] = fs[j] end
  local vals = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #chunk do
    if vals[j] then
      out[#out + 1] = chunk[j]
      out[#out + 1] = vals[j]
    end
  end
  i = i + 500
end
return out
`;

/** KEYS: epoch, seq, nodes. ARGV: new epoch id, node, now ms, live window ms. */
const HELLO_LUA = `
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%.0f', tonumber(ARGV[3]) - tonumber(ARGV[4])))
return { redis.call('GET', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('ZCARD', KEYS[3]) }
`;

interface Script {
  readonly text: string;
  readonly sha: string;
}
const script = (text: string): Script => ({ text, sha: createHash('sha1').update(text).digest('hex') });
const PUSH = script(PUSH_LUA);
const PULL_GROUP = script(PULL_GROUP_LUA);
const HELLO = script(HELLO_LUA);

export type RedisMode = 'standalone' | 'sentinel' | 'cluster';

export interface RedisStoreOptions {
  readonly mode: RedisMode;
  /** HOST:PORT, [v6]:PORT, or an absolute unix socket path (standalone). */
  readonly addresses: readonly string[];
  readonly sentinelMaster: string;
  readonly db: number;
  readonly username: string | null;
  readonly password: string | null;
  readonly sentinelUsername: string | null;
  readonly sentinelPassword: string | null;
  readonly tls: { readonly enabled: boolean; readonly ca: string | null; readonly cert: string | null; readonly key: string | null; readonly serverName: string | null; readonly insecure: boolean };
  readonly keyPrefix: string;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
  readonly reconnectInitialMs: number;
  readonly reconnectMaxMs: number;
}

/** Options with the schema's defaults for everything not given (tests, the sizing bench). */
export function redisStoreOptions(o: Partial<RedisStoreOptions> & Pick<RedisStoreOptions, 'addresses'>): RedisStoreOptions {
  return {
    mode: 'standalone',
    sentinelMaster: 'mymaster',
    db: 0,
    username: null,
    password: null,
    sentinelUsername: null,
    sentinelPassword: null,
    tls: { enabled: false, ca: null, cert: null, key: null, serverName: null, insecure: false },
    keyPrefix: 'falco-companion',
    connectTimeoutMs: 5000,
    commandTimeoutMs: 2000,
    reconnectInitialMs: 500,
    reconnectMaxMs: 30_000,
    ...o,
  };
}

type Address = { readonly host: string; readonly port: number } | { readonly path: string };

export function parseAddress(a: string): Address {
  if (a.startsWith('/')) return { path: a };
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(a) ?? /^([^:\s[\]]+):(\d{1,5})$/.exec(a);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new CompanionError('E_STORE_CONFIG', `redis address ${JSON.stringify(a)}: expected HOST:PORT, [IPv6]:PORT or an absolute unix socket path`);
  return { host: m[1] as string, port };
}

/** A Redis error that says the server lost the script cache (restart, SCRIPT FLUSH, failover). */
function noScript(err: unknown): boolean {
  return errorMessage(err).startsWith('NOSCRIPT');
}

type Client = Redis | Cluster;

export class RedisSharedStore implements SharedStore {
  readonly kind = 'redis';
  private client: Client | null = null;
  private readonly prefix: string;

  constructor(private readonly o: RedisStoreOptions) {
    if (o.addresses.length === 0) throw new CompanionError('E_STORE_CONFIG', 'store.redis.addresses is empty');
    for (const a of o.addresses) parseAddress(a);
    if (o.mode !== 'standalone' && o.addresses.some((a) => a.startsWith('/'))) throw new CompanionError('E_STORE_CONFIG', `unix socket addresses work in standalone mode only (mode ${o.mode})`);
    this.prefix = `{${o.keyPrefix}}`;
  }

  key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  private tlsOptions(): ConnectionOptions | undefined {
    const t = this.o.tls;
    if (!t.enabled) return undefined;
    const read = (p: string | null): Buffer | undefined => (p ? readFileSync(p) : undefined);
    const opts: ConnectionOptions = { rejectUnauthorized: !t.insecure };
    const ca = read(t.ca);
    const cert = read(t.cert);
    const key = read(t.key);
    if (ca) opts.ca = ca;
    if (cert) opts.cert = cert;
    if (key) opts.key = key;
    if (t.serverName) opts.servername = t.serverName;
    return opts;
  }

  connect(onState: (connected: boolean, error: string | null) => void): void {
    if (this.client) return;
    const o = this.o;
    const tls = this.tlsOptions();
    const retry = (times: number): number => backoffMs(Math.max(0, times - 1), o.reconnectInitialMs, o.reconnectMaxMs);
    // The alert path never waits for Redis: no offline queue (a command while disconnected fails
    // at once), no retry of a command across reconnects, a timeout on every command.
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: o.connectTimeoutMs,
      commandTimeout: o.commandTimeoutMs,
      retryStrategy: retry,
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
      ...(tls ? { tls } : {}),
    };
    let client: Client;
    if (o.mode === 'cluster') {
      const nodes = o.addresses.map((a) => parseAddress(a) as { host: string; port: number });
      const { lazyConnect: _l, retryStrategy: _r, ...perNode } = base;
      const co: ClusterOptions = {
        lazyConnect: true,
        enableOfflineQueue: false,
        clusterRetryStrategy: retry,
        slotsRefreshTimeout: o.connectTimeoutMs,
        redisOptions: perNode,
      };
      client = new Cluster(nodes, co);
    } else if (o.mode === 'sentinel') {
      client = new Redis({
        ...base,
        db: o.db,
        name: o.sentinelMaster,
        sentinels: o.addresses.map((a) => parseAddress(a) as { host: string; port: number }),
        sentinelRetryStrategy: retry,
        ...(o.sentinelUsername ? { sentinelUsername: o.sentinelUsername } : {}),
        ...(o.sentinelPassword ? { sentinelPassword: o.sentinelPassword } : {}),
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
      });
    } else {
      const addr = parseAddress(o.addresses[0] as string);
      client = new Redis({ ...base, db: o.db, ...('path' in addr ? { path: addr.path } : { host: addr.host, port: addr.port }) });
    }
    this.client = client;
    let lastError: string | null = null;
    client.on('error', (err: unknown) => {
      lastError = errorMessage(err);
    });
    client.on('ready', () => {
      lastError = null;
      onState(true, null);
    });
    client.on('close', () => onState(false, lastError));
    client.on('end', () => onState(false, lastError));
    client.connect().catch((err: unknown) => {
      // The first attempt failed: ioredis goes on reconnecting with the retry strategy.
      lastError = errorMessage(err);
      onState(false, lastError);
    });
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (!c) return;
    // QUIT waits for the server's answer: a server that answers nothing gets a disconnect.
    let t: NodeJS.Timeout | undefined;
    const quit = c.quit().then(
      () => true,
      () => false,
    );
    const ok = await Promise.race([quit, new Promise<false>((r) => (t = setTimeout(() => r(false), 1000)))]);
    clearTimeout(t);
    if (!ok) c.disconnect();
  }

  private get c(): Client {
    if (!this.client) throw new CompanionError('E_STORE_CLOSED', 'redis store is not connected');
    return this.client;
  }

  /** EVALSHA, loading the script when the server does not have it. */
  private async run(s: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await this.c.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!noScript(err)) throw err;
      return this.c.eval(s.text, keys.length, ...keys, ...args);
    }
  }

  async hello(node: string, nowMs: number, liveMs: number): Promise<{ epoch: string; seq: number; nodes: number }> {
    const r = (await this.run(HELLO, [this.key('epoch'), this.key('seq'), this.key('nodes')], [randomUUID(), node, nowMs, liveMs])) as [string, number, number];
    return { epoch: String(r[0]), seq: Number(r[1]), nodes: Number(r[2]) };
  }

  async push(spec: NamespaceSpec, groups: ReadonlyMap<string, ReadonlyMap<string, string>>, nowMs: number): Promise<number> {
    if (groups.size === 0) return 0;
    const keys = [this.key('seq'), this.key(spec.name, 'idx')];
    const stale = Math.floor((nowMs - spec.ttlMs) / spec.recencyUnitMs);
    const args: (string | number)[] = [spec.recency, spec.maxFields, spec.ttlMs, spec.announceEvery, stale, spec.maxGroups, `${this.key(spec.name)}:`];
    for (const [group, fields] of groups) {
      keys.push(this.key(spec.name, 'h', group), this.key(spec.name, 'v', group));
      args.push(group, fields.size);
      for (const [f, v] of fields) args.push(f, v);
    }
    const r = (await this.run(PUSH, keys, args)) as [number, number];
    return Number(r[0]);
  }

  async pull(spec: NamespaceSpec, from: number, since: number, maxFields: number): Promise<PullResult> {
    const page = Math.max(1, Math.min(200, maxFields));
    const idx = (await this.c.zrangebyscore(this.key(spec.name, 'idx'), `(${from}`, '+inf', 'WITHSCORES', 'LIMIT', 0, page)) as string[];
    if (idx.length === 0) return { next: from, entries: [], more: false };
    const groups: { group: string; ver: number }[] = [];
    for (let i = 0; i + 1 < idx.length; i += 2) groups.push({ group: idx[i] as string, ver: Number(idx[i + 1]) });
    const replies = await Promise.all(groups.map((g) => this.run(PULL_GROUP, [this.key(spec.name, 'h', g.group), this.key(spec.name, 'v', g.group)], [since]) as Promise<string[]>));
    const entries: { group: string; field: string; value: string }[] = [];
    let next = from;
    let taken = 0;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] as { group: string; ver: number };
      const flat = replies[i] as string[];
      if (taken > 0 && entries.length + flat.length / 2 > maxFields) break;
      for (let j = 0; j + 1 < flat.length; j += 2) entries.push({ group: g.group, field: flat[j] as string, value: flat[j + 1] as string });
      next = g.ver;
      taken++;
    }
    return { next, entries, more: taken < groups.length || groups.length === page };
  }

  /** Whole-store facts for `baseline` commands and the sizing bench. */
  async info(): Promise<{ readonly groups: Record<string, number>; readonly usedMemory: number | null }> {
    const groups: Record<string, number> = {};
    for (const ns of ['eg', 'img', 'bs', 'rb']) groups[ns] = Number(await this.c.zcard(this.key(ns, 'idx')));
    let usedMemory: number | null = null;
    if (this.c instanceof Redis) {
      const m = /used_memory:(\d+)/.exec(await this.c.info('memory'));
      usedMemory = m ? Number(m[1]) : null;
    }
    return { groups, usedMemory };
  }

  /** The ioredis client (tests and the bench read the raw keys). */
  get raw(): Client | null {
    return this.client;
  }
}
