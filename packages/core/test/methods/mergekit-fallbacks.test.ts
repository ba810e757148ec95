import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getMethod, isWgitError, parseMergekitYaml, tensorParams } from '../../src/index.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

/** The per-tensor numbers the engine gets from a recipe for the tensor `name`. */
function numbersAt(text: string, name: string) {
  const r = parseMergekitYaml(text);
  return tensorParams(getMethod(r.method).resolve(r.params, r.models.length), name);
}

const ATTN = 'model.layers.0.self_attn.q_proj.weight';
const MLP = 'model.layers.0.mlp.up_proj.weight';

describe('mergekit filter lists: wildcard and fallbacks', () => {
  it('filter "*" matches every tensor, as mergekit treats it', () => {
    const text = `
merge_method: task_arithmetic
base_model: base
models:
  - model: a
    parameters:
      weight:
        - filter: self_attn
          value: 0.5
        - filter: "*"
          value: 0.25
  - model: b
    parameters: { weight: 1 }
`;
    assert.deepEqual(numbersAt(text, ATTN).weights, [0.5, 1]);
    assert.deepEqual(numbersAt(text, MLP).weights, [0.25, 1]);
    // a global list with "*" too
    const global = `
merge_method: ties
base_model: base
parameters:
  density:
    - filter: mlp
      value: 0.3
    - filter: "*"
      value: 0.6
models:
  - model: a
    parameters: { weight: 1 }
`;
    assert.deepEqual(numbersAt(global, MLP).density, [0.3]);
    assert.deepEqual(numbersAt(global, ATTN).density, [0.6]);
  });

  it('a per-model list without a default falls back to the global value, then to mergekit default density 1', () => {
    const text = `
merge_method: ties
base_model: base
parameters:
  weight: 0.4
  density: 0.7
models:
  - model: a
    parameters:
      weight:
        - filter: self_attn
          value: 0.9
      density:
        - filter: self_attn
          value: 0.5
  - model: b
    parameters:
      weight: 0.3
`;
    // a's unmatched tensors take the global weight and density, not 1 and 0.2
    assert.deepEqual(numbersAt(text, ATTN).weights, [0.9, 0.3]);
    assert.deepEqual(numbersAt(text, MLP).weights, [0.4, 0.3]);
    assert.deepEqual(numbersAt(text, ATTN).density, [0.5, 0.7]);
    assert.deepEqual(numbersAt(text, MLP).density, [0.7, 0.7]);

    // no global density: mergekit keeps everything (density 1)
    const noGlobal = `
merge_method: ties
base_model: base
models:
  - model: a
    parameters:
      weight: 1
      density:
        - filter: self_attn
          value: 0.5
`;
    assert.deepEqual(numbersAt(noGlobal, ATTN).density, [0.5]);
    assert.deepEqual(numbersAt(noGlobal, MLP).density, [1]);

    // a global list without a default falls through to density 1 as well
    const globalList = `
merge_method: dare_ties
base_model: base
parameters:
  density:
    - filter: self_attn
      value: 0.5
models:
  - model: a
    parameters: { weight: 1 }
`;
    assert.deepEqual(numbersAt(globalList, MLP).density, [1]);
    // per-model rules first, then the global ones
    const both = `
merge_method: ties
base_model: base
parameters:
  weight:
    - filter: mlp
      value: 0.6
    - value: 0.1
models:
  - model: a
    parameters:
      weight:
        - filter: self_attn
          value: 0.9
`;
    assert.deepEqual(numbersAt(both, ATTN).weights, [0.9]);
    assert.deepEqual(numbersAt(both, MLP).weights, [0.6]);
    assert.deepEqual(numbersAt(both, 'model.norm.weight').weights, [0.1]);
  });

  it('a model without a weight is an error naming the model and the parameter', () => {
    const cases: [string, RegExp][] = [
      [
        'merge_method: ties\nbase_model: z\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - model: b\n',
        /models\[1\] \(b\).*weight/,
      ],
      ['merge_method: linear\nmodels:\n  - model: a\n', /models\[0\] \(a\).*weight/],
      [
        'merge_method: task_arithmetic\nbase_model: z\nmodels:\n  - model: a\n    parameters:\n      weight: [{filter: self_attn, value: 1}]\n',
        /models\[0\] \(a\).*weight.*self_attn/,
      ],
      [
        'merge_method: ties\nbase_model: z\nparameters:\n  weight: [{filter: mlp, value: 1}]\nmodels:\n  - model: a\n',
        /models\[0\] \(a\).*weight.*mlp/,
      ],
    ];
    for (const [text, re] of cases) {
      assert.throws(
        () => parseMergekitYaml(text),
        (e) =>
          code(e) === 'E_MERGEKIT_INVALID' && re.test((e as Error).message) && !(e as Error).message.includes('\n'),
        text,
      );
    }
    // the base model needs none where it is left out of the merge
    const r = parseMergekitYaml(
      'merge_method: ties\nbase_model: z\nmodels:\n  - model: z\n  - model: a\n    parameters: {weight: 2}\n',
    );
    assert.deepEqual(r.params.weights, [2]);
  });
});

describe('mergekit linear with base_model, dtype and out_dtype', () => {
  it('linear merges base_model as one more input, weighted by the global weight', () => {
    const r = parseMergekitYaml(
      'merge_method: linear\nbase_model: z\nparameters: {weight: 0.5}\nmodels:\n  - model: a\n    parameters: {weight: 2}\n',
    );
    assert.deepEqual(r.models, ['a', 'z']);
    assert.equal(r.base, null);
    assert.deepEqual(r.params.weights, [2, 0.5]);
    // listed under models it is an ordinary input with its own weight
    const listed = parseMergekitYaml(
      'merge_method: linear\nbase_model: z\nmodels:\n  - model: a\n    parameters: {weight: 1}\n  - model: z\n    parameters: {weight: 3}\n',
    );
    assert.deepEqual(listed.models, ['a', 'z']);
    assert.deepEqual(listed.params.weights, [1, 3]);
    // without any weight for it, mergekit cannot merge it either
    assert.throws(
      () =>
        parseMergekitYaml('merge_method: linear\nbase_model: z\nmodels:\n  - model: a\n    parameters: {weight: 1}\n'),
      (e) => code(e) === 'E_MERGEKIT_INVALID' && /base_model.*z.*weight/.test((e as Error).message),
    );
  });

  it('dtype is the compute dtype, out_dtype the output dtype', () => {
    const both = parseMergekitYaml(
      'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\ndtype: float32\nout_dtype: float16\n',
    );
    assert.equal(both.outDtype, 'F16');
    assert.deepEqual(both.warnings, []);
    // with no out_dtype mergekit writes what it computed in
    const bf = parseMergekitYaml(
      'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\ndtype: bfloat16\n',
    );
    assert.equal(bf.outDtype, 'BF16');
    assert.ok(bf.warnings.some((w) => /bfloat16/.test(w) && /float32/.test(w)));
    const outOnly = parseMergekitYaml(
      'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\nout_dtype: bfloat16\n',
    );
    assert.equal(outOnly.outDtype, 'BF16');
    assert.throws(
      () =>
        parseMergekitYaml(
          'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\nout_dtype: int8\n',
        ),
      (e) => code(e) === 'E_MERGEKIT_UNSUPPORTED' && /out_dtype.*int8/.test((e as Error).message),
    );
  });
});
