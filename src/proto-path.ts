/**
 * Where the `.proto` files live: `<package root>/proto`. Works from `src/` (vitest, tsx) and from
 * `dist/src/` (the built CLI) by walking up from this module until a directory holds
 * `proto/falco/outputs.proto`.
 */
import protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompanionError } from './errors.js';

export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'falco', 'outputs.proto'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new CompanionError('E_PROTO_MISSING', `proto/falco/outputs.proto not found above ${dirname(fileURLToPath(import.meta.url))}`);
}


/**
 * Decoding options shared by the gRPC source and the emulator: field names as in the .proto
 * (`output_fields`, `source_deprecated`), int64 as decimal strings (Timestamp.seconds), enums as
 * numbers (aliases make names ambiguous: we map numbers ourselves), proto3 defaults filled in.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: false,
};

export interface FalcoProtos {
  /** `/falco.outputs.service/sub` (bidi) */
  readonly sub: protoLoader.MethodDefinition<object, object>;
  /** `/falco.outputs.service/get` (server streaming) */
  readonly get: protoLoader.MethodDefinition<object, object>;
  /** `/falco.version.service/version` (unary) */
  readonly version: protoLoader.MethodDefinition<object, object>;
  readonly outputsService: protoLoader.ServiceDefinition;
  readonly versionService: protoLoader.ServiceDefinition;
}

function isMethod(v: unknown): v is protoLoader.MethodDefinition<object, object> {
  return typeof v === 'object' && v !== null && 'path' in v && 'requestSerialize' in v;
}

/** Load outputs.proto and version.proto from {@link protoDir} (synchronously; call from start()). */
export function loadFalcoProtos(dir: string = protoDir()): FalcoProtos {
  const pkg = protoLoader.loadSync(['outputs.proto', 'version.proto'], { ...PROTO_LOADER_OPTIONS, includeDirs: [`${dir}/falco`] });
  const outputs = pkg['falco.outputs.service'] as protoLoader.ServiceDefinition | undefined;
  const version = pkg['falco.version.service'] as protoLoader.ServiceDefinition | undefined;
  const sub = outputs?.['sub'];
  const get = outputs?.['get'];
  const ver = version?.['version'];
  if (!outputs || !version || !isMethod(sub) || !isMethod(get) || !isMethod(ver)) {
    throw new CompanionError('E_PROTO_INVALID', `falco.outputs.service or falco.version.service missing in ${dir}/falco`);
  }
  return { sub, get, version: ver, outputsService: outputs, versionService: version };
}
