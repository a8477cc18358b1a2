/**
 * Parser for containerd's filter syntax.
 *
 * ```
 * filter    := ""  |  selector ("," selector)*
 * selector  := fieldpath [operator value]
 * fieldpath := field ("." field)*
 * field     := [A-Za-z0-9_]+  |  "double-quoted"
 * operator  := "==" | "!=" | "~="
 * value     := bare  |  "double-quoted"  |  /slash-quoted/ (~= only)  |  |bar-quoted| (~= only)
 * bare      := a first character that is none of  , " / | = ! ~  or space, then anything up to
 *              the next "," or space (containerd also refuses a leading "."; we take `a~=.*`)
 * ```
 *
 * As in containerd: quoted strings take Go escapes (`\a \b \f \n \r \t \v \\`, the quote itself,
 * `\ooo`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`; any other escape is an error, so a regexp written
 * `/\d+/` must be `/\\d+/` — or bare: `name~=^v\d+`); space may precede a field, an operator or a
 * value but nowhere else (so `a==b ` and `a ,b` are errors); the empty string matches everything.
 */
import { ErrInvalidArgument } from '@buildcache/errdefs';
import { filterOf, type Filter, type Operator, type Selector } from './match.js';
import { compileRegExp } from './regexp.js';

/**
 * Parses filter strings: the strings are OR-ed, the comma-separated selectors inside one string are
 * AND-ed. No strings, or an empty string among them, match everything (containerd's `ParseAll`).
 * Throws `ErrInvalidArgument` naming the string, the position (0-based, in UTF-16 units) and what
 * was expected; `details` carries `filter`, `index` and `position`.
 */
export function parseFilters(filters: readonly string[]): Filter {
  return filterOf(filters.map((input, index) => new Parser(input, index).selectors()));
}

/** Parses a single filter string (comma-separated selectors, AND-ed). */
export function parseFilter(input: string): Filter {
  return parseFilters([input]);
}

const OPERATORS: ReadonlySet<string> = new Set<Operator>(['==', '!=', '~=']);

const isSpace = (ch: string): boolean => /^\s$/u.test(ch);
const isFieldChar = (ch: string): boolean => /^[A-Za-z0-9_]$/.test(ch);
const isOperatorChar = (ch: string): boolean => ch === '=' || ch === '!' || ch === '~';
/** Bare values run up to a comma, a space or a control character. */
const isValueChar = (ch: string): boolean => ch !== ',' && !isSpace(ch) && !/^\p{Cc}$/u.test(ch);

const SPACE_MESSAGE = 'unexpected space (space may only precede a field, an operator or a value)';

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\',
};
const NUMERIC_ESCAPES: Readonly<Record<string, { digits: number; radix: number }>> = {
  x: { digits: 2, radix: 16 },
  u: { digits: 4, radix: 16 },
  U: { digits: 8, radix: 16 },
};

class Parser {
  private pos = 0;

  constructor(
    private readonly input: string,
    private readonly index: number,
  ) {}

  /** selectors := selector ("," selector)*, or nothing at all for "". */
  selectors(): Selector[] {
    if (this.input === '') return [];
    const out = [this.selector()];
    while (!this.atEnd()) {
      if (isSpace(this.peek())) this.fail(this.pos, SPACE_MESSAGE);
      if (this.peek() !== ',') this.fail(this.pos, `unexpected ${describe(this.peek())}, expected "," or end of filter`);
      this.pos++;
      out.push(this.selector());
    }
    return out;
  }

  private selector(): Selector {
    const fieldpath = this.fieldpath();
    if (this.atEnd() || this.peek() === ',') return { fieldpath, operator: 'present', value: '' };

    const spaceAt = this.pos;
    this.skipSpace();
    if (this.atEnd() || this.peek() === ',') this.fail(spaceAt, SPACE_MESSAGE);
    const opAt = this.pos;
    while (!this.atEnd() && isOperatorChar(this.peek())) this.pos++;
    const op = this.input.slice(opAt, this.pos);
    if (op === '') this.fail(opAt, `expected an operator ("==", "!=" or "~=") or "," or end of filter, found ${describe(this.peek())}`);
    if (!OPERATORS.has(op)) this.fail(opAt, `unsupported operator ${JSON.stringify(op)}, expected "==", "!=" or "~="`);
    const operator = op as Exclude<Operator, 'present'>;

    this.skipSpace();
    const valueAt = this.pos;
    const value = this.value(operator);
    if (operator !== '~=') return { fieldpath, operator, value };
    const regexp = compileRegExp(value, (reason) => this.fail(valueAt, `invalid regexp ${JSON.stringify(value)}: ${reason}`));
    return { fieldpath, operator, value, regexp };
  }

  /** fieldpath := field ("." field)* — no space before a dot. */
  private fieldpath(): string[] {
    const out = [this.field()];
    while (this.peek() === '.') {
      this.pos++;
      out.push(this.field());
    }
    return out;
  }

  private field(): string {
    this.skipSpace();
    const at = this.pos;
    const ch = this.peek();
    if (ch === '"') return this.quoted('"');
    if (ch === '/' || ch === '|') this.fail(at, `field names may only be quoted with '"', found ${describe(ch)}`);
    while (!this.atEnd() && isFieldChar(this.peek())) this.pos++;
    if (this.pos === at) this.fail(at, `expected a field name or a quoted string, found ${describe(ch)}`);
    return this.input.slice(at, this.pos);
  }

  private value(operator: Operator): string {
    const at = this.pos;
    const ch = this.peek();
    if (ch === '"') return this.quoted('"');
    if (ch === '/' || ch === '|') {
      if (operator === '~=') return this.quoted(ch);
      this.fail(at, `only ~= takes ${ch}…${ch}-quoted values; quote this value with '"'`);
    }
    // containerd's scanner also refuses a bare value starting with ".", so `name~=.*` must be written
    // `name~=".*"` there; we accept it, since nothing else can stand after an operator.
    if (this.atEnd() || ch === ',' || isOperatorChar(ch) || !isValueChar(ch)) {
      this.fail(at, `expected a value or a quoted string, found ${describe(ch)}`);
    }
    while (!this.atEnd() && isValueChar(this.peek())) this.pos++;
    return this.input.slice(at, this.pos);
  }

  /** A string between `quote`s with Go escapes; `pos` is on the opening quote. */
  private quoted(quote: string): string {
    const start = this.pos;
    this.pos++;
    let out = '';
    for (;;) {
      if (this.atEnd() || this.peek() === '\n') this.fail(start, 'quoted literal not terminated');
      const ch = this.peek();
      if (ch === quote) {
        this.pos++;
        return out;
      }
      if (ch !== '\\') {
        out += ch;
        this.pos += ch.length;
        continue;
      }
      out += this.escape(quote, start);
    }
  }

  /** One escape sequence; `pos` is on the backslash, `start` on the opening quote. */
  private escape(quote: string, start: number): string {
    const at = this.pos;
    const c = this.input[at + 1];
    if (c === undefined) this.fail(start, 'quoted literal not terminated');
    const simple = SIMPLE_ESCAPES[c];
    if (simple !== undefined || c === quote) {
      this.pos += 2;
      return simple ?? quote;
    }
    const numeric = NUMERIC_ESCAPES[c] ?? (c >= '0' && c <= '7' ? { digits: 3, radix: 8 } : undefined);
    if (numeric === undefined) this.fail(at, `illegal escape sequence ${describe('\\' + c)}`);
    const digitsAt = c >= '0' && c <= '7' ? at + 1 : at + 2;
    const digits = this.input.slice(digitsAt, digitsAt + numeric.digits);
    const pattern = numeric.radix === 8 ? /^[0-7]+$/ : /^[0-9A-Fa-f]+$/;
    if (digits.length !== numeric.digits || !pattern.test(digits)) {
      this.fail(at, `illegal escape sequence ${describe(this.input.slice(at, digitsAt + numeric.digits))}: expected ${numeric.digits} ${numeric.radix === 8 ? 'octal' : 'hex'} digits`);
    }
    const code = parseInt(digits, numeric.radix);
    if ((numeric.radix === 8 && code > 0xff) || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      this.fail(at, `illegal escape sequence ${describe(this.input.slice(at, digitsAt + numeric.digits))}: not a valid character`);
    }
    this.pos = digitsAt + numeric.digits;
    return String.fromCodePoint(code);
  }

  private peek(): string {
    const cp = this.input.codePointAt(this.pos);
    return cp === undefined ? '' : String.fromCodePoint(cp);
  }

  private atEnd(): boolean {
    return this.pos >= this.input.length;
  }

  private skipSpace(): void {
    while (!this.atEnd() && isSpace(this.peek())) this.pos++;
  }

  /** Throws the parse error: `filters: parse error: [before >|x|< after]: msg at N`. */
  private fail(position: number, message: string): never {
    const { input } = this;
    let where = `[${input}]`;
    if (position < input.length) {
      const cp = input.codePointAt(position) ?? 0;
      const end = position + String.fromCodePoint(cp).length;
      where = `[${input.slice(0, position)} >|${input.slice(position, end)}|< ${input.slice(end)}]`;
    }
    throw new ErrInvalidArgument(`filters: parse error: ${where}: ${message} at ${position}`, {
      details: { filter: input, index: this.index, position },
    });
  }
}

/** A character or snippet for a message: quoted, with control characters escaped. */
function describe(text: string): string {
  if (text === '') return 'end of filter';
  return /\p{Cc}/u.test(text) ? JSON.stringify(text) : `"${text}"`;
}
