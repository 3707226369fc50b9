/**
 * The rule engine of the Falco model: every event of the libsinsp model (./sinsp.ts) is matched
 * against the loaded rules in load order; with `rule_matching: first` (Falco's default, modelled
 * here) only the first matching rule of an event fires, with `all` every matching rule does. A
 * rule whose condition pins evt.type only sees those event types (Falco's evttype index); the
 * result is the same, it is only faster. Each match is rendered as the JSON line Falco 0.40
 * prints (./render.mjs).
 */
import type { Trace } from '../kernel/events.js';
import { evaluate, type FieldRef, type FieldValue, type Node } from './evaluate.js';
import { renderAlert } from './render.mjs';
import type { CompiledRule, RuleSet } from './rules.js';
import { replay, type FalcoEvent, type ModelOptions } from './sinsp.js';

export interface EngineOptions {
  readonly rules: RuleSet;
  readonly matching?: 'first' | 'all';
  readonly hostname: string;
  /** Field types (render.mjs loadFieldTypes over supported-fields-falco-0.40.0.txt). */
  readonly fieldTypes: ReadonlyMap<string, string>;
}

export interface ModelAlert {
  /** The JSON line as Falco prints it. */
  readonly line: string;
  readonly rule: CompiledRule;
  readonly evtType: string;
  readonly evtDir: '>' | '<';
  /** evt.num of the event (alerts of one event share it). */
  readonly eventNum: number;
  readonly timeNs: bigint;
  readonly pid: number;
  readonly tid: number;
}

/** The event types a condition can match, or null when it is not pinned to a set. */
export function eventTypes(node: Node): Set<string> | null {
  switch (node.type) {
    case 'check':
      if (node.field.name !== 'evt.type') return null;
      if (node.op === '=' || node.op === '==') return new Set(node.operands.map((o) => (o.kind === 'value' ? o.text : '')));
      if (node.op === 'in') return new Set(node.operands.map((o) => (o.kind === 'value' ? o.text : '')));
      return null;
    case 'and': {
      let acc: Set<string> | null = null;
      for (const c of node.children) {
        const s = eventTypes(c);
        if (s === null) continue;
        const keep: Set<string> = s;
        const prev: Set<string> | null = acc;
        acc = prev === null ? keep : new Set([...prev].filter((x: string) => keep.has(x)));
      }
      return acc;
    }
    case 'or': {
      const acc = new Set<string>();
      for (const c of node.children) {
        const s = eventTypes(c);
        if (s === null) return null;
        for (const x of s) acc.add(x);
      }
      return acc;
    }
    default:
      return null;
  }
}

const refCache = new Map<string, FieldRef>();

export function refOf(key: string): FieldRef {
  let r = refCache.get(key);
  if (!r) {
    const m = /^([^[]+)(?:\[(.*)\])?$/.exec(key);
    const name = m?.[1] ?? key;
    const arg = m?.[2] ?? null;
    r = { raw: key, name, arg, transformers: [] };
    refCache.set(key, r);
  }
  return r;
}

/** Field value → what render.mjs takes (null for none; multi-valued fields joined). */
function renderable(v: FieldValue): unknown {
  if (v === undefined) return null;
  if (Array.isArray(v)) return v.join(',');
  return v;
}

export class RuleEngine {
  private readonly byType = new Map<string, CompiledRule[]>();
  private readonly anyType: CompiledRule[] = [];
  private readonly ordered: { rule: CompiledRule; types: Set<string> | null }[];

  constructor(private readonly opts: EngineOptions) {
    this.ordered = opts.rules.rules.map((rule) => ({ rule, types: eventTypes(rule.condition) }));
    for (const { rule, types } of this.ordered) {
      if (types === null) this.anyType.push(rule);
      else
        for (const t of types) {
          const list = this.byType.get(t) ?? [];
          list.push(rule);
          this.byType.set(t, list);
        }
    }
  }

  /** The rules an event of this type is checked against, in load order. */
  private candidates(type: string): CompiledRule[] {
    const typed = this.byType.get(type) ?? [];
    if (this.anyType.length === 0) return typed;
    return [...typed, ...this.anyType].sort((a, b) => a.index - b.index);
  }

  /** Evaluate one model event; returns the alerts it produces. */
  match(ev: FalcoEvent): ModelAlert[] {
    const out: ModelAlert[] = [];
    const resolve = (ref: FieldRef): FieldValue => ev.field(ref);
    for (const rule of this.candidates(ev.type)) {
      if (!evaluate(rule.condition, resolve)) continue;
      const line = renderAlert(
        { name: rule.name, output: rule.output, priority: rule.priority, tags: rule.tags },
        (key: string) => renderable(ev.field(refOf(key))),
        ev.timeNs,
        this.opts.hostname,
        this.opts.fieldTypes,
      );
      out.push({ line, rule, evtType: ev.type, evtDir: ev.dir, eventNum: ev.num, timeNs: ev.timeNs, pid: ev.pid, tid: ev.tid });
      if ((this.opts.matching ?? 'first') === 'first') break;
    }
    return out;
  }
}

/**
 * From the alerts of a `rule_matching: all` run, those a default (`first`) Falco prints: the first
 * alert of each event (alerts come in load order within an event).
 */
export function firstMatches(all: readonly ModelAlert[]): ModelAlert[] {
  const seen = new Set<number>();
  const out: ModelAlert[] = [];
  for (const a of all) {
    if (seen.has(a.eventNum)) continue;
    seen.add(a.eventNum);
    out.push(a);
  }
  return out;
}

/** Replay a trace through the libsinsp model and the rules: the alerts a Falco 0.40 would print. */
export function falcoAlerts(trace: Trace, model: ModelOptions, engine: EngineOptions, onEvent?: (e: FalcoEvent) => void): ModelAlert[] {
  const eng = new RuleEngine(engine);
  const alerts: ModelAlert[] = [];
  replay(trace, model, (ev) => {
    onEvent?.(ev);
    alerts.push(...eng.match(ev));
  });
  return alerts;
}
