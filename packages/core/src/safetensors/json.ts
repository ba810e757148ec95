/**
 * A strict JSON parser for safetensors headers and index files.
 *
 * JSON.parse is not enough for hostile headers: it silently keeps the last of
 * two duplicate keys, reorders integer-like keys (so header order would be
 * lost for a tensor named "0"), and turns `1e3` or `16.0` into integers that
 * the reference implementation would reject as offsets. This parser keeps
 * every object entry in source order (duplicates included) and keeps the raw
 * text of numbers so callers can insist on plain integer literals.
 */

export class JsonNumber {
  constructor(
    readonly raw: string,
    readonly value: number,
  ) {}
}

export class JsonObject {
  readonly entries: [string, JsonValue][] = [];
}

/** Plain non-negative integer literals below 2^53 come back as numbers; every other number as a JsonNumber. */
export type JsonValue = null | boolean | string | number | JsonNumber | JsonValue[] | JsonObject;

export class JsonSyntaxError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(`${message} at character ${position}`);
    this.name = 'JsonSyntaxError';
  }
}

/** Nesting deeper than this is refused: headers are three levels deep, and recursion must not overflow the stack. */
export const MAX_JSON_DEPTH = 64;

/** The value of a plain non-negative integer literal that is exactly representable, else null. */
export function safeInteger(v: JsonValue): number | null {
  return typeof v === 'number' ? v : null;
}

export function parseJson(text: string): JsonValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) throw new JsonSyntaxError('unexpected data after the JSON value', p.i);
  return v;
}

/** Plain JavaScript value of a parsed document (objects keep their last duplicate, like JSON.parse). */
export function toPlain(v: JsonValue): unknown {
  if (typeof v === 'number') return v;
  if (v instanceof JsonNumber) return v.value;
  if (v instanceof JsonObject) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of v.entries) setOwn(out, k, toPlain(x));
    return out;
  }
  if (Array.isArray(v)) return v.map(toPlain);
  return v;
}

/** Assignment that also works for the key "__proto__" (which plain assignment would treat as the prototype). */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

class Parser {
  i = 0;
  constructor(readonly s: string) {}

  ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  fail(message: string): never {
    throw new JsonSyntaxError(message, this.i);
  }

  value(depth: number): JsonValue {
    if (depth > MAX_JSON_DEPTH) this.fail('nesting too deep');
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b: // {
        return this.object(depth);
      case 0x5b: // [
        return this.array(depth);
      case 0x22: // "
        return this.string();
      case 0x74:
        return this.literal('true', true);
      case 0x66:
        return this.literal('false', false);
      case 0x6e:
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
        return this.fail(Number.isNaN(c) ? 'unexpected end of JSON' : 'unexpected character');
    }
  }

  literal<T>(word: string, v: T): T {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail('invalid literal');
  }

  number(): number | JsonNumber {
    const start = this.i;
    const s = this.s;
    let i = this.i;
    // Fast path for what headers are made of: short plain integers, kept as numbers (no object per number).
    let v = 0;
    while (i - start < 15) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      i++;
    }
    const end = s.charCodeAt(i);
    if (
      i > start &&
      !(i - start > 1 && s.charCodeAt(start) === 0x30) &&
      end !== 0x2e &&
      end !== 0x65 &&
      end !== 0x45 &&
      !(end >= 0x30 && end <= 0x39)
    ) {
      this.i = i;
      return v;
    }
    i = start;
    if (s.charCodeAt(i) === 0x2d) i++;
    const digits = (): number => {
      const from = i;
      while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++;
      return i - from;
    };
    if (s.charCodeAt(i) === 0x30) i++;
    else if (digits() === 0) {
      this.i = i;
      this.fail('invalid number');
    }
    if (s.charCodeAt(i) === 0x2e) {
      i++;
      if (digits() === 0) {
        this.i = i;
        this.fail('invalid number');
      }
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (digits() === 0) {
        this.i = i;
        this.fail('invalid number');
      }
    }
    this.i = i;
    const raw = s.slice(start, i);
    const value = Number(raw);
    // Long plain integers that are still exact (up to 2^53 - 1) count as integers too.
    if (/^(?:0|[1-9][0-9]*)$/.test(raw) && Number.isSafeInteger(value)) return value;
    return new JsonNumber(raw, value);
  }

  string(): string {
    const s = this.s;
    let i = this.i + 1;
    let out = '';
    let chunkStart = i;
    for (;;) {
      if (i >= s.length) {
        this.i = i;
        this.fail('unterminated string');
      }
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return out.length === 0 ? s.slice(chunkStart, i) : out + s.slice(chunkStart, i);
      }
      if (c < 0x20) {
        this.i = i;
        this.fail('control character in string');
      }
      if (c !== 0x5c) {
        i++;
        continue;
      }
      out += s.slice(chunkStart, i);
      const esc = s.charCodeAt(i + 1);
      i += 2;
      switch (esc) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          const u = this.hex4(i);
          i += 4;
          if (u >= 0xd800 && u <= 0xdbff) {
            // A high surrogate must be followed by an escaped low surrogate: lone
            // surrogates are not Unicode text and could not be written back as UTF-8.
            if (s.charCodeAt(i) !== 0x5c || s.charCodeAt(i + 1) !== 0x75) {
              this.i = i;
              this.fail('lone surrogate in string');
            }
            const lo = this.hex4(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) {
              this.i = i;
              this.fail('lone surrogate in string');
            }
            i += 6;
            out += String.fromCharCode(u, lo);
          } else if (u >= 0xdc00 && u <= 0xdfff) {
            this.i = i;
            this.fail('lone surrogate in string');
          } else {
            out += String.fromCharCode(u);
          }
          break;
        }
        default:
          this.i = i - 1;
          this.fail('invalid escape');
      }
      chunkStart = i;
    }
  }

  hex4(at: number): number {
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.s.charCodeAt(at + k);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else {
        this.i = at + k;
        return this.fail('invalid \\u escape');
      }
      v = v * 16 + d;
    }
    return v;
  }

  array(depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s.charCodeAt(this.i);
      this.i++;
      if (c === 0x5d) return out;
      if (c !== 0x2c) {
        this.i--;
        this.fail("expected ',' or ']'");
      }
    }
  }

  object(depth: number): JsonObject {
    this.i++;
    const out = new JsonObject();
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail('expected a string key');
      const key = this.string();
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail("expected ':'");
      this.i++;
      this.ws();
      out.entries.push([key, this.value(depth + 1)]);
      this.ws();
      const c = this.s.charCodeAt(this.i);
      this.i++;
      if (c === 0x7d) return out;
      if (c !== 0x2c) {
        this.i--;
        this.fail("expected ',' or '}'");
      }
    }
  }
}
