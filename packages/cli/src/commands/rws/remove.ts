import { Args, Flags } from '@oclif/core';
import { WgitCommand } from '../../base.js';
import { deviceFlags, useDevice } from '../../device-flag.js';
import { formatBytes, printable } from '../../format.js';
import { decimalFlag } from '../../numbers.js';
import { type RwsPatchResult, rwsPatch } from '../../rws-patch.js';

export default class RwsRemove extends WgitCommand {
  static override summary = 'Take a robust weight signature out of a model: MODEL − A·RWS, committed';
  static override description = `The inverse of \`wgit rws apply\` with the same A: the same dequantized signature is
subtracted (in f32, rounded once to the model's dtype), so applying then removing gives the model
back up to two roundings to its dtype, whatever the quantization. Committed with parents MODEL and
SIG; without --branch on a new branch rws-remove/<MODEL>.`;
  static override args = {
    rev: Args.string({ description: 'the patched model (revision or path)', required: true }),
  };
  static override examples = ['<%= config.bin %> rws remove clean-v2-fog --sig fog-sig'];
  static override flags = {
    ...deviceFlags,
    sig: Flags.string({ description: 'the signature (a commit made by wgit rws extract)', required: true }),
    scale: Flags.string({ description: 'A in MODEL − A·RWS: the scale it was applied with (default 1)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    branch: Flags.string({ description: 'branch to commit on (default: a new branch rws-remove/<MODEL>)' }),
  };

  async run(): Promise<RwsPatchResult> {
    const { args, flags } = await this.parse(RwsRemove);
    const device = await useDevice(flags.device);
    const w = decimalFlag(flags.scale, 'scale') ?? 1;
    const out = await rwsPatch({
      device,
      repo: flags.repo,
      rev: args.rev,
      sig: flags.sig,
      scale: -w,
      verb: 'remove',
      message: flags.message,
      branch: flags.branch,
      progress: (m) => this.progress(m),
      progressDone: () => this.progressDone(),
    });
    if (!this.jsonEnabled())
      this.log(
        `[${printable(out.branch)} ${out.commit.slice(0, 12)}] ${printable(args.rev)} − ${w}·${printable(flags.sig)}: ` +
          `${out.tensors.changed} tensors changed, ${out.tensors.kept} kept; ${formatBytes(out.storedBytes)} stored`,
      );
    return out;
  }
}
