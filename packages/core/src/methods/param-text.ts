/**
 * Per-tensor parameter values written as text (the `wgit merge` flags):
 *
 *   value  := NUMBER | '[' NUMBER (',' NUMBER)* ']'          a number or a gradient
 *   rules  := [FILTER '='] value (';' [FILTER '='] value)*   first match wins; '*' or no filter: every tensor
 *   list   := rules (',' rules)*                             one per input model (commas outside brackets)
 *
 * `--t 'self_attn=[0,0.5,1];mlp=[1,0.5,0];0.5'`, `--weights '1,[0,0.3,0.7,1]'`.
 * Numbers go through the one strict decimal parser.
 */

import { WgitError } from '../errors.js';
import { parseDecimal } from '../parse.js';
import type { PerTensor, TensorRule } from './types.js';

function refuse(what: string, text: string, why: string): WgitError {
  return new WgitError('E_BAD_PARAM', `${what} ${why}, got ${JSON.stringify(text)}`, { param: what, value: text });
}

/** Splits at `sep` outside brackets; an unbalanced bracket is refused. */
function splitTop(text: string, sep: string, what: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[') depth++;
    else if (c === ']') {
      depth--;
      if (depth < 0) throw refuse(what, text, 'has an unbalanced ]');
    } else if (c === sep && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw refuse(what, text, 'has an unclosed [');
  out.push(text.slice(start));
  return out.map((s) => s.trim());
}

function parseValue(text: string, what: string): number | number[] {
  if (text === '') throw refuse(what, text, 'has an empty value');
  if (!text.startsWith('[')) return parseDecimal(text, { what, data: { param: what } });
  if (!text.endsWith(']')) throw refuse(what, text, 'has text after a gradient');
  const inner = text.slice(1, -1);
  if (inner.includes('[')) throw refuse(what, text, 'nests a gradient');
  const items = inner.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw refuse(what, text, 'has an empty gradient item');
  return items.map((s) => parseDecimal(s, { what, data: { param: what } }));
}

/** True when the text uses the per-tensor syntax (a gradient, a filter or several rules), not a plain number list. */
export function isPerTensorText(text: string): boolean {
  return /[[=;]/.test(text);
}

/** One per-tensor value: a number, a gradient, or rules. */
export function parsePerTensorText(text: string, what: string): PerTensor<number> {
  const parts = splitTop(text.trim(), ';', what);
  if (parts.length === 1 && !parts[0].includes('=')) return parseValue(parts[0], what);
  return parts.map((p): TensorRule<number> => {
    const eq = p.startsWith('[') ? -1 : p.indexOf('=');
    if (eq < 0) return { value: parseValue(p, what) };
    const filter = p.slice(0, eq).trim();
    if (filter === '') throw refuse(what, p, 'has an empty filter before =');
    return { filter, value: parseValue(p.slice(eq + 1).trim(), what) };
  });
}

/** One per-tensor value per input model, comma separated (each occurrence of a repeated flag adds to the list). */
export function parsePerTensorList(texts: string | readonly string[], what: string): PerTensor<number>[] {
  const all = typeof texts === 'string' ? [texts] : texts;
  return all.flatMap((t) => splitTop(t, ',', what).map((item) => parsePerTensorText(item, what)));
}
