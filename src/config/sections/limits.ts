/** Input limits and secret redaction (owned by the hardening work: src/limits.ts, src/redact.ts, docs/security-parsers.md). */
import { bool, int, list, num, obj, str } from '../dsl.js';
import { DEFAULT_FAIR_SHARE, DEFAULT_INPUT_LIMITS, MAX_JSON_DEPTH_CEILING } from '../../limits.js';
import { checkPattern } from '../../redact.js';

const d = DEFAULT_INPUT_LIMITS;

export const limitsSection = obj(
  'Limits on what a sender or a workload can inflate (docs/security-parsers.md). Applied to every alert right after JSON parsing (HTTP, gRPC, JSON lines). Values over a limit are cut and the alert is kept, marked companion.truncated; a document nested deeper than max_json_depth is rejected (HTTP 400 too_deep, a skipped line or message). Counted in input_limited_total{component,limit,action}.',
  {
    max_fields: int('Most output_fields entries kept (the first ones); also the most top-level keys besides Falco\'s own.', d.maxFields, { min: 16, max: 100_000 }),
    max_key_length: int('Longest output_fields or top-level key (longer: the entry is dropped) and longest tag (longer: cut).', d.maxKeyLength, { min: 32, max: 65_536 }),
    max_value_length: int('Longest string value in output_fields or another top-level key, in UTF-16 code units (longer: cut, ending in …). Falco reads at most 4 KiB of arguments or environment.', d.maxValueLength, { min: 256, max: 16 * 1024 * 1024 }),
    max_output_length: int('Longest output text (longer: cut, ending in …).', d.maxOutputLength, { min: 1024, max: 16 * 1024 * 1024 }),
    max_tags: int('Most tags kept (the first ones).', d.maxTags, { min: 4, max: 10_000 }),
    max_json_depth: int('Deepest nesting accepted (the alert object is depth 1, output_fields and tags 2); deeper documents are rejected.', d.maxJsonDepth, { min: 2, max: MAX_JSON_DEPTH_CEILING }),
    container_signals_per_second: num(
      'Signals per second of event time each container (the host counts as one) may feed the detectors beyond its burst; the rest are dropped and counted in signals_dropped_total (the alerts are still forwarded), except the first of each signal kind per second. 0: no limit.',
      DEFAULT_FAIR_SHARE.ratePerSecond,
      { min: 0 },
    ),
    container_signal_burst: int('Signals a container may send at once above container_signals_per_second.', DEFAULT_FAIR_SHARE.burst, { min: 1 }),
  },
);

export const redactSection = obj(
  'Secret redaction (docs/security-parsers.md, "Secrets"). Logs are always redacted (built-in patterns plus `patterns`); forwarded alerts only with `forwarded`.',
  {
    forwarded: bool('Also redact what the sinks forward: output, every string in output_fields (proc.cmdline, proc.env, proc.args, fd.name, ...), the other top-level keys and companion keys; never the rule, time, priority, source, hostname, tags or keys. Detection still sees the original values.', false),
    patterns: list(
      'Regular expressions for more secrets, added to the built-in ones (private keys, Bearer/Basic credentials, AWS key ids, JWTs, GitHub/GitLab/Slack/Google tokens, URL passwords, password=/secret=/token= arguments). `/source/flags` (flags i, m, s, u) or a bare source; a named group `secret` masks only that part. Keep them linear-time: they run on attacker-controlled text.',
      str('regular expression', '', { check: (v) => checkPattern(v) }),
    ),
  },
);
