/** "Did you mean": the closest known word to a mistyped command or flag. */

/** Levenshtein distance (insert, delete, substitute, and swap of two neighbours: `mreg` → `merg`). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/** The known word nearest to `typed` when it is close enough to be a typo (or `typed` is its prefix), else null. */
export function closest(typed: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const dist = k.startsWith(typed) && typed.length >= 3 ? 0.5 : editDistance(typed, k);
    if (dist < bestD) {
      bestD = dist;
      best = k;
    }
  }
  const limit = typed.length <= 2 ? 1 : typed.length <= 6 ? 2 : 3;
  return best !== null && bestD <= limit ? best : null;
}
