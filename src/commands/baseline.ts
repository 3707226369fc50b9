/**
 * `falco-companion baseline export | import`: seed a cluster store (docs/cluster-store.md) once
 * from a node's state database.
 *
 * - `export [--out FILE]` writes the node's learned state (egress baselines, image history) as
 *   JSON lines (stdout by default). Works offline or next to the running daemon.
 * - `import [--in FILE]` merges such lines into the Redis of `store.redis` (config file and
 *   environment as for `run`; `store.backend` must be `redis`); without `--in` it reads this node's
 *   state database directly. Merges like any write: first seen min, last seen max, counts add.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Argv } from 'yargs';
import type { Config } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { silentLogger } from '../logger.js';
import { STATE_DB_FILE, openStateDb } from '../store/db.js';
import { dieWith, existingStateDb, offlineConfig } from './offline.js';
import { exportLines, importEntries, localReplicas, parseLine, replicaLines, type SnapshotLine } from '../cluster/snapshot.js';
import { redisStoreFromConfig } from '../cluster/wiring.js';
import type { RedisSharedStore } from '../cluster/redis-store.js';

interface BaselineFlags {
  action: string;
  config?: string;
  'state-dir'?: string;
  out?: string;
  in?: string;
  timeout?: number;
}

const die = dieWith('baseline');

async function connect(config: Config, timeoutMs: number): Promise<RedisSharedStore> {
  if (config.store.backend !== 'redis') die('store.backend is not redis: set it (and store.redis.*) in --config or FALCO_COMPANION_STORE_BACKEND=redis', 2);
  const store = redisStoreFromConfig(config.store);
  let lastError: string | null = null;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      void store.close();
      die(`Redis not reachable within ${timeoutMs} ms${lastError ? `: ${lastError}` : ''}`);
    }, timeoutMs);
    store.connect((up, e) => {
      if (e) lastError = e;
      if (up) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return store;
}

async function* fileLines(path: string): AsyncGenerator<SnapshotLine | string> {
  const rl = createInterface({ input: path === '-' ? process.stdin : createReadStream(path), crlfDelay: Infinity });
  for await (const line of rl) if (line.trim() !== '') yield parseLine(line);
}

export async function runBaselineCommand(f: BaselineFlags): Promise<void> {
  const config = offlineConfig(f, die);
  if (f.action === 'export') {
    const db = existingStateDb(config.state_dir, die);
    try {
      const file = f.out && f.out !== '-' ? createWriteStream(f.out) : null;
      const out: NodeJS.WritableStream = file ?? process.stdout;
      let n = 0;
      for (const line of exportLines(localReplicas(db, config, silentLogger()))) {
        if (!out.write(line + '\n')) await new Promise<void>((r) => out.once('drain', () => r()));
        n++;
      }
      if (file) await new Promise<void>((r) => file.end(() => r()));
      process.stderr.write(`falco-companion baseline: exported ${n} entries from ${join(config.state_dir, STATE_DB_FILE)}\n`);
    } finally {
      db.close();
    }
    return;
  }
  if (f.action !== 'import') die(`unknown action ${JSON.stringify(f.action)}: use export or import`, 2);
  const store = await connect(config, f.timeout ?? 10_000);
  const db = f.in === undefined ? existingStateDb(config.state_dir, die) : null;
  try {
    // Replicas of an empty in-memory database give the field layouts when importing a file.
    const layoutDb = db ?? openStateDb(':memory:');
    const replicas = localReplicas(layoutDb, config, silentLogger());
    let lines: Iterable<SnapshotLine | string>;
    if (f.in !== undefined) {
      const all: (SnapshotLine | string)[] = [];
      for await (const l of fileLines(f.in)) all.push(l);
      lines = all;
    } else lines = replicaLines(replicas);
    const r = await importEntries(store, replicas, config, lines, config.store.sync.batch_size);
    process.stdout.write(`imported ${r.entries} entries into ${config.store.redis.addresses.join(',')} (prefix ${config.store.redis.key_prefix}): ${r.announced} new or changed, ${r.skipped} skipped\n`);
    if (!db) layoutDb.close();
  } catch (err) {
    die(errorMessage(err));
  } finally {
    db?.close();
    await store.close();
  }
}

/** The `baseline` command as a yargs command module: register with `.command(baselineCommand)`. */
export const baselineCommand = {
  command: 'baseline <action>',
  describe: 'Seed a cluster store from this node: export (state database -> JSON lines) | import (JSON lines or the state database -> Redis)',
  builder: (c: Argv): Argv =>
    c
      .positional('action', { type: 'string', choices: ['export', 'import'], demandOption: true })
      .options({
        config: { type: 'string', describe: 'YAML config file: state_dir, store.redis.*, bounds (like run)' },
        'state-dir': { type: 'string', describe: 'State directory (overrides $FALCO_COMPANION_STATE_DIR and state_dir in --config)' },
        out: { type: 'string', describe: 'export: write to this file instead of stdout' },
        in: { type: 'string', describe: 'import: read JSON lines from this file (- for stdin) instead of the state database' },
        timeout: { type: 'number', default: 10_000, describe: 'import: ms to wait for Redis' },
      }) as unknown as Argv,
  handler: (a: unknown): Promise<void> => runBaselineCommand(a as BaselineFlags),
};
