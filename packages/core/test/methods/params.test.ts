import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  defineMethod,
  getMethod,
  isWgitError,
  METHODS,
  type MergeMethod,
  mergeTensor,
  type ParamDecl,
  paramOwners,
  parseMergekitYaml,
  registerMethod,
  weightsParam,
} from '../../src/index.js';

const code = (e: unknown) => (isWgitError(e) ? e.code : String(e));
const dataOf = (e: unknown) => (isWgitError(e) ? (e as unknown as { data: Record<string, unknown> }).data : {});

function refusal(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a refusal');
}

/** A value of the declaration's type that validation accepts (not the default where possible). */
function sample(d: ParamDecl): unknown {
  switch (d.type) {
    case 'number':
      return d.max === 1 ? 0.5 : 0.75;
    case 'integer':
      return 1;
    case 'boolean':
      return !(d.default as boolean);
    case 'enum':
      return d.choices?.at(-1);
    case 'object':
      return Object.fromEntries(Object.entries(d.fields ?? {}).map(([k, f]) => [k, f.default + 0.5]));
  }
}

/** MergeParams form of a sample value (one per input for per-model parameters). */
function given(d: ParamDecl, n: number): unknown {
  const v = sample(d);
  return d.scope === 'per-model' ? Array.from({ length: n }, () => v) : v;
}

/** Sample values of the parameters a method requires (slerp's t), so that one other parameter can be tried alone. */
function required(m: MergeMethod, n: number): Record<string, unknown> {
  return Object.fromEntries(m.params.filter((d) => d.required).map((d) => [d.name, given(d, n)]));
}

describe('declared parameters: a table over the registry', () => {
  const n = 2;
  it('every parameter has a type, a scope, help and a flag; flags agree across methods', () => {
    const byFlag = new Map<string, ParamDecl>();
    for (const m of METHODS) {
      for (const d of m.params) {
        assert.ok(d.help.length > 0, `${m.name}.${d.name}: help`);
        assert.ok(['global', 'per-model'].includes(d.scope), `${m.name}.${d.name}: scope`);
        assert.ok(d.cli, `${m.name}.${d.name}: a flag`);
        const seen = byFlag.get(d.cli.flag);
        if (seen) {
          assert.equal(seen.name, d.name, `--${d.cli.flag} means one parameter`);
          assert.equal(seen.type, d.type, `--${d.cli.flag} has one type`);
          assert.equal(seen.scope, d.scope, `--${d.cli.flag} has one scope`);
        } else byFlag.set(d.cli.flag, d);
      }
    }
  });

  it('every declared parameter is accepted, and its value lands in the resolved recipe', () => {
    for (const m of METHODS) {
      for (const d of m.params) {
        const r = m.resolve({ ...required(m, n), [d.name]: given(d, n) }, n) as Record<string, unknown>;
        if (d.alternativeTo) {
          const v = d.alternativeTo.convert(sample(d) as number);
          assert.deepEqual(r[d.alternativeTo.name], [v, v], `${m.name}: ${d.name} → ${d.alternativeTo.name}`);
        } else assert.deepEqual(r[d.name], given(d, n), `${m.name}.${d.name}`);
      }
    }
  });

  it('out of range, wrong type: E_BAD_PARAM naming the parameter', () => {
    for (const m of METHODS) {
      for (const d of m.params) {
        const bads: unknown[] = [];
        if (d.type === 'number' || d.type === 'integer') {
          bads.push('1', Number.NaN);
          if (d.min !== undefined) bads.push(d.min - 1);
          if (typeof d.max === 'number') bads.push(d.maxExclusive ? d.max : d.max + 1);
          if (d.max === 'inputs') bads.push(n + 1);
          if (d.type === 'integer') bads.push(1.5);
        } else if (d.type === 'boolean') bads.push('yes', 1);
        else if (d.type === 'enum') bads.push('nope');
        else if (d.type === 'object') bads.push(3, { bogus: 1 });
        for (const b of bads) {
          const v = d.scope === 'per-model' ? [b, b] : b;
          const e = refusal(() => m.resolve({ ...required(m, n), [d.name]: v }, n));
          assert.equal(code(e), 'E_BAD_PARAM', `${m.name}.${d.name} = ${JSON.stringify(v)}`);
          assert.match(String(dataOf(e).param), new RegExp(`^${d.name}`), `${m.name}.${d.name}`);
        }
      }
    }
  });

  it('a parameter another method declares is refused by name; an unknown one too', () => {
    const all = new Set(METHODS.flatMap((m) => m.params.map((d) => d.name)));
    for (const m of METHODS) {
      const mine = new Set(m.params.map((d) => d.name));
      for (const name of all) {
        if (mine.has(name)) continue;
        const other = METHODS.find((x) => x.params.some((d) => d.name === name)) as MergeMethod;
        const d = other.params.find((x) => x.name === name) as ParamDecl;
        const e = refusal(() => m.resolve({ ...required(m, n), [name]: given(d, n) }, n));
        assert.equal(code(e), 'E_BAD_PARAM', `${m.name} given ${name}`);
        assert.equal(dataOf(e).param, name);
        assert.match((e as Error).message, new RegExp(`${m.name} takes no ${name}`));
        assert.ok(paramOwners(name).includes(other.name));
      }
      const e = refusal(() => m.resolve({ ...required(m, n), bogus: 1 }, n));
      assert.equal(code(e), 'E_BAD_PARAM');
      assert.match((e as Error).message, /unknown merge parameter bogus/);
    }
  });

  it('the recorded recipe keeps its shape and values for every method', () => {
    const want = (normalize: boolean, density: number) => ({
      weights: [1, 1],
      lambda: 1,
      density: [density, density],
      seed: 0,
      trim: 'tensor',
      normalize,
      rank: 2,
      lines: null,
    });
    const expected: Record<string, unknown> = {
      linear: want(true, 1),
      'task-arithmetic': want(false, 1),
      ties: want(true, 0.2),
      // DARE's rescale follows the fixed parameters (a declared parameter outside the fixed set)
      'dare-linear': { ...want(false, 0.2), rescale: 'inverse' },
      'dare-ties': { ...want(false, 0.2), rescale: 'inverse' },
      rmm: want(true, 1),
      slerp: { ...want(false, 1), t: sample(getMethod('slerp').params[0]) },
      nuslerp: want(false, 1),
      'model-stock': want(false, 1),
      passthrough: { ...want(false, 1), scale: [1, 1] },
      breadcrumbs: { ...want(false, 0.2), gamma: [0.01, 0.01], rescale: 'none' },
      'breadcrumbs-ties': { ...want(false, 0.2), gamma: [0.01, 0.01], rescale: 'none' },
      della: { ...want(true, 0.2), epsilon: [0.15, 0.15], rescale: 'inverse' },
      'della-linear': { ...want(false, 0.2), epsilon: [0.15, 0.15], rescale: 'inverse' },
      sce: { ...want(false, 1), select_topk: 1 },
      karcher: { ...want(false, 1), max_iter: 10, tol: 1e-5 },
    };
    for (const m of METHODS) {
      const r = m.resolve(required(m, 2), 2);
      assert.deepEqual(r, expected[m.name], m.name);
      // key order too: the recipe is written as JSON
      assert.deepEqual(Object.keys(r), Object.keys(expected[m.name] as object), m.name);
    }
    assert.deepEqual(getMethod('dare-linear').resolve({ drop: 0.25 }, 2).density, [0.75, 0.75]);
    assert.deepEqual(getMethod('ties').resolve({ lines: { beta: 2 } }, 2).lines, { beta: 2 });
  });

  it('every parameter with a mergekit key round-trips through a mergekit config', () => {
    for (const m of METHODS) {
      if (!m.mergekitName) continue;
      for (const d of m.params) {
        if (!d.mergekit) continue;
        const v = sample(d);
        const yamlValue = JSON.stringify(v);
        const weight = m.params.some((x) => x.mergekit?.key === 'weight') ? ', weight: 1' : '';
        const wOnly = weight ? `parameters: { weight: 1 }\n` : '';
        const req = m.params
          .filter((x) => x.required && x !== d && x.mergekit)
          .map((x) => `, ${x.mergekit?.key}: ${JSON.stringify(sample(x))}`)
          .join('');
        const text =
          d.scope === 'per-model'
            ? `merge_method: ${m.mergekitName}\nbase_model: z\n${wOnly}models:\n  - model: a\n    parameters: { ${d.mergekit.key}: ${yamlValue} }\n  - model: b\n`
            : `merge_method: ${m.mergekitName}\nbase_model: z\nparameters: { ${d.mergekit.key}: ${yamlValue}${weight}${req} }\nmodels:\n  - model: a\n  - model: b\n`;
        const recipe = parseMergekitYaml(text);
        assert.equal(recipe.method, m.name);
        const got = recipe.params[d.name];
        if (d.scope === 'per-model') assert.deepEqual((got as unknown[])[0], v, `${m.name}.${d.name}`);
        else assert.deepEqual(got, v, `${m.name}.${d.name}`);
        // and the recipe validates as it is
        m.resolve(recipe.params, recipe.models.length);
      }
    }
  });
});

describe('a new method is one definition plus one registration', () => {
  const gain: ParamDecl = {
    name: 'gain',
    type: 'number',
    scope: 'global',
    perTensor: true,
    min: 0,
    max: 4,
    default: 1,
    required: false,
    help: 'scale of the mean task vector',
    cli: { flag: 'gain', description: 'scale of the mean task vector' },
    mergekit: { key: 'gain' },
  };
  /** θ₀ + gain · mean τᵢ: nothing else in the tree knows it. */
  const scaledMean = defineMethod({
    name: 'scaled-mean',
    description: 'the base plus the scaled mean task vector',
    reference: 'a test method',
    params: [weightsParam(), gain],
    needsBase: true,
    minInputs: 1,
    mergekitName: 'scaled_mean',
    build(tp) {
      const g = tp.extra?.gain as number;
      return (inputs, base, _ctx, out) => {
        const b = base as Float32Array;
        for (let j = 0; j < out.length; j++) {
          let s = 0;
          for (const x of inputs) s += x[j] - b[j];
          out[j] = Math.fround(b[j] + (g * s) / inputs.length);
        }
      };
    },
  });

  it('validates, merges per tensor and maps mergekit configs from its declaration alone', () => {
    const unregister = registerMethod(scaledMean);
    try {
      assert.equal(getMethod('scaled-mean'), scaledMean);
      const base = Float32Array.from([0, 0]);
      const xs = [Float32Array.from([1, 2]), Float32Array.from([3, 4])];
      assert.deepEqual(Array.from(mergeTensor('scaled-mean', {}, xs, base)), [2, 3]);
      assert.deepEqual(Array.from(mergeTensor('scaled-mean', { gain: 0.5 }, xs, base)), [1, 1.5]);
      // per-tensor rules; the declared default covers tensors no rule matches
      const rules = [{ filter: 'attn', value: 2 }];
      assert.deepEqual(Array.from(mergeTensor('scaled-mean', { gain: rules }, xs, base, { name: 'l.attn.q' })), [4, 6]);
      assert.deepEqual(Array.from(mergeTensor('scaled-mean', { gain: rules }, xs, base, { name: 'l.mlp' })), [2, 3]);
      assert.equal(code(refusal(() => mergeTensor('scaled-mean', { gain: 5 }, xs, base))), 'E_BAD_PARAM');
      assert.equal(code(refusal(() => mergeTensor('scaled-mean', { density: 0.5 }, xs, base))), 'E_BAD_PARAM');
      // every other method now refuses gain by name
      const e = refusal(() => getMethod('ties').resolve({ gain: 1 }, 2));
      assert.match((e as Error).message, /ties takes no gain \(scaled-mean takes it\)/);
      // the recipe carries it next to the fixed parameters
      assert.equal(scaledMean.resolve({ gain: 3 }, 2).gain, 3);
      // mergekit
      const recipe = parseMergekitYaml(
        'merge_method: scaled_mean\nbase_model: z\nparameters:\n  weight: 1\n  gain: [{filter: attn, value: 2}, {value: 0.5}]\nmodels:\n  - model: a\n  - model: b\n',
      );
      assert.equal(recipe.method, 'scaled-mean');
      assert.deepEqual(recipe.params, {
        gain: [{ filter: 'attn', value: 2 }, { value: 0.5 }],
        weights: [1, 1],
      });
      assert.deepEqual(Array.from(mergeTensor(recipe.method, recipe.params, xs, base, { name: 'mlp' })), [1, 1.5]);
      assert.throws(
        () => parseMergekitYaml('merge_method: ties\nbase_model: z\nparameters: { gain: 1 }\nmodels:\n  - model: a\n'),
        (err) => code(err) === 'E_MERGEKIT_UNSUPPORTED' && /gain.*with ties/.test((err as Error).message),
      );
    } finally {
      unregister();
    }
    assert.equal(code(refusal(() => getMethod('scaled-mean'))), 'E_UNKNOWN_METHOD');
    assert.throws(() => parseMergekitYaml('merge_method: scaled_mean\nbase_model: z\nmodels:\n  - model: a\n'));
  });
});
