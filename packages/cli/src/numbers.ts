/**
 * Number flags, parsed by core's strict parser (decimal only, no empty
 * values or list items, finite): a malformed value is E_BAD_PARAM naming the
 * flag. Flags stay strings in oclif so every number goes through one parser.
 */
import { parseDecimal, parseDecimalList, parseInteger } from '@wgit/core/parse';

interface Bounds {
  min?: number;
  max?: number;
}

const opts = (flag: string, b: Bounds) => ({
  what: `--${flag}`,
  code: 'E_BAD_PARAM' as const,
  data: { param: flag },
  ...b,
});

/** A decimal number flag; undefined when not given. */
export function decimalFlag(value: string | undefined, flag: string, bounds: Bounds = {}): number | undefined {
  return value === undefined ? undefined : parseDecimal(value, opts(flag, bounds));
}

/** An integer flag; undefined when not given. */
export function integerFlag(value: string | undefined, flag: string, bounds: Bounds = {}): number | undefined {
  return value === undefined ? undefined : parseInteger(value, opts(flag, bounds));
}

/** Comma separated numbers, the flag possibly repeated; undefined when not given. */
export function decimalListFlag(
  values: string | string[] | undefined,
  flag: string,
  bounds: Bounds = {},
): number[] | undefined {
  return values === undefined ? undefined : parseDecimalList(values, opts(flag, bounds));
}
