import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../../base.js';
import { deviceFlags, useDevice } from '../../device-flag.js';
import { formatBytes, printable } from '../../format.js';
import { decimalFlag } from '../../numbers.js';
import { type RwsPatchResult, rwsPatch } from '../../rws-patch.js';

export default class RwsApply extends WgitCommand {
  static override summary = 'Patch a model with a robust weight signature: MODEL + A·RWS, committed';
  static override description = `Each tensor the signature covers gets A times the signature added (dequantized, in f32,
rounded once to the model's dtype); every other tensor stays as it is. The model may be another
clean model than the one the signature was extracted against (transfer), of the same architecture:
a missing tensor or another shape is refused before anything is written. Committed with parents
MODEL and SIG; without --branch on a new branch rws-apply/<MODEL>.`;
  static override args = {
    rev: Args.string({ description: 'the model to patch (revision or path)', required: true }),
  };
  static override examples = [
    '<%= config.bin %> rws apply clean-v2 --sig fog-sig',
    '<%= config.bin %> rws apply clean-v2 --sig fog-sig --scale 0.5 --branch clean-v2-fog',
  ];
  static override flags = {
    ...deviceFlags,
    sig: Flags.string({ description: 'the signature (a commit made by wgit rws extract)', required: true }),
    scale: Flags.string({ description: 'A in MODEL + A·RWS (default 1)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch rws-apply/<MODEL>)' }),
  };

  async run(): Promise<RwsPatchResult> {
    const { args, flags } = await this.parse(RwsApply);
    const device = await useDevice(flags.device);
    const scale = decimalFlag(flags.scale, 'scale') ?? 1;
    const out = await rwsPatch({
      device,
      repo: flags.repo,
      rev: args.rev,
      sig: flags.sig,
      scale,
      verb: 'apply',
      message: flags.message,
      branch: flags.branch,
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    if (!this.jsonEnabled())
      this.log(
        `[${printable(out.branch)} ${out.commit.slice(0, 12)}] ${printable(args.rev)} + ${scale}·${printable(flags.sig)}: ` +
          `${out.tensors.changed} tensors patched, ${out.tensors.kept} kept; ${formatBytes(out.storedBytes)} stored`,
      );
    return out;
  }
}
