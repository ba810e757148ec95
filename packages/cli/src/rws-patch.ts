/**
 * `wgit rws apply` and `wgit rws remove`: a model plus w·RWS (or minus), through
 * the one applier every delta kind shares, committed with parents MODEL and
 * SIGNATURE.
 */
import type { DeltaCounts } from '@wgit/core';
import { manifestOf } from './delta-arg.js';
import { branchPiece, recipeRef, runMethodCommit } from './method-commit.js';

export interface RwsPatchResult {
  commit: string;
  branch: string;
  parents: string[];
  model: string;
  signature: string;
  /** The w of model + w·RWS actually applied: negative for remove. */
  scale: number;
  tensors: DeltaCounts;
  rawBytes: number;
  storedBytes: number;
}

export interface RwsPatchPlan {
  repo: string | undefined;
  rev: string;
  sig: string;
  scale: number;
  verb: 'apply' | 'remove';
  message: string | undefined;
  branch: string | undefined;
  progress: (m: string) => void;
  progressDone: () => void;
  device: import('./device-flag.js').DeviceUsed;
}

export async function rwsPatch(plan: RwsPatchPlan): Promise<RwsPatchResult> {
  const { applyDelta, decodeRws, RWS_KIND, resolveObject, rwsView, WgitError } = await import('@wgit/core');
  const { value, models, result, parents } = await runMethodCommit({
    device: plan.device,
    repo: plan.repo,
    models: [plan.sig, plan.rev],
    kind: `rws-${plan.verb}`,
    branch: plan.branch,
    branchName: ([, model]) => branchPiece(model),
    deltaBase: ([, model]) => model,
    compute: async ([sig, model], outDir, _scratch, sink) => {
      const header = manifestOf(sig.source)?.object;
      if (sig.commit === null || header?.kind !== RWS_KIND)
        throw new WgitError(
          'E_NOT_AN_OBJECT',
          `${JSON.stringify(plan.sig)} is not a robust weight signature; make one with wgit rws extract`,
          { rev: plan.sig, kind: header?.kind ?? 'checkpoint' },
        );
      // resolveObject refuses a stored form newer than this wgit reads.
      const { header: checked } = resolveObject(
        header,
        sig.source.tensors.map((t) => t.name),
      );
      const counts = await applyDelta(rwsView(decodeRws(sig.source, checked)), model.source, plan.scale, {
        sink,
        outDir,
        onProgress: (e) => plan.progress(`rws ${plan.verb} ${e.done}/${e.total}`),
      });
      const w = Math.abs(plan.scale);
      return {
        value: counts,
        message:
          plan.message ??
          (plan.verb === 'apply'
            ? `patch ${plan.rev} with signature ${plan.sig}${w === 1 ? '' : ` × ${w}`}`
            : `remove signature ${plan.sig}${w === 1 ? '' : ` × ${w}`} from ${plan.rev}`),
        parents: [model, sig],
        recipe: { method: `rws ${plan.verb}`, sig: recipeRef(sig), onto: recipeRef(model), scale: plan.scale },
      };
    },
    progress: plan.progress,
    progressDone: plan.progressDone,
  });
  const [sig, model] = models;
  return {
    commit: result.commit,
    branch: result.branch,
    parents,
    model: model.commit ?? (model.path as string),
    signature: sig.commit as string,
    scale: plan.scale,
    tensors: value,
    rawBytes: result.rawBytes,
    storedBytes: result.storedBytes,
  };
}
