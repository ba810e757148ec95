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

/** Names can hold newlines or escape sequences; quote those so each row stays one line and the terminal stays sane. */
export function printable(s: string): string {
  if (!/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(s)) return s;
  // JSON.stringify escapes C0 controls only; DEL and C1 (0x9b is a CSI on some terminals) need it too.
  return JSON.stringify(s).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
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
