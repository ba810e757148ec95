/**
 * The one strict parser for numbers, number lists and dates that come in as
 * text: command-line flags, environment variables, configuration files.
 *
 * - Numbers are decimal: an optional sign, digits with an optional fraction
 *   and exponent (`0.5`, `-2`, `.5`, `1e-3`). No hex, octal or binary
 *   (`0x10`, `0o10`, `0b10`), no leading zeros that read as octal elsewhere
 *   (`010`), no `Infinity`/`NaN`, no surrounding whitespace, nothing empty.
 * - Lists are comma separated, with optional spaces around the commas and no
 *   empty items (`1,,2` and `1,2,` are refused).
 * - Dates are unix seconds (a non-negative integer) or ISO-8601: a date
 *   (`2024-03-07`, midnight UTC) or a date-time (`2024-03-07T10:00`,
 *   `…T10:00:00`, `…T10:00:00.5`) with an optional zone (`Z`, `+02:00`,
 *   `-0130`); a date-time without a zone is UTC.
 *
 * Every refusal is one WgitError naming what was parsed (`--lambda`,
 * `WGIT_THREADS` …) and the text, with a stable code chosen by the caller
 * (E_BAD_PARAM for flags by default, E_BAD_ENV for environment variables,
 * E_BAD_DATE for dates).
 */
import { type ErrorCode, WgitError } from './errors.js';

export interface ParseOptions {
  /** What is being parsed, as the user wrote it: `--lambda`, `WGIT_THREADS`. */
  what: string;
  /** Error code of a refusal (default E_BAD_PARAM; E_BAD_DATE for dates). */
  code?: ErrorCode;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Extra fields for the error's data. */
  data?: Record<string, unknown>;
}

const DECIMAL = /^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const INTEGER = /^[+-]?(?:0|[1-9][0-9]*)$/;

/** True when `text` is a decimal number in the accepted form (finite or not is checked by parseDecimal). */
export function isDecimalText(text: string): boolean {
  return DECIMAL.test(text);
}

function refuse(text: string, why: string, o: ParseOptions, code = o.code ?? 'E_BAD_PARAM'): WgitError {
  return new WgitError(code, `${o.what} ${why}, got ${JSON.stringify(text)}`, { ...o.data, value: text });
}

function bounded(x: number, text: string, o: ParseOptions): number {
  if (o.min !== undefined && x < o.min) throw refuse(text, `must be at least ${o.min}`, o);
  if (o.max !== undefined && x > o.max) throw refuse(text, `must be at most ${o.max}`, o);
  return x === 0 ? 0 : x; // no -0
}

/** A finite decimal number. */
export function parseDecimal(text: string, o: ParseOptions): number {
  if (typeof text !== 'string' || !DECIMAL.test(text)) throw refuse(String(text), 'must be a decimal number', o);
  const x = Number(text);
  if (!Number.isFinite(x)) throw refuse(text, 'must be a finite number', o);
  return bounded(x, text, o);
}

/** A decimal integer (digits only, optional sign) within the safe integer range. */
export function parseInteger(text: string, o: ParseOptions): number {
  if (typeof text !== 'string' || !INTEGER.test(text)) throw refuse(String(text), 'must be a decimal integer', o);
  const x = Number(text);
  if (!Number.isSafeInteger(x)) throw refuse(text, 'is out of range', o);
  return bounded(x, text, o);
}

/**
 * Comma separated decimal numbers; `texts` may be several occurrences of a
 * repeated flag, each a list. At least one item; no empty items.
 */
export function parseDecimalList(texts: string | readonly string[], o: ParseOptions): number[] {
  const all = typeof texts === 'string' ? [texts] : texts;
  if (all.length === 0) throw refuse('', 'needs at least one number', o);
  const out: number[] = [];
  for (const text of all) {
    const items = text.split(',');
    for (const [i, raw] of items.entries()) {
      const item = raw.replace(/^ +| +$/g, '');
      if (item === '') {
        throw refuse(text, items.length === 1 ? 'needs at least one number' : `has an empty item (number ${i + 1})`, o);
      }
      out.push(parseDecimal(item, o));
    }
  }
  return out;
}

/** The latest date accepted: the last second of year 9999. */
export const MAX_TIMESTAMP = 253402300799;

const ISO =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$/;

/**
 * Unix seconds from a date in one of the documented forms (see the top of
 * this file). Fractions of a second are dropped. Refusals are E_BAD_DATE
 * unless `o.code` says otherwise.
 */
export function parseTimestamp(text: string | number, o: ParseOptions): number {
  const opts: ParseOptions = { ...o, code: o.code ?? 'E_BAD_DATE' };
  const form = 'must be unix seconds or an ISO-8601 date (2024-03-07 or 2024-03-07T10:00:00Z)';
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0 || text > MAX_TIMESTAMP) throw refuse(String(text), form, opts);
    return text;
  }
  if (typeof text !== 'string') throw refuse(String(text), form, opts);
  if (/^[0-9]+$/.test(text)) {
    if (text.length > 1 && text.startsWith('0')) throw refuse(text, form, opts);
    const n = Number(text);
    if (n > MAX_TIMESTAMP) throw refuse(text, `is after year 9999`, opts);
    return n;
  }
  const m = ISO.exec(text);
  if (!m) throw refuse(text, form, opts);
  const [, y, mo, d, h = '0', mi = '0', s = '0', , zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59)
    throw refuse(text, 'is not a valid date', opts);
  if (year < 1900) throw refuse(text, 'is before 1970', opts);
  let ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(ms);
  // Date.UTC rolls 2024-02-30 over to March 1st; a real date comes back unchanged.
  if (back.getUTCFullYear() !== year || back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day)
    throw refuse(text, 'is not a valid date', opts);
  if (zone && zone !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    const zh = Number(digits.slice(0, 2));
    const zm = digits.length > 2 ? Number(digits.slice(2)) : 0;
    if (zh > 23 || zm > 59) throw refuse(text, 'has an invalid time zone', opts);
    ms -= (zone[0] === '-' ? -1 : 1) * (zh * 60 + zm) * 60_000;
  }
  const t = Math.floor(ms / 1000);
  if (t < 0) throw refuse(text, 'is before 1970', opts);
  if (t > MAX_TIMESTAMP) throw refuse(text, 'is after year 9999', opts);
  return t;
}
