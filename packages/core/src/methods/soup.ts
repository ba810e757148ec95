/**
 * Greedy soup (Wortsman et al. 2022, "Model soups"): score each candidate on
 * its own, sort them by that score (best first; equal scores keep the given
 * order), start the soup with the best, and add each next one only if the
 * uniform average's score does not drop. The caller supplies the scoring
 * (materialize the average, run an evaluation); this is the order of trials.
 */

export interface SoupTrial {
  /** Indices into the candidates of the soup tried. */
  members: number[];
  score: number;
  accepted: boolean;
}

export interface GreedySoupResult {
  /** Each candidate's own score, by candidate index. */
  scores: number[];
  /** Candidate indices, best own score first. */
  order: number[];
  /** Every soup scored after the first candidate, in order. */
  trials: SoupTrial[];
  /** The soup: candidate indices in the order they joined. */
  members: number[];
  /** Its score. */
  score: number;
}

/** Runs the greedy recipe; `score(members)` scores the uniform average of those candidates. */
export async function greedySoup(
  count: number,
  score: (members: number[]) => Promise<number>,
): Promise<GreedySoupResult> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError('greedy soup needs at least one candidate');
  const scores: number[] = [];
  for (let i = 0; i < count; i++) scores.push(await score([i]));
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  const members = [order[0]];
  let best = scores[order[0]];
  const trials: SoupTrial[] = [];
  for (const c of order.slice(1)) {
    const tryMembers = [...members, c];
    const s = await score(tryMembers);
    const accepted = s >= best;
    trials.push({ members: tryMembers, score: s, accepted });
    if (accepted) {
      members.push(c);
      best = s;
    }
  }
  return { scores, order, trials, members, score: best };
}
