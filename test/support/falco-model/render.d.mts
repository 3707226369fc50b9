/** Types of ./render.mjs (how Falco 0.40 prints a JSON alert). */
export declare function priorityName(p: string): 'Emergency' | 'Alert' | 'Critical' | 'Error' | 'Warning' | 'Notice' | 'Informational' | 'Debug';
export declare function loadFieldTypes(path: string): Map<string, string>;
export declare function fieldType(types: ReadonlyMap<string, string>, field: string): string;
export declare function textValue(v: unknown): string;
export declare function jsonValue(types: ReadonlyMap<string, string>, field: string, v: unknown): string;
export declare function timeStrings(ns: bigint): { iso: string; clock: string };
export declare function renderAlert(
  rule: { readonly name: string; readonly output: string; readonly priority: string; readonly tags: readonly string[] },
  value: (field: string) => unknown,
  timeNs: bigint,
  hostname: string,
  types: ReadonlyMap<string, string>,
): string;
