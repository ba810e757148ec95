// greedySoup's order of trials against a scoring table written here.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { greedySoup } from '../../src/index.js';

describe('greedySoup', () => {
  it('sorts by own score (ties: the given order), keeps a candidate only when the score does not drop', async () => {
    const table: Record<string, number> = {
      '0': 0.5,
      '1': 0.7,
      '2': 0.7,
      '3': 0.1,
      '1,2': 0.7,
      '1,2,0': 0.69,
      '1,2,3': 0.8,
    };
    const seen: string[] = [];
    const r = await greedySoup(4, async (ms) => {
      seen.push(ms.join(','));
      const v = table[ms.join(',')];
      assert.ok(v !== undefined, `unexpected soup ${ms.join(',')}`);
      return v;
    });
    assert.deepEqual(r.order, [1, 2, 0, 3]);
    assert.deepEqual(seen, ['0', '1', '2', '3', '1,2', '1,2,0', '1,2,3']);
    assert.deepEqual(r.members, [1, 2, 3]);
    assert.equal(r.score, 0.8);
    assert.deepEqual(
      r.trials.map((t) => t.accepted),
      [true, false, true],
    );
  });
});
