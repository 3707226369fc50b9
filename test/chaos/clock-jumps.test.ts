/**
 * Chaos: the clock jumping. Detection windows run on event time (the alert's `time`), so the
 * clock that can jump is the one in the alerts: a Falco host whose clock is set ten years ahead
 * for one alert (or a forged alert), a node whose clock steps back 30 days (NTP after boot, a VM
 * restored from a snapshot), and a restart in between (the detection clock is checkpointed). The
 * shipped attack cases (examples/detection-tests: a C2 beacon, a container escape chain) replayed
 * after each jump, each in a container of its own, must still be detected; every accepted alert
 * is delivered.
 *
 * The process's wall clock is not jumped here: it is injected (src/clock.ts) and only times out
 * requests, stamps receive times and ids; libfaketime is not available on this machine. What the
 * wall clock drives is covered by the unit tests with a manual clock (docs/security.md, "Clock
 * jumps").
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatTimeNs, parseTime } from '../../src/alert.js';
import { isJsonObject, LosslessNumber, parse, stringify, type JsonObject } from '../../src/json/lossless.js';
import { withOutputFields } from '../support/falco-alerts.js';
import { until } from '../support/wait.js';
import { chaosScope, endsHealthyNothingLost, markedAlert, metricValue, postAlert } from './support.js';

const s = chaosScope('fc-chaos-clock-');

const MIN = 60_000_000_000n;
const DAY = 24n * 60n * MIN;
const YEAR = 365n * DAY;

const caseLines = (name: string): string[] => readFileSync(`examples/detection-tests/${name}/alerts.jsonl`, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
const BEACON = caseLines('c2-beacon');
const ESCAPE = caseLines('escape-chain');
const BEACON_RULE = 'C2 beaconing: periodic outbound connections';
const ESCAPE_RULE = /^Container escape/;

const timeOf = (line: string): bigint => {
  const t = parseTime(String((parse(line) as JsonObject)['time']));
  if (!t) throw new Error('case line without time');
  return t.ns;
};

/** A case line moved by `shiftNs`, in container `cid`, marked with `seq`. */
function moved(line: string, shiftNs: bigint, cid: string, seq: number): string {
  const ns = timeOf(line) + shiftNs;
  const v = parse(withOutputFields(line, { 'container.id': cid, 'test.seq': seq, 'evt.time': new LosslessNumber(ns.toString()) })) as JsonObject;
  return stringify({ ...v, time: formatTimeNs(ns) });
}

describe('chaos: event times jumping ahead and back', () => {
  it('one alert ten years ahead, the stream stepping back 30 days, a restart: windows stay sane, attacks are still detected', async () => {
    const first = await s.httpCompanion();
    const { sidekick: sk, args } = first;
    let { cli, base } = first;
    const acked: number[] = [];
    let seq = 0;
    const send = async (lines: string[], shiftNs: bigint, cid: string): Promise<void> => {
      for (const l of lines) {
        const n = seq++;
        if ((await postAlert(base, moved(l, shiftNs, cid, n))) === 200) acked.push(n);
      }
    };
    const detected = (rule: string | RegExp, cid: string): boolean =>
      sk.accepted.some((a) => {
        const f = a.parsed['output_fields'];
        const r = String(a.parsed['rule']);
        return (typeof rule === 'string' ? r === rule : rule.test(r)) && isJsonObject(f) && f['container.id'] === cid;
      });
    const expectDetected = async (rule: string | RegExp, cid: string, what: string): Promise<void> => until(() => detected(rule, cid), 15_000, `${what}: ${String(rule)} for ${cid}`);
    const beaconSpan = timeOf(BEACON.at(-1) as string) - timeOf(BEACON[0] as string);

    // A: the attacks at their recorded times.
    await send(BEACON, 0n, 'aaaaaaaaaa01');
    await expectDetected(BEACON_RULE, 'aaaaaaaaaa01', 'baseline');

    // B: one alert from ten years ahead, then the stream goes on where it was.
    const ahead = { ...(parse(markedAlert(seq)) as JsonObject), time: formatTimeNs(timeOf(BEACON[0] as string) + 10n * YEAR) };
    expect(await postAlert(base, stringify(ahead))).toBe(200);
    acked.push(seq++);
    let shift = beaconSpan + 2n * MIN;
    await send(ESCAPE, shift, 'bbbbbbbbbb01');
    await send(BEACON, shift, 'bbbbbbbbbb02');
    await expectDetected(ESCAPE_RULE, 'bbbbbbbbbb01', 'after an alert ten years ahead');
    await expectDetected(BEACON_RULE, 'bbbbbbbbbb02', 'after an alert ten years ahead');
    expect(await metricValue(base, /^falco_companion_detect_clock_events_total\{event="outlier_ahead"\} (\d+)$/)).toBeGreaterThanOrEqual(1);

    // C: the node's clock steps back 30 days (the whole stream moves).
    shift = -30n * DAY;
    await send(BEACON, shift, 'cccccccccc01');
    await send(ESCAPE, shift + beaconSpan, 'cccccccccc02');
    await expectDetected(BEACON_RULE, 'cccccccccc01', 'after the clock stepped back 30 days');
    await expectDetected(ESCAPE_RULE, 'cccccccccc02', 'after the clock stepped back 30 days');
    expect(await metricValue(base, /^falco_companion_detect_clock_events_total\{event="jump_behind"\} (\d+)$/)).toBeGreaterThanOrEqual(1);

    // D: a restart: the checkpointed clock is the stepped-back one, not ten years ahead.
    expect(await cli.stop('SIGTERM')).toBe(0);
    cli = s.companion(args);
    base = `http://${await cli.httpAddress()}`;
    shift = -30n * DAY + 2n * beaconSpan;
    await send(BEACON, shift, 'dddddddddd01');
    await expectDetected(BEACON_RULE, 'dddddddddd01', 'after a restart');
    expect(await metricValue(base, /^falco_companion_detect_clock_events_total\{event="(?:outlier|jump)_\w+"\} (\d+)$/)).toBe(0);

    await endsHealthyNothingLost({ cli, base, sidekick: sk, acked, probeSeq: 1_000_000 });
    expect(await cli.stop('SIGTERM')).toBe(0);
  });
});
