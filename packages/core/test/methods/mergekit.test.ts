import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWgitError, mergeTensor, parseMergekitYaml } from '../../src/index.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));

describe('mergekit YAML', () => {
  it('ties with per-model weight/density, normalize and int8_mask', () => {
    const r = parseMergekitYaml(`
models:
  - model: ft/math
    parameters:
      density: 0.5
      weight: 0.7
  - model: ft/code
    parameters:
      density: 0.3
      weight: 0.3
merge_method: ties
base_model: base/v1
parameters:
  normalize: true
  int8_mask: true
dtype: bfloat16
`);
    assert.equal(r.method, 'ties');
    assert.deepEqual(r.models, ['ft/math', 'ft/code']);
    assert.equal(r.base, 'base/v1');
    assert.deepEqual(r.params, { normalize: true, weights: [0.7, 0.3], density: [0.5, 0.3] });
    assert.equal(r.outDtype, 'BF16');
    assert.equal(r.warnings.length, 2);
    assert.ok(r.warnings.some((w) => /int8_mask/.test(w)));
    assert.ok(r.warnings.some((w) => /dtype bfloat16/.test(w)));
  });

  it('filter lists pick values by substring, with a default entry', () => {
    const r = parseMergekitYaml(`
merge_method: task_arithmetic
base_model: base
models:
  - model: a
    parameters:
      weight:
        - filter: self_attn
          value: 0.5
        - filter: mlp
          value: 0.25
        - value: 1
  - model: b
    parameters: { weight: 1 }
parameters:
  lambda: 0.8
`);
    assert.equal(r.method, 'task-arithmetic');
    assert.deepEqual(r.params.weights, [
      [{ filter: 'self_attn', value: 0.5 }, { filter: 'mlp', value: 0.25 }, { value: 1 }],
      1,
    ]);
    assert.equal(r.params.lambda, 0.8);
    // the recipe drives the per-tensor function as written
    const base = Float32Array.from([0]);
    const xs = [Float32Array.from([1]), Float32Array.from([1])];
    const at = (name: string) => mergeTensor(r.method, r.params, xs, base, { name })[0];
    assert.equal(at('model.layers.0.self_attn.q_proj.weight'), Math.fround(0.8 * 1.5));
    assert.equal(at('model.layers.0.mlp.up_proj.weight'), Math.fround(0.8 * 1.25));
    assert.equal(at('model.norm.weight'), Math.fround(0.8 * 2));
  });

  it('linear, dare_linear and dare_ties; mergekit defaults (density 1, linear normalizes)', () => {
    const lin = parseMergekitYaml(
      'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 2}\n  - model: b\n    parameters: {weight: 1}\n',
    );
    assert.equal(lin.method, 'linear');
    assert.equal(lin.base, null);
    assert.deepEqual(lin.params, { weights: [2, 1], normalize: true });
    const dl = parseMergekitYaml(
      'merge_method: dare_linear\nbase_model: z\nparameters: {weight: 1}\nmodels:\n  - model: a\n  - model: b\n    parameters: {density: 0.4}\n',
    );
    assert.equal(dl.method, 'dare-linear');
    assert.deepEqual(dl.params.density, [1, 0.4]);
    const dt = parseMergekitYaml(
      'merge_method: dare_ties\nbase_model: z\nparameters: {density: 0.6, weight: 0.5}\nmodels:\n  - model: a\n  - model: z\n',
    );
    assert.equal(dt.method, 'dare-ties');
    assert.deepEqual(dt.models, ['a']);
    assert.deepEqual(dt.params, { weights: [0.5], density: [0.6] });
    assert.match(dt.warnings[0], /base model/);
  });

  it("maps mergekit's rescale: true to the L1 rescale, and refuses rescale: false", () => {
    const yaml = (v: string) =>
      `merge_method: dare_ties\nbase_model: z\nparameters: {density: 0.5, weight: 1${v}}\nmodels:\n  - model: a\n`;
    assert.equal(parseMergekitYaml(yaml(', rescale: true')).params.rescale, 'l1');
    assert.equal(parseMergekitYaml(yaml(', rescale: l1')).params.rescale, 'l1');
    assert.equal(parseMergekitYaml(yaml('')).params.rescale, undefined, "absent: wgit's default (inverse)");
    assert.throws(
      () => parseMergekitYaml(yaml(', rescale: false')),
      (e) => isWgitError(e) && e.code === 'E_MERGEKIT_INVALID' && /rescale/.test(e.message),
    );
  });

  it('refuses what it does not support, naming it', () => {
    const cases: [string, string, RegExp][] = [
      ['merge_method: arcee_fusion\nbase_model: a\nmodels: [{model: a}]', 'E_MERGEKIT_UNSUPPORTED', /arcee_fusion/],
      [
        'merge_method: ties\nbase_model: a\nmodels: [{model: b}]\ntokenizer_source: union',
        'E_MERGEKIT_UNSUPPORTED',
        /tokenizer_source/,
      ],
      ['merge_method: ties\nbase_model: a\nslices: []\nmodels: [{model: b}]', 'E_MERGEKIT_INVALID', /models or slices/],
      [
        'merge_method: ties\nbase_model: a\nslices: [{sources: [{model: a, layer_range: [0, 2]}]}]',
        'E_MERGEKIT_UNSUPPORTED',
        /slices with ties/,
      ],
      [
        'merge_method: nuslerp\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: 1}}]\nparameters: {nuslerp_row_wise: true}',
        'E_MERGEKIT_UNSUPPORTED',
        /nuslerp_row_wise: true/,
      ],
      [
        'merge_method: model_stock\nbase_model: a\nmodels: [{model: b}]\nparameters: {filter_wise: true}',
        'E_MERGEKIT_UNSUPPORTED',
        /filter_wise/,
      ],
      [
        'merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {epsilon: 0.1}}]',
        'E_MERGEKIT_UNSUPPORTED',
        /epsilon/,
      ],
      [
        'merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {weight: [0, x, 1]}}]',
        'E_MERGEKIT_INVALID',
        /weight\[1\]/,
      ],
      ['merge_method: ties\nbase_model: a\nmodels: [{model: b}]\ndtype: float64', 'E_MERGEKIT_UNSUPPORTED', /float64/],
      [
        'merge_method: task_arithmetic\nbase_model: a\nmodels: [{model: b, parameters: {density: 0.5}}]',
        'E_MERGEKIT_UNSUPPORTED',
        /density/,
      ],
      [
        'merge_method: ties\nbase_model: a\nparameters: {rescale: false}\nmodels: [{model: b}]',
        'E_MERGEKIT_UNSUPPORTED',
        /rescale/,
      ],
      ['merge_method: ties\nmodels: [{model: b}]', 'E_MERGEKIT_INVALID', /base_model/],
      ['merge_method: ties\nbase_model: a\nmodels: []', 'E_MERGEKIT_INVALID', /models/],
      [
        'merge_method: ties\nbase_model: a\nmodels: [{model: b, parameters: {density: 1.5}}]',
        'E_MERGEKIT_INVALID',
        /density/,
      ],
      ['merge_method: ties\nbase_model: a\nmodels: [{model: 3}]', 'E_MERGEKIT_INVALID', /model/],
      ['merge_method: ties\nmerge_method: linear\n', 'E_MERGEKIT_INVALID', /YAML/],
      ['models: [unclosed', 'E_MERGEKIT_INVALID', /YAML/],
      ['- just\n- a list', 'E_MERGEKIT_INVALID', /mapping/],
      ['merge_method: ties\nbase_model: a\nmodels: [b]', 'E_MERGEKIT_INVALID', /models\[0\]/],
    ];
    for (const [text, c, re] of cases) {
      assert.throws(
        () => parseMergekitYaml(text),
        (e) => code(e) === c && re.test((e as Error).message),
        text,
      );
    }
  });

  it('resists alias bombs', () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]
`;
    assert.throws(
      () => parseMergekitYaml(bomb),
      (e) => code(e) === 'E_MERGEKIT_INVALID',
    );
  });
});
