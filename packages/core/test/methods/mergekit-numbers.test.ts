import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWgitError, parseMergekitYaml } from '../../src/index.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return isWgitError(e) ? e.code : String(e);
  }
  return 'no error';
};

/** A task-arithmetic config with `v` as the global lambda and as the first model's weight. */
const config = (v: string) => `
merge_method: task_arithmetic
base_model: base
parameters:
  lambda: ${v}
models:
  - model: a
    parameters:
      weight: ${v}
  - model: b
    parameters:
      weight: 1
`;

describe('mergekit YAML numbers are decimal', () => {
  const accepted: [string, number][] = [
    ['1', 1],
    ['0.5', 0.5],
    ['-2', -2],
    ['+3', 3],
    ['.5', 0.5],
    ['1e-1', 0.1],
    ['0', 0],
  ];
  for (const [v, want] of accepted) {
    it(`accepts ${v}`, () => {
      const r = parseMergekitYaml(config(v));
      assert.equal(r.params.lambda, want);
      assert.equal((r.params.weights as number[])[0], want);
    });
  }
  // YAML 1.2 reads 0x10 as 16 and 0o10 as 8; mergekit's YAML 1.1 reader reads 010 as 8.
  for (const v of ['0x10', '0o10', '010', '.inf', '-.inf', '.nan', '1_000', '"0.5"', '0b1', '1:30']) {
    it(`refuses ${v} (E_MERGEKIT_INVALID)`, () => {
      assert.equal(
        code(() => parseMergekitYaml(config(v))),
        'E_MERGEKIT_INVALID',
      );
    });
  }
  it('a hex value in a filter rule is refused too', () => {
    const text = `
merge_method: ties
base_model: base
models:
  - model: a
    parameters:
      density:
        - filter: mlp
          value: 0x1
        - value: 0.5
  - model: b
`;
    assert.equal(
      code(() => parseMergekitYaml(text)),
      'E_MERGEKIT_INVALID',
    );
  });
  it('a hex value reached through an alias is refused', () => {
    const text = `
merge_method: linear
models:
  - model: a
    parameters:
      weight: &w 0x2
  - model: b
    parameters:
      weight: *w
`;
    assert.equal(
      code(() => parseMergekitYaml(text)),
      'E_MERGEKIT_INVALID',
    );
  });
  it('duplicate keys are still refused', () => {
    assert.equal(
      code(() => parseMergekitYaml('merge_method: linear\nmerge_method: ties\n')),
      'E_MERGEKIT_INVALID',
    );
  });
});
