/** Small helpers for human-readable output; none of this is used under --json. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.50 KiB"; bytes below 1024 stay exact ("512 B"). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(2)} ${UNITS[u]}`;
}

/** 8030261248 → "8,030,261,248", the same on every locale. */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/**
 * Characters that can change what a terminal shows rather than being shown:
 * C0 controls (ESC starts escape sequences), DEL, C1 controls (0x9b is a CSI
 * on some terminals), the bidi embeddings, overrides, isolates and marks
 * (U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C), and the Unicode line and
 * paragraph separators.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'g');
/** The same set less the C0 controls, which JSON.stringify escapes itself. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const SHORT: Record<string, string> = { '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r' };
const unicodeEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
const escapeChar = (c: string) => SHORT[c] ?? unicodeEscape(c);

/**
 * The one escaping rule for everything the CLI prints that came from a user,
 * a file or the repository (tensor, file, branch and tag names, messages,
 * authors, error text): each unsafe character becomes a JSON-style escape
 * (`\u001b`, `\u202e`, `\t`). With `keepNewlines`, newlines stay (messages
 * print one line per line).
 */
export function escapeControls(s: string, keepNewlines = false): string {
  if (!UNSAFE.test(s)) return s;
  return s.replace(UNSAFE_ALL, (c) => (keepNewlines && c === '\n' ? c : escapeChar(c)));
}

/**
 * A name for a table cell or a line: unchanged when safe; otherwise quoted
 * and escaped as a JSON string (quotes and backslashes too), so the cell is
 * one line, cannot rewrite the terminal, and JSON.parse gives the name back.
 */
export function printable(s: string): string {
  if (!UNSAFE.test(s)) return s;
  return JSON.stringify(s).replace(UNSAFE_IN_JSON, unicodeEscape);
}

/**
 * JSON text for stdout: JSON.stringify escapes only C0 controls, so DEL, C1,
 * the bidi controls and U+2028/9 are escaped here as well (still valid JSON,
 * parsing to the same strings).
 */
export function jsonText(value: unknown, indent: number | undefined = 2): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE_IN_JSON, unicodeEscape);
}

/**
 * Rows aligned in columns separated by two spaces: `align[i]` is 'r' for
 * numbers. Widths count UTF-16 units, which is right for the ASCII names
 * tensors almost always have.
 */
export function table(rows: string[][], align: ('l' | 'r')[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (let i = 0; i < row.length; i++) widths[i] = Math.max(widths[i] ?? 0, row[i].length);
  }
  return rows.map((row) =>
    row
      .map((cell, i) =>
        align[i] === 'r' ? cell.padStart(widths[i]) : i === row.length - 1 ? cell : cell.padEnd(widths[i]),
      )
      .join('  ')
      .trimEnd(),
  );
}

/** A model a recipe names (`{rev, commit, path}`), as one short phrase. */
function recipeValue(v: unknown): string {
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && 'rev' in v) {
    const r = v as { rev?: unknown; commit?: unknown; path?: unknown };
    const rev = printable(String(r.rev));
    if (typeof r.commit === 'string') return `${rev} (${r.commit.slice(0, 12)})`;
    if (typeof r.path === 'string') return `${rev} (file ${printable(r.path)})`;
    return rev;
  }
  if (Array.isArray(v) && v.every((x) => typeof x === 'object' && x !== null && 'rev' in x))
    return v.map(recipeValue).join(', ');
  if (typeof v === 'string') return printable(v);
  return jsonText(v, 0);
}

/** A recipe as `key: value` lines (models by revision and short commit id), indented under a heading. */
export function recipeLines(recipe: Record<string, unknown>, indent = '  '): string[] {
  return Object.entries(recipe).map(([k, v]) => `${indent}${printable(k)}: ${recipeValue(v)}`);
}
