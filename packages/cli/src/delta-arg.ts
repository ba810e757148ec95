/**
 * A revision that stands for a change to a model: an object commit whose kind
 * has a DeltaView (diff vector, sparse delta, low-rank basis, signature), or a
 * transfer commit, which records its diff vector FT − FROM by naming both
 * commits (they are its parents, so they stay reachable). Shared by `wgit
 * apply` and the checkout of an object commit.
 */
import type { DeltaView, ModelSource } from '@wgit/core';
import type { Repository } from '@wgit/store';

export interface OpenedDelta {
  view: DeltaView;
  /** The object kind, or 'transfer'. */
  kind: string;
  /** The scale the delta was made with (a transfer's --scale); 1 for objects. */
  scale: number;
  /** The model the object was made against (its base), when the commit names one in the repository. */
  base: string | null;
  /** Models opened for the view, closed by `close`. */
  close: () => Promise<void>;
}

interface ManifestLike {
  object?: { kind: string; version: number; meta?: Record<string, unknown> };
  recipe?: Record<string, unknown> | null;
}

const COMMIT_ID = /^[0-9a-f]{40}$/;

/** The commit a recipe field names (`{rev, commit, path}` as recipeRef writes it), or null. */
export function recipeCommit(recipe: Record<string, unknown> | null | undefined, key: string): string | null {
  const ref = recipe?.[key];
  if (typeof ref !== 'object' || ref === null) return null;
  const commit = (ref as { commit?: unknown }).commit;
  return typeof commit === 'string' && COMMIT_ID.test(commit) ? commit : null;
}

/** The manifest a model opened from the store carries (absent for files on disk). */
export function manifestOf(source: ModelSource): ManifestLike | undefined {
  return (source as { manifest?: ManifestLike }).manifest;
}

/**
 * The DeltaView of `source` (the model of `commit`, opened from `repo`), or
 * E_NOT_AN_OBJECT naming `spec` as the user typed it.
 */
export async function openDelta(
  repo: Repository,
  spec: string,
  commit: string | null,
  source: ModelSource,
): Promise<OpenedDelta> {
  const { liveDiffView, resolveObject, WgitError } = await import('@wgit/core');
  const manifest = commit === null ? undefined : manifestOf(source);
  const header = manifest?.object;
  if (header) {
    const resolved = resolveObject(
      header,
      source.tensors.map((t) => t.name),
    );
    if (resolved.kind.delta) {
      const value = await resolved.kind.decode(source, resolved.header);
      const base = recipeCommit(manifest?.recipe, 'base') ?? recipeCommit(manifest?.recipe, 'a');
      return { view: resolved.kind.delta(value), kind: resolved.kind.name, scale: 1, base, close: async () => {} };
    }
  }
  const recipe = manifest?.recipe;
  if (recipe?.method === 'transfer') {
    const ft = recipeCommit(recipe, 'ft');
    const from = recipeCommit(recipe, 'from');
    if (ft === null || from === null)
      throw new WgitError(
        'E_NOT_AN_OBJECT',
        `transfer ${JSON.stringify(spec)} was made from files, not commits, so its diff vector is not in the repository; commit the fine-tune and its base first, or save one with wgit diff BASE FT --save NAME`,
        { rev: spec, kind: 'transfer' },
      );
    const ftModel = await repo.openModel(ft);
    let fromModel: ModelSource;
    try {
      fromModel = await repo.openModel(from);
    } catch (e) {
      await ftModel.close();
      throw e;
    }
    const scale = typeof recipe.scale === 'number' && Number.isFinite(recipe.scale) ? recipe.scale : 1;
    return {
      view: liveDiffView(fromModel, ftModel),
      kind: 'transfer',
      scale,
      base: from,
      close: async () => {
        await Promise.all([ftModel.close(), fromModel.close()]);
      },
    };
  }
  throw new WgitError(
    'E_NOT_AN_OBJECT',
    `${JSON.stringify(spec)} is not a change to a model (a diff vector, sparse delta, low-rank basis, signature or transfer); save one with wgit diff A B --save NAME`,
    { rev: spec, kind: header?.kind ?? 'checkpoint' },
  );
}
