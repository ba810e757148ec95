import { Args, Flags } from '@oclif/core';
import type { RwsTensorReport } from '@wgit/core';
import { WgitCommand } from '../../base.js';
import { deviceFlags, useDevice } from '../../device-flag.js';
import { formatBytes, printable } from '../../format.js';
import { branchPiece, recipeRef, runMethodCommit } from '../../method-commit.js';
import { integerFlag } from '../../numbers.js';

export interface RwsExtractResult {
  commit: string;
  branch: string;
  parents: string[];
  bits: 4 | 8 | 32;
  /** Blocks kept (0 … layers − 1) of the blocks found. */
  layers: number;
  blocks: number;
  tensors: RwsTensorReport[];
  /** ‖RWS − Q(RWS)‖/‖RWS‖ over every tensor (0 with --bits 32). */
  relError: number;
  /** Bytes of the stored tensors before compression; of the same tensors as a dense f32 diff; of a full copy of ROBUST. */
  objectBytes: number;
  denseF32Bytes: number;
  fullCopyBytes: number;
  rawBytes: number;
  storedBytes: number;
}

export default class RwsExtract extends WgitCommand {
  static override summary = "Extract a robust weight signature: the robust model's update orthogonal to the clean one";
  static override description = `With a = CLEAN − INIT and d = ROBUST − INIT per tensor (flattened), the signature is
d − (⟨d,a⟩/⟨a,a⟩)·a, kept for the tensors of the first N blocks (found from names such as
layers.12.; default half the blocks, rounded up) and quantized per tensor to 8 or 4 bits between
its min and max (--bits 32: kept f32). Reports the bytes against a full copy of ROBUST and the
quantization error. Committed with parents ROBUST and INIT; without --branch on a new branch
rws/<ROBUST>. Patch a model with \`wgit rws apply\`, take it out with \`wgit rws remove\`.`;
  static override args = {
    robust: Args.string({ description: 'the model trained under the corruption (revision or path)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> rws extract ft-fog --clean ft-clean --init base',
    '<%= config.bin %> rws extract ft-fog --clean ft-clean --init base --layers 6 --bits 4 --branch fog-sig',
  ];
  static override flags = {
    ...deviceFlags,
    clean: Flags.string({ description: 'the clean model trained from the same init', required: true }),
    init: Flags.string({ description: 'the init both were trained from', required: true }),
    layers: Flags.string({ description: 'blocks kept, from the first (default: half, rounded up)' }),
    bits: Flags.string({ description: '8 or 4 (quantized), or 32 (f32, unquantized); default 8' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch rws/<ROBUST>)' }),
  };

  async run(): Promise<RwsExtractResult> {
    const { args, flags } = await this.parse(RwsExtract);
    const device = await useDevice(flags.device);
    const params = { layers: integerFlag(flags.layers, 'layers'), bits: integerFlag(flags.bits, 'bits') };
    const { computeRws, planRws } = await import('@wgit/core');
    const { value, result, parents } = await runMethodCommit({
      device,
      repo: flags.repo,
      models: [args.robust, flags.clean, flags.init],
      kind: 'rws',
      branch: flags.branch,
      branchName: ([robust]) => branchPiece(robust),
      object: ([r, c, i]) => planRws(r.source, c.source, i.source, params).header,
      compute: async ([robust, clean, init], outDir, _scratch, sink) => {
        const report = await computeRws(robust.source, clean.source, init.source, params, {
          sink,
          outDir,
          onProgress: (e) => this.progress(`rws ${e.done}/${e.total}`),
        });
        return {
          value: report,
          message:
            flags.message ?? `robust weight signature of ${args.robust} (clean ${flags.clean}, init ${flags.init})`,
          parents: [robust, init],
          recipe: {
            kind: 'rws',
            base: recipeRef(init),
            clean: recipeRef(clean),
            robust: recipeRef(robust),
            bits: report.bits,
            layers: report.layers,
            blocks: report.blocks,
            relError: report.relError,
            tensors: report.tensors,
          },
        };
      },
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    const { header: _header, ...report } = value;
    const out: RwsExtractResult = {
      commit: result.commit,
      branch: result.branch,
      parents,
      ...report,
      rawBytes: result.rawBytes,
      storedBytes: result.storedBytes,
    };
    if (!this.jsonEnabled())
      this.log(
        `[${printable(result.branch)} ${result.commit.slice(0, 12)}] signature of ${printable(args.robust)}: ` +
          `${out.tensors.length} tensors of blocks 0–${out.layers - 1} of ${out.blocks}, ${out.bits === 32 ? 'f32' : `${out.bits}-bit`}, ` +
          `quantization error ${out.relError.toExponential(2)}; ${formatBytes(out.storedBytes)} stored ` +
          `(a full copy: ${formatBytes(out.fullCopyBytes)}, ${(out.fullCopyBytes / Math.max(1, out.storedBytes)).toFixed(1)}× smaller)`,
      );
    return out;
  }
}
