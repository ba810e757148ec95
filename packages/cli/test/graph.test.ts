import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type GraphCommit, graphRows, topoOrder } from '../src/graph.js';
import { closest, editDistance } from '../src/suggest.js';

/** The graph as `git log --graph --oneline` prints such histories, written out by hand. */
function render(commits: GraphCommit[]): string[] {
  const rows = graphRows(commits);
  return commits.flatMap((c, i) => [...rows[i].before, `${rows[i].prefix} ${c.commit}`, ...rows[i].after]);
}

describe('log --graph', () => {
  it('a straight line of descent', () => {
    const h = [
      { commit: 'c', parents: ['b'] },
      { commit: 'b', parents: ['a'] },
      { commit: 'a', parents: [] },
    ];
    assert.deepEqual(render(h), ['* c', '* b', '* a']);
  });

  it('a merge opens a lane and the common base closes it', () => {
    const h = [
      { commit: 'm', parents: ['p1', 'p2'] },
      { commit: 'p1', parents: ['base'] },
      { commit: 'p2', parents: ['base'] },
      { commit: 'base', parents: [] },
    ];
    assert.deepEqual(render(h), ['* m', '|\\', '* | p1', '| * p2', '|/', '* base']);
  });

  it('two branch tips from one base (log --all)', () => {
    const h = [
      { commit: 'ft', parents: ['v1'] },
      { commit: 'v2', parents: ['v1'] },
      { commit: 'v1', parents: [] },
    ];
    assert.deepEqual(render(h), ['* ft', '| * v2', '|/', '* v1']);
  });

  it('topoOrder puts every child before its parents, keeping the order otherwise', () => {
    // Equal timestamps can list a parent before its other child; topoOrder fixes that.
    const h = [
      { commit: 'b1', parents: ['a'] },
      { commit: 'a', parents: [] },
      { commit: 'b2', parents: ['a'] },
    ];
    assert.deepEqual(
      topoOrder(h).map((c) => c.commit),
      ['b1', 'b2', 'a'],
    );
  });
});

describe('did you mean', () => {
  it('edit distance counts a swap of neighbours as one edit', () => {
    assert.equal(editDistance('mreg', 'merg'), 1);
    assert.equal(editDistance('merge', 'merge'), 0);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });
  it('suggests close words and prefixes, and nothing for far ones', () => {
    const cmds = ['merge', 'commit', 'checkout', 'transfer', 'remote add'];
    assert.equal(closest('mrege', cmds), 'merge');
    assert.equal(closest('trans', cmds), 'transfer');
    assert.equal(closest('--methd', ['--method', '--base', '--weights']), '--method');
    assert.equal(closest('zzzzzz', cmds), null);
  });
});
