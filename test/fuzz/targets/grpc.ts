/**
 * gRPC messages: the protobuf decoder on arbitrary bytes (what the source's decodeSafe wraps) and
 * src/sources/grpc-convert.ts responseToAlert on every decoded shape, with the input limits.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { InvalidAlertError, PRIORITIES, type Alert } from '../../../src/alert.js';
import { DEFAULT_INPUT_LIMITS, InputLimitError, TRUNCATED_KEY, type InputLimits } from '../../../src/limits.js';
import { loadFalcoProtos } from '../../../src/proto-path.js';
import { responseToAlert } from '../../../src/sources/grpc-convert.js';
import { alertDoc, fieldKey, longRun, mutatedBytes, nastyString } from '../arbitraries.js';
import { thrown, type FuzzTarget } from '../harness.js';
import { SMALL_LIMITS, checkWithinLimits } from './http.js';

const m = loadFalcoProtos().sub;

const anyValue: fc.Arbitrary<unknown> = fc.oneof(nastyString, fc.integer(), fc.constant(null), fc.constant(undefined), fc.boolean(), fc.array(nastyString, { maxLength: 3 }), fc.object({ maxDepth: 2 }));

/** A decoded falco.outputs.response as protobuf would give it (keepCase, longs as strings, enums as numbers), often malformed. */
const response: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    time: fc.oneof(
      fc.record({ seconds: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String), fc.integer().map(String), nastyString), nanos: fc.oneof(fc.integer({ min: -1, max: 1_000_000_000 }), fc.constant(0)) }),
      anyValue,
    ),
    priority: fc.oneof(fc.integer({ min: -1, max: 9 }), fc.constantFrom(...PRIORITIES), anyValue),
    source_deprecated: fc.oneof(fc.integer({ min: -1, max: 5 }), anyValue),
    source: fc.oneof(fc.constantFrom('syscall', 'k8s_audit', 'internal', ''), nastyString),
    rule: fc.oneof(nastyString, fc.constant('Terminal shell in container')),
    output: fc.oneof(
      { weight: 3, arbitrary: nastyString },
      { weight: 3, arbitrary: alertDoc().map((d) => d.text) },
      { weight: 1, arbitrary: longRun },
      { weight: 1, arbitrary: fc.constantFrom('{', '{}', '{"rule":"x","priority":"Debug","output":1}', '{"rule":"x","priority":"Debug","output_fields":[1]}') },
    ),
    output_fields: fc.oneof({ weight: 4, arbitrary: fc.dictionary(fieldKey, fc.oneof(nastyString, longRun, fc.bigInt().map(String), fc.constantFrom('true', 'false', '<NA>', '13:44:05.478445995'))) }, { weight: 1, arbitrary: anyValue }),
    hostname: fc.oneof(nastyString, anyValue),
    tags: fc.oneof(fc.array(nastyString, { maxLength: 80 }), anyValue),
  },
  { requiredKeys: [] },
);

function checkConverted(msg: unknown, l: InputLimits): Alert | null {
  let a: Alert | undefined;
  const err = thrown(() => (a = responseToAlert(msg, { limits: l, receivedAtMs: 0 })));
  if (err !== undefined) {
    if (!(err instanceof InvalidAlertError)) throw new Error(`responseToAlert threw ${String(err)}`);
    expect(err.code).toBe('E_INVALID_ALERT');
    if (err instanceof InputLimitError) expect(err.limit).toBe('json_depth');
    return null;
  }
  if (!a) throw new Error('no alert');
  checkWithinLimits(a, l);
  return a;
}

type GrpcInput = { readonly kind: 'decoded'; readonly msg: Record<string, unknown>; readonly small: boolean } | { readonly kind: 'wire'; readonly bytes: Buffer; readonly small: boolean };

export const grpcMessages: FuzzTarget<GrpcInput> = {
  name: 'gRPC falco.outputs.response → Alert',
  module: 'src/sources/grpc-convert.ts, protobuf decoding (src/sources/grpc.ts)',
  arb: fc.oneof(
    fc.record({ kind: fc.constant('decoded' as const), msg: response, small: fc.boolean() }),
    fc.record({
      kind: fc.constant('wire' as const),
      bytes: fc.oneof(
        // Valid encodings of valid-ish messages, then mutated; and raw bytes.
        mutatedBytes(response.map((r) => {
          try {
            return m.responseSerialize(r);
          } catch {
            return Buffer.alloc(0);
          }
        })),
        fc.uint8Array({ maxLength: 600 }).map((u) => Buffer.from(u)),
      ),
      small: fc.boolean(),
    }),
  ),
  check: (x) => {
    const l = x.small ? SMALL_LIMITS : DEFAULT_INPUT_LIMITS;
    if (x.kind === 'decoded') {
      checkConverted(x.msg, l);
      return;
    }
    // The decoder may refuse bytes (an Error the source counts); it never hangs or throws non-Errors.
    let decoded: unknown;
    const err = thrown(() => (decoded = m.responseDeserialize(x.bytes)));
    if (err !== undefined) {
      expect(err).toBeInstanceOf(Error);
      return;
    }
    const a = checkConverted(decoded, l);
    if (a && a.companion[TRUNCATED_KEY] === undefined) {
      // Round trip through the wire: encoding the decoded message again gives the same alert.
      const again = checkConverted(m.responseDeserialize(m.responseSerialize(decoded as object)), l);
      expect(again?.outputFields).toEqual(a.outputFields);
      expect(again?.output).toBe(a.output);
      expect(again?.timeNs).toBe(a.timeNs);
    }
  },
  shortRuns: 300,
};
