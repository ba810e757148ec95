/**
 * `wgit log --graph`: one line per commit with lanes drawn as git draws them
 * (`*` the commit, `|` a line of descent passing by, `|\` a merge opening a
 * lane, `|/` two lanes meeting at a common parent).
 */

export interface GraphCommit {
  commit: string;
  parents: string[];
}

/** Children before parents, keeping the given (newest-first) order where the history allows. */
export function topoOrder<T extends GraphCommit>(commits: T[]): T[] {
  const listed = new Set(commits.map((c) => c.commit));
  const waiting = new Map<string, number>();
  for (const c of commits)
    for (const p of new Set(c.parents)) if (listed.has(p)) waiting.set(p, (waiting.get(p) ?? 0) + 1);
  const out: T[] = [];
  const done = new Set<string>();
  while (out.length < commits.length) {
    const next = commits.find((c) => !done.has(c.commit) && (waiting.get(c.commit) ?? 0) === 0);
    if (!next) break; // a cycle cannot happen in git history; stop rather than loop
    done.add(next.commit);
    out.push(next);
    for (const p of new Set(next.parents)) if (waiting.has(p)) waiting.set(p, (waiting.get(p) ?? 1) - 1);
  }
  return out;
}

/**
 * The graph rows: for each commit in `commits` (topological order), the rows
 * to print before its line (connectors), and the prefix of its own line.
 */
export function graphRows(commits: GraphCommit[]): { before: string[]; prefix: string; after: string[] }[] {
  let lanes: (string | null)[] = [];
  // Lanes sit in even columns; a connector (`\\` opening, `/` meeting or moving left) sits in the gap left of its lane.
  const draw = (n: number, cell: (j: number) => { at: 'lane' | 'gap'; ch: string } | null) => {
    const row = new Array<string>(Math.max(0, 2 * n - 1)).fill(' ');
    for (let j = 0; j < n; j++) {
      const c = cell(j);
      if (c) row[c.at === 'lane' ? 2 * j : 2 * j - 1] = c.ch;
    }
    return row.join('').trimEnd();
  };
  // Closes the gaps closed lanes left: every lane right of one moves left, drawn with `/`.
  const compact = (into: string[]) => {
    const kept = lanes.map((l, j) => (l === null ? -1 : j)).filter((j) => j >= 0);
    if (kept.every((j, k) => j === k)) {
      lanes = lanes.slice(0, kept.length);
      return;
    }
    const moved = new Set(kept.filter((j, k) => j !== k));
    into.push(
      draw(lanes.length, (j) =>
        lanes[j] === null ? null : moved.has(j) ? { at: 'gap', ch: '/' } : { at: 'lane', ch: '|' },
      ),
    );
    lanes = kept.map((j) => lanes[j]);
  };
  const rows: { before: string[]; prefix: string; after: string[] }[] = [];
  for (const c of commits) {
    const before: string[] = [];
    let col = lanes.indexOf(c.commit);
    if (col < 0) {
      col = lanes.length;
      lanes.push(c.commit);
    }
    const meeting = lanes.map((l, j) => (j !== col && l === c.commit ? j : -1)).filter((j) => j >= 0);
    if (meeting.length > 0) {
      before.push(
        draw(lanes.length, (j) =>
          meeting.includes(j) ? { at: 'gap', ch: '/' } : lanes[j] ? { at: 'lane', ch: '|' } : null,
        ),
      );
      for (const j of meeting) lanes[j] = null;
      compact(before);
      col = lanes.indexOf(c.commit);
    }
    const prefix = draw(lanes.length, (j) => (j === col ? { at: 'lane', ch: '*' } : { at: 'lane', ch: '|' }));
    const after: string[] = [];
    const [first, ...rest] = c.parents;
    lanes[col] = first ?? null;
    const opened: number[] = [];
    for (const p of rest) {
      if (lanes.includes(p)) continue;
      lanes.splice(col + 1 + opened.length, 0, p);
      opened.push(col + 1 + opened.length);
    }
    if (opened.length > 0)
      after.push(
        draw(lanes.length, (j) =>
          opened.includes(j)
            ? { at: 'gap', ch: '\\' }
            : j > col + opened.length
              ? { at: 'gap', ch: '\\' }
              : { at: 'lane', ch: '|' },
        ),
      );
    compact(after);
    rows.push({ before, prefix, after });
  }
  return rows;
}
