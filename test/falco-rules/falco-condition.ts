/**
 * A small parser for Falco's rule condition grammar, for tests: boolean operators (and, or, not),
 * parentheses, field checks with the comparison operators, list operands, macro references and
 * field transformers. It also extracts the `%field` references of an output string.
 *
 * It is stricter than it needs to be for linting (unknown operators, unbalanced parentheses, a
 * field without an operator, an empty operand are errors) and is run over the official rules files
 * as a self-test.
 */

export const BINARY_OPERATORS = [
  '=',
  '==',
  '!=',
  '<',
  '<=',
  '>',
  '>=',
  'contains',
  'icontains',
  'bcontains',
  'startswith',
  'istartswith',
  'bstartswith',
  'endswith',
  'iendswith',
  'glob',
  'iglob',
  'regex',
] as const;
export const LIST_OPERATORS = ['in', 'intersects', 'pmatch'] as const;
export const UNARY_OPERATORS = ['exists'] as const;
const WORD_OPERATORS = new Set<string>([
  ...BINARY_OPERATORS.filter((o) => /^[a-z]/.test(o)),
  ...LIST_OPERATORS,
  ...UNARY_OPERATORS,
]);
const SYMBOL_OPERATORS = ['!=', '==', '<=', '>=', '=', '<', '>'] as const;
/** Field transformers (Falco 0.38+): `tolower(proc.name)`, `val(fd.name)`, ... */
const TRANSFORMERS = new Set(['tolower', 'toupper', 'b64', 'basename', 'val', 'len']);

export type Operand = { readonly kind: 'value'; readonly text: string; readonly quoted: boolean } | { readonly kind: 'field'; readonly field: FieldRef };

export interface FieldRef {
  /** As written, e.g. `proc.aname[2]`, `evt.arg.domain`. */
  readonly raw: string;
  /** Without the bracket argument: `proc.aname`, `evt.arg.domain`. */
  readonly name: string;
  /** The bracket argument (`2`, `/proc*`), or null. */
  readonly arg: string | null;
  readonly transformers: readonly string[];
}

export type Node =
  | { readonly type: 'and' | 'or'; readonly children: readonly Node[] }
  | { readonly type: 'not'; readonly child: Node }
  | { readonly type: 'macro'; readonly name: string }
  | {
      readonly type: 'check';
      readonly field: FieldRef;
      readonly op: string;
      /** Empty for `exists`; one for binary operators; the items for list operators. */
      readonly operands: readonly Operand[];
    };

export class ConditionSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`${message} at offset ${offset}`);
    this.name = 'ConditionSyntaxError';
  }
}

const IDENT = /[A-Za-z_][A-Za-z0-9_.-]*/y;
const BARE_VALUE = /[^\s(),"']+/y;

class Parser {
  private pos = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    this.ws();
    if (this.pos >= this.src.length) throw new ConditionSyntaxError('empty condition', 0);
    const node = this.or();
    this.ws();
    if (this.pos < this.src.length) {
      const rest = this.src.slice(this.pos, this.pos + 20);
      throw new ConditionSyntaxError(rest.startsWith(')') ? 'unbalanced ")"' : `unexpected "${rest}"`, this.pos);
    }
    return node;
  }

  private ws(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos] ?? '')) this.pos++;
  }

  private keyword(word: string): boolean {
    this.ws();
    if (!this.src.startsWith(word, this.pos)) return false;
    const next = this.src[this.pos + word.length];
    if (next !== undefined && !/[\s(]/.test(next)) return false;
    this.pos += word.length;
    return true;
  }

  private or(): Node {
    const children = [this.and()];
    while (this.keyword('or')) children.push(this.and());
    return children.length === 1 ? (children[0] as Node) : { type: 'or', children };
  }

  private and(): Node {
    const children = [this.not()];
    while (this.keyword('and')) children.push(this.not());
    return children.length === 1 ? (children[0] as Node) : { type: 'and', children };
  }

  private not(): Node {
    if (this.keyword('not')) return { type: 'not', child: this.not() };
    return this.primary();
  }

  private primary(): Node {
    this.ws();
    if (this.src[this.pos] === '(') {
      const open = this.pos;
      this.pos++;
      const inner = this.or();
      this.ws();
      if (this.src[this.pos] !== ')') throw new ConditionSyntaxError('unbalanced "(" (missing ")")', open);
      this.pos++;
      return inner;
    }
    return this.check();
  }

  private ident(): string | null {
    IDENT.lastIndex = this.pos;
    const m = IDENT.exec(this.src);
    if (!m) return null;
    this.pos += m[0].length;
    return m[0];
  }

  private fieldRef(first: string): FieldRef {
    const transformers: string[] = [];
    let name = first;
    // transformer(field) or nested transformers
    while (TRANSFORMERS.has(name) && this.src[this.pos] === '(') {
      transformers.push(name);
      this.pos++;
      this.ws();
      const inner = this.ident();
      if (inner === null) throw new ConditionSyntaxError(`field expected inside ${name}()`, this.pos);
      name = inner;
    }
    let arg: string | null = null;
    if (this.src[this.pos] === '[') {
      const close = this.src.indexOf(']', this.pos);
      if (close < 0) throw new ConditionSyntaxError('unbalanced "[" in field argument', this.pos);
      arg = this.src.slice(this.pos + 1, close);
      if (arg.length === 0) throw new ConditionSyntaxError('empty field argument []', this.pos);
      this.pos = close + 1;
    }
    for (let i = 0; i < transformers.length; i++) {
      this.ws();
      if (this.src[this.pos] !== ')') throw new ConditionSyntaxError('missing ")" after transformer argument', this.pos);
      this.pos++;
    }
    const raw = arg === null ? name : `${name}[${arg}]`;
    return { raw, name, arg, transformers };
  }

  private operator(): string | null {
    this.ws();
    for (const sym of SYMBOL_OPERATORS) {
      if (this.src.startsWith(sym, this.pos)) {
        this.pos += sym.length;
        return sym;
      }
    }
    const save = this.pos;
    const word = this.ident();
    if (word !== null && WORD_OPERATORS.has(word)) {
      const next = this.src[this.pos];
      if (next === undefined || /[\s()"']/.test(next)) return word;
    }
    this.pos = save;
    return null;
  }

  private quoted(): string {
    const quote = this.src[this.pos] as string;
    const start = this.pos;
    this.pos++;
    let out = '';
    while (this.pos < this.src.length) {
      const c = this.src[this.pos] as string;
      if (c === '\\' && this.pos + 1 < this.src.length) {
        out += this.src[this.pos + 1];
        this.pos += 2;
        continue;
      }
      if (c === quote) {
        this.pos++;
        return out;
      }
      out += c;
      this.pos++;
    }
    throw new ConditionSyntaxError('unterminated string', start);
  }

  private value(): Operand {
    this.ws();
    const c = this.src[this.pos];
    if (c === '"' || c === "'") return { kind: 'value', text: this.quoted(), quoted: true };
    // val(field) / transformer(field) as right-hand side
    const save = this.pos;
    const word = this.ident();
    if (word !== null && TRANSFORMERS.has(word) && this.src[this.pos] === '(') {
      return { kind: 'field', field: this.fieldRef(word) };
    }
    this.pos = save;
    BARE_VALUE.lastIndex = this.pos;
    const m = BARE_VALUE.exec(this.src);
    if (!m) throw new ConditionSyntaxError('operand expected', this.pos);
    this.pos += m[0].length;
    return { kind: 'value', text: m[0], quoted: false };
  }

  private list(): Operand[] {
    this.ws();
    if (this.src[this.pos] !== '(') throw new ConditionSyntaxError('"(" expected after list operator', this.pos);
    this.pos++;
    const items: Operand[] = [];
    this.ws();
    if (this.src[this.pos] === ')') {
      this.pos++;
      return items;
    }
    for (;;) {
      items.push(this.value());
      this.ws();
      const c = this.src[this.pos];
      if (c === ',') {
        this.pos++;
        continue;
      }
      if (c === ')') {
        this.pos++;
        return items;
      }
      throw new ConditionSyntaxError('"," or ")" expected in list', this.pos);
    }
  }

  private check(): Node {
    this.ws();
    const start = this.pos;
    const first = this.ident();
    if (first === null) throw new ConditionSyntaxError(`field or macro expected, got "${this.src.slice(this.pos, this.pos + 10)}"`, this.pos);
    if (first === 'and' || first === 'or') throw new ConditionSyntaxError(`operand expected before "${first}"`, start);
    const field = this.fieldRef(first);
    const op = this.operator();
    if (op === null) {
      // A bare identifier is a macro reference.
      if (field.arg !== null || field.transformers.length > 0 || field.name.includes('.')) {
        throw new ConditionSyntaxError(`field "${field.raw}" without an operator`, start);
      }
      return { type: 'macro', name: field.name };
    }
    if ((UNARY_OPERATORS as readonly string[]).includes(op)) return { type: 'check', field, op, operands: [] };
    if ((LIST_OPERATORS as readonly string[]).includes(op)) return { type: 'check', field, op, operands: this.list() };
    return { type: 'check', field, op, operands: [this.value()] };
  }
}

export function parseCondition(condition: string): Node {
  return new Parser(condition).parse();
}

export interface ConditionRefs {
  readonly fields: FieldRef[];
  readonly macros: string[];
  /** Unquoted list-operator items (candidates for list references). */
  readonly listItems: string[];
  readonly operators: string[];
}

export function collectRefs(node: Node, into: ConditionRefs = { fields: [], macros: [], listItems: [], operators: [] }): ConditionRefs {
  switch (node.type) {
    case 'and':
    case 'or':
      for (const c of node.children) collectRefs(c, into);
      break;
    case 'not':
      collectRefs(node.child, into);
      break;
    case 'macro':
      into.macros.push(node.name);
      break;
    case 'check':
      into.fields.push(node.field);
      into.operators.push(node.op);
      for (const o of node.operands) {
        if (o.kind === 'field') into.fields.push(o.field);
        else if (!o.quoted && (LIST_OPERATORS as readonly string[]).includes(node.op)) into.listItems.push(o.text);
      }
      break;
  }
  return into;
}

/** Replace macro references by their parsed conditions (recursively). Unknown macros stay as they are. */
export function expandMacros(node: Node, macros: ReadonlyMap<string, Node>, depth = 0): Node {
  if (depth > 50) throw new Error('macro expansion too deep (cycle?)');
  switch (node.type) {
    case 'and':
    case 'or':
      return { type: node.type, children: node.children.map((c) => expandMacros(c, macros, depth + 1)) };
    case 'not':
      return { type: 'not', child: expandMacros(node.child, macros, depth + 1) };
    case 'macro': {
      const def = macros.get(node.name);
      return def === undefined ? node : { type: 'and', children: [node, expandMacros(def, macros, depth + 1)] };
    }
    case 'check':
      return node;
  }
}

/** `%field` references of an output string (`%proc.aname[2]`, `%evt.arg.domain`, `%(field)` is not used by us). */
export function outputFields(output: string): FieldRef[] {
  const out: FieldRef[] = [];
  const re = /%([A-Za-z_][A-Za-z0-9_.]*)(\[[^\]]*\])?/g;
  for (const m of output.matchAll(re)) {
    const name = (m[1] as string).replace(/\.$/, '');
    const arg = m[2] === undefined ? null : m[2].slice(1, -1);
    out.push({ raw: arg === null ? name : `${name}[${arg}]`, name, arg, transformers: [] });
  }
  return out;
}

/**
 * The base name to look a field up in a supported-fields list: `evt.arg.domain` → `evt.arg`,
 * `evt.rawarg.res` → `evt.rawarg`, `evt.type.is.open` → `evt.type.is`; others unchanged.
 */
export function fieldBase(name: string, known: ReadonlySet<string>): string {
  if (known.has(name)) return name;
  for (const prefix of ['evt.arg', 'evt.rawarg', 'evt.type.is']) {
    if (name.startsWith(`${prefix}.`) && known.has(prefix)) return prefix;
  }
  return name;
}
