import RemoteList from './list.js';

/** `wgit remote` alone lists the remotes, as `wgit remote list` does. */
export default class Remote extends RemoteList {
  static override description = 'Manage remotes: add, remove, list, show (alone: list them).';
  static override examples = ['<%= config.bin %> remote -v', '<%= config.bin %> remote add origin /mnt/shared/models'];
}
