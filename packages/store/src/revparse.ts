import { isWgitError, WgitError } from '@wgit/core';

/**
 * Revision syntax: a base (branch, tag, HEAD/@, full or ≥4-hex unique
 * commit prefix) followed by any number of `~N`, `~`, `^N`, `^` steps, as
 * in git: `~N` follows first parents N times, `^N` takes the N-th parent
 * (`^0` is the commit itself).
 */
export type RevStep = { op: '~'; n: number } | { op: '^'; n: number };

export function parseRevision(rev: string): { base: string; steps: RevStep[] } {
  const bad = () => new WgitError('E_UNKNOWN_REVISION', `bad revision ${JSON.stringify(rev)}`, { rev });
  if (typeof rev !== 'string' || rev.length === 0 || rev.length > 1000) throw bad();
  const cut = rev.search(/[~^]/);
  const base = cut < 0 ? rev : rev.slice(0, cut);
  if (base.length === 0) throw bad();
  const steps: RevStep[] = [];
  const re = /([~^])(\d*)/y;
  let i = cut < 0 ? rev.length : cut;
  while (i < rev.length) {
    re.lastIndex = i;
    const m = re.exec(rev);
    if (!m) throw bad();
    const n = m[2] === '' ? 1 : Number(m[2]);
    if (!Number.isSafeInteger(n) || n > 1_000_000) throw bad();
    steps.push({ op: m[1] as '~' | '^', n });
    i = re.lastIndex;
  }
  return { base, steps };
}

export interface RevResolver {
  lookupName(name: string): Promise<string | null>; // branch, tag or HEAD → commit id
  commitsWithPrefix(prefix: string): Promise<string[]>; // commit ids only
  parentsOf(commit: string): Promise<string[]>;
}

export async function resolveRevision(rev: string, r: RevResolver): Promise<string> {
  const { base, steps } = parseRevision(rev);
  const unknown = (why: string) =>
    new WgitError('E_UNKNOWN_REVISION', `unknown revision ${JSON.stringify(rev)}: ${why}`, { rev });
  let oid = await r.lookupName(base);
  if (oid === null) {
    const lower = base.toLowerCase();
    if (!/^[0-9a-f]{4,40}$/.test(lower)) throw unknown('no branch, tag or commit of that name');
    const hits = await r.commitsWithPrefix(lower);
    if (hits.length === 0) throw unknown('no branch, tag or commit of that name');
    if (hits.length > 1) {
      throw new WgitError(
        'E_AMBIGUOUS_REVISION',
        `revision ${JSON.stringify(base)} matches ${hits.length} commits; use more digits`,
        {
          rev,
          candidates: hits,
        },
      );
    }
    oid = hits[0];
  }
  // The name resolved; its commit (and every one the steps walk through) must
  // be readable, or the error names the revision and the id that is gone.
  let at: string = oid;
  let moved = false;
  const parentsOf = async (commit: string): Promise<string[]> => {
    try {
      return await r.parentsOf(commit);
    } catch (e) {
      if (!isWgitError(e) || e.code !== 'E_MISSING_OBJECT') throw e;
      const where = moved
        ? `commit ${commit} (reached from ${JSON.stringify(rev)})`
        : `${JSON.stringify(base)} points to commit ${commit}`;
      throw new WgitError('E_MISSING_OBJECT', `${where}, which is missing from the repository`, {
        rev,
        oid: commit,
      });
    }
  };
  let parents = await parentsOf(at);
  const move = async (next: string) => {
    at = next;
    moved = true;
    parents = await parentsOf(next);
  };
  for (const s of steps) {
    if (s.op === '^') {
      if (s.n === 0) continue;
      if (parents.length < s.n) throw unknown(`${at.slice(0, 12)} has no parent number ${s.n}`);
      await move(parents[s.n - 1]);
    } else {
      for (let k = 0; k < s.n; k++) {
        if (parents.length === 0) throw unknown(`history of ${at.slice(0, 12)} is shorter than ${s.n}`);
        await move(parents[0]);
      }
    }
  }
  return at;
}
