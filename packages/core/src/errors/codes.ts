/**
 * Every error code wgit raises, in one place: what it means (one line), which
 * commands can raise it, what to do about it, and the exit status of the CLI
 * (1 unless `exit` says otherwise; 2 for usage errors). docs/errors.md is
 * generated from this table (`node scripts/errors-doc.mjs`), and a test keeps
 * the sources, this table and the page in step: a code thrown anywhere under
 * packages/{name}/src must be listed here, and every code listed here must be
 * thrown somewhere.
 *
 * Besides these, a failure of the operating system keeps its own code behind
 * `E_` (`E_NOENT`, `E_ACCES`, `E_NOSPC` …), see SYSTEM_ERROR_NOTE.
 */

/** What the catalogue knows of one code. */
export interface ErrorCodeInfo {
  /** One line: the condition the code stands for. */
  readonly meaning: string;
  /** The commands that can raise it, or 'library' for codes only the @wgit packages' APIs raise. */
  readonly commands: string;
  /** One line: what the user should do. */
  readonly fix: string;
  /** CLI exit status; 1 when absent. */
  readonly exit?: 2;
}

const MODEL_READERS = 'inspect, commit, merge, lines, transfer';
const METHODS = 'merge, lines, transfer';
const WRITERS = 'commit, merge, lines, transfer, branch, tag';
const REPO_READERS = 'log, show, checkout, merge, lines, transfer, fsck, gc';
const CHUNK_READERS = 'checkout, merge, lines, transfer, fsck';
const KERNEL_USERS = 'merge, lines, transfer, checkout --model';
const LIBRARY = 'library';
const BUG = 'report it as a bug, with the output of the command run again under WGIT_DEBUG=1';

export const ERROR_CODES = {
  // Command line
  E_USAGE: {
    meaning: 'the command line is wrong: an unknown command or flag, a missing argument, flags that exclude each other',
    commands: 'every command',
    fix: 'check the command with `wgit <command> --help`',
    exit: 2,
  },
  E_BAD_PARAM: {
    meaning: 'a merge method parameter or numeric flag is out of range or does not apply to the method',
    commands: `${METHODS}, gc, lowrank, export-lora`,
    fix: 'correct the value named in the message; docs/methods/ lists each method’s parameters',
  },
  E_BAD_ENV: {
    meaning: 'an environment variable (WGIT_THREADS, WGIT_PARALLEL_MIN_BYTES) holds a value out of range',
    commands: 'every command that reads or writes tensors',
    fix: 'unset the variable or give it a value in the range the message names',
  },
  E_BAD_DATE: {
    meaning: 'the author date (WGIT_AUTHOR_DATE) is not unix seconds or an ISO-8601 date',
    commands: WRITERS,
    fix: 'write the date as unix seconds, 2024-03-07 or 2024-03-07T10:00:00Z',
  },
  E_BAD_IDENTITY: {
    meaning: 'the author name or email contains <, > or a newline',
    commands: WRITERS,
    fix: 'fix WGIT_AUTHOR_NAME / WGIT_AUTHOR_EMAIL',
  },
  E_NOT_FOUND: {
    meaning: 'a file or folder given on the command line (or a side file asked for) does not exist',
    commands: `${MODEL_READERS}, checkout --model`,
    fix: 'check the path',
  },
  E_UNKNOWN_METHOD: {
    meaning: 'no merge method of that name',
    commands: 'merge',
    fix: 'use one of the methods the message lists',
  },
  E_BASE_REQUIRED: {
    meaning: 'the method needs a base model (the one the inputs were fine-tuned from) and none was given',
    commands: METHODS,
    fix: 'give --base',
  },
  E_EVAL_FAILED: {
    meaning: 'the evaluation command of `wgit soup --eval` exited non-zero, or did not print one finite number',
    commands: 'soup',
    fix: 'run the command by hand on a model folder: it must exit 0 and print one number (higher is better)',
  },
  E_MERGEKIT_INVALID: {
    meaning: 'a mergekit YAML config is malformed (not UTF-8, not YAML, a field of the wrong type)',
    commands: 'merge --config',
    fix: 'correct the config at the place the message names; docs/mergekit.md describes what is read',
  },
  E_MERGEKIT_UNSUPPORTED: {
    meaning: 'a mergekit config uses a method or option wgit does not implement',
    commands: 'merge --config',
    fix: 'remove the option, or run the merge with mergekit itself; docs/mergekit.md lists what is supported',
  },

  // Repository
  E_NOT_A_REPO: {
    meaning: 'no .wgit folder here or in any parent folder',
    commands: 'every command that uses a repository',
    fix: 'run `wgit init`, or point at the repository with --repo',
  },
  E_REPO_EXISTS: {
    meaning: 'init found a .wgit folder already there',
    commands: 'init',
    fix: 'use the existing repository, or choose another folder',
  },
  E_BAD_CONFIG: {
    meaning: 'the repository config (.wgit/config.json) is unreadable, not JSON, or of an unknown format',
    commands: 'every command that uses a repository',
    fix: 'restore .wgit/config.json, or upgrade wgit if the format is newer than it reads',
  },
  E_LOCKED: {
    meaning: 'another wgit process holds the lock (a branch, a checkout, or gc)',
    commands: `${WRITERS}, checkout, gc`,
    fix: 'retry when the other process is done; delete the lock file the message names only if no wgit process runs',
  },
  E_BAD_REF_NAME: {
    meaning: 'a branch or tag name breaks git’s ref-name rules, or clashes with an existing ref as a folder',
    commands: `branch, tag, ${METHODS}`,
    fix: 'choose another name',
  },
  E_BRANCH_EXISTS: {
    meaning: 'a branch of that name exists already',
    commands: 'branch, diff --save',
    fix: 'choose another name, or delete the branch first',
  },
  E_TAG_EXISTS: {
    meaning: 'a tag of that name exists already',
    commands: 'tag',
    fix: 'choose another name, or delete the tag first',
  },
  E_BRANCH_MOVED: {
    meaning: 'the branch moved while the command ran (another process committed to it)',
    commands: 'commit, merge, lines, transfer',
    fix: 're-run the command; nothing was lost',
  },
  E_CURRENT_BRANCH: {
    meaning: 'the branch to delete is the one HEAD points to (here, or on the remote for push --delete)',
    commands: 'branch --delete, push --delete',
    fix: 'switch HEAD to another branch first; on a remote, give --force to delete its HEAD branch anyway',
  },
  E_UNKNOWN_REVISION: {
    meaning: 'a revision names no branch, tag or commit (or an input is neither a revision nor a model path)',
    commands: `${REPO_READERS}, branch, tag`,
    fix: 'check the name with `wgit branch`, `wgit tag` or `wgit log`',
  },
  E_AMBIGUOUS_REVISION: {
    meaning: 'an abbreviated commit id matches more than one commit',
    commands: `${REPO_READERS}, branch, tag`,
    fix: 'give more digits of the commit id',
  },
  E_BAD_GROUP_NAME: {
    meaning: 'a group of models to commit beside the main one has an invalid name',
    commands: 'merge (rmm)',
    fix: BUG,
  },
  E_UNKNOWN_GROUP: {
    meaning: 'the commit has no model group of that name',
    commands: 'checkout --model',
    fix: 'check the commit with `wgit show`',
  },
  E_NOT_RMM: {
    meaning: 'checkout --model on a commit that is not a reversible merge',
    commands: 'checkout --model',
    fix: 'give a commit made by `wgit merge --method rmm`, or drop --model',
  },
  E_DISK_FULL: {
    meaning: 'the disk filled up while writing',
    commands: `${WRITERS}, checkout, demo`,
    fix: 'free space and re-run; a failed write leaves nothing half-written behind',
  },

  // Damage in the repository
  E_CORRUPT: {
    meaning: 'the repository is damaged: an object, ref, manifest, tensor record or side file is malformed or missing',
    commands: `${REPO_READERS}, status`,
    fix: 'run `wgit fsck` to list what is affected; restore the damaged files from a backup',
  },
  E_MISSING_OBJECT: {
    meaning: 'a git object (commit, tree, blob) the history refers to is missing',
    commands: REPO_READERS,
    fix: 'run `wgit fsck`; restore the object from a backup or another copy of the repository',
  },
  E_CORRUPT_CHUNK: {
    meaning:
      'a stored chunk of tensor bytes fails its checks (bad header, wrong length, bad payload, or damaged delta base)',
    commands: CHUNK_READERS,
    fix: 'run `wgit fsck` to list the affected commits; restore the chunk from a backup, or re-commit the model',
  },
  E_MISSING_CHUNK: {
    meaning: 'a chunk a commit refers to is not in the chunk store',
    commands: CHUNK_READERS,
    fix: 'run `wgit fsck`; restore the chunk from a backup, or re-commit the model',
  },
  E_CHUNK_BASE_MISMATCH: {
    meaning: 'the chunk codec was given no base chunk, or one of the wrong length, for a delta-encoded chunk',
    commands: LIBRARY,
    fix: BUG,
  },
  E_INVALID_ARGUMENT: {
    meaning: 'a chunk codec function was called with an argument of the wrong type or size (a programming error)',
    commands: LIBRARY,
    fix: BUG,
  },

  // Paths and output folders
  E_UNSAFE_PATH: {
    meaning:
      'a path would leave its folder or land on a dangerous name: `..`, absolute, `.git`/`.wgit`/`.gitmodules` in any spelling, a link out of a model folder, two paths for one file',
    commands: `${MODEL_READERS}, checkout, fsck`,
    fix: 'for your own model: rename the file; for a repository or index from elsewhere: do not use it, it is hostile or damaged',
  },
  E_OUT_DIR: {
    meaning: 'the output folder cannot be used (not a folder, unreadable, a dangling link)',
    commands: `checkout, ${METHODS}`,
    fix: 'choose another output folder, or fix its permissions',
  },
  E_OUTPUT_NOT_EMPTY: {
    meaning: 'the output folder exists and is not empty; wgit never mixes two models in one folder',
    commands: `checkout, ${METHODS}, demo, export-lora`,
    fix: 'choose a new or empty output folder',
  },
  E_UNSUPPORTED_FILE: {
    meaning:
      'the model folder holds something other than regular files and folders (a FIFO, socket, device, a link to a folder)',
    commands: MODEL_READERS,
    fix: 'remove it from the model folder, or copy the real files in its place',
  },

  // Model files
  E_NOT_A_MODEL: {
    meaning: 'the path is not a .safetensors file or a folder holding one',
    commands: MODEL_READERS,
    fix: 'give a .safetensors file or a model folder',
  },
  E_SAFETENSORS_TRUNCATED: {
    meaning: 'a file is shorter than its header says (or under 8 bytes), or changed size while being read',
    commands: MODEL_READERS,
    fix: 'download or write the file again; do not change it while wgit reads it',
  },
  E_SAFETENSORS_HEADER_TOO_LARGE: {
    meaning: 'the declared JSON header length is over 100,000,000 bytes',
    commands: MODEL_READERS,
    fix: 'the file is damaged or not safetensors; download it again',
  },
  E_SAFETENSORS_JSON: {
    meaning: 'the header is not valid UTF-8 JSON, does not start with "{", or is not an object',
    commands: MODEL_READERS,
    fix: 'the file is damaged or not safetensors; download it again',
  },
  E_SAFETENSORS_ENTRY: {
    meaning: 'a tensor entry is not an object with exactly the fields dtype, shape, data_offsets',
    commands: MODEL_READERS,
    fix: 'rewrite the file with a safetensors writer',
  },
  E_SAFETENSORS_NAME: {
    meaning: 'a tensor name is empty or contains a NUL character',
    commands: MODEL_READERS,
    fix: 'rename the tensor and rewrite the file',
  },
  E_SAFETENSORS_DTYPE: {
    meaning: 'a tensor has an unknown dtype',
    commands: MODEL_READERS,
    fix: 'convert the tensor to a dtype docs/commands/inspect.md lists',
  },
  E_SAFETENSORS_SHAPE: {
    meaning: 'a shape is not a list of non-negative integers, or does not match the tensor’s byte range',
    commands: MODEL_READERS,
    fix: 'rewrite the file with a safetensors writer',
  },
  E_SAFETENSORS_OFFSETS: {
    meaning: 'data_offsets are malformed, reversed, past the end, overlapping, or leave a gap',
    commands: MODEL_READERS,
    fix: 'rewrite the file with a safetensors writer',
  },
  E_SAFETENSORS_DUPLICATE: {
    meaning: 'a tensor name, metadata key or entry field appears twice (in one file, across shards, or in the index)',
    commands: MODEL_READERS,
    fix: 'remove or rename the duplicate',
  },
  E_SAFETENSORS_METADATA: {
    meaning: '__metadata__ is not an object of string values',
    commands: MODEL_READERS,
    fix: 'rewrite the metadata as strings',
  },
  E_SAFETENSORS_INDEX: {
    meaning:
      'model.safetensors.index.json is malformed (not JSON, no weight_map, non-string shard names, several indexes)',
    commands: MODEL_READERS,
    fix: 'repair or regenerate the index file',
  },
  E_SAFETENSORS_INDEX_MISMATCH: {
    meaning: 'the index and the shards disagree about which tensor is where, or a numbered shard is left out',
    commands: MODEL_READERS,
    fix: 'regenerate the index, or remove the stray shard',
  },
  E_SAFETENSORS_SHARD_MISSING: {
    meaning: 'the index names a shard file that does not exist (or is hidden)',
    commands: MODEL_READERS,
    fix: 'download the missing shard',
  },
  E_SAFETENSORS_WRITE: {
    meaning: 'a safetensors writer was used out of order (wrong tensor, wrong length, use after finish)',
    commands: LIBRARY,
    fix: BUG,
  },
  E_TENSOR_NOT_FOUND: {
    meaning: 'the model (or commit) has no tensor of that name',
    commands: `${METHODS}, checkout --model`,
    fix: 'check the names with `wgit inspect` or `wgit show`',
  },
  E_BUFFER_TOO_SMALL: {
    meaning: 'the buffer passed to readTensor is smaller than the tensor',
    commands: LIBRARY,
    fix: BUG,
  },

  // Merging
  E_TENSOR_MISMATCH: {
    meaning: 'the input models do not hold the same tensors',
    commands: `${METHODS}, sparsify, rws extract`,
    fix: 'merge only models of one architecture (fine-tunes of one base); transfer has --copy-missing',
  },
  E_SHAPE_MISMATCH: {
    meaning: 'a tensor has different shapes (or lengths) in the input models',
    commands: `${METHODS}, apply, sparsify, rws, lowrank`,
    fix: 'merge only models of one architecture (fine-tunes of one base)',
  },
  E_NAN_DELTA: {
    meaning:
      'a delta between the input models holds NaN (for a signature: NaN or an infinity) at the tensor and index named',
    commands: 'sparsify, rws extract',
    fix: 'repair the model that holds the NaN (wgit diff shows which tensor changed), or leave that tensor out of the models',
  },
  E_NOT_AN_OBJECT: {
    meaning: 'a revision given as an object (a diff vector) holds something else',
    commands: 'apply, export-lora',
    fix: 'save the object first (wgit diff A B --save NAME) and name that branch',
  },
  E_OBJECT_BASE_MISSING: {
    meaning:
      'an object commit does not name a base model in this repository, so the model it stands for cannot be made',
    commands: 'checkout',
    fix: 'apply it to a model yourself (wgit apply OBJECT --onto BASE), or check out its own tensors with --object',
  },
  E_DTYPE_MISMATCH: {
    meaning: 'a tensor has different dtypes in the input models',
    commands: `${METHODS}, sparsify, rws extract, lowrank`,
    fix: 'convert the inputs to one dtype first',
  },
  // Low-rank bases and LoRA adapters (lowrank, export-lora, import-lora)
  E_RANK_TOO_LARGE: {
    meaning: 'the rank asked for is larger than a tensor’s smaller dimension',
    commands: 'lowrank',
    fix: 'give a --rank no larger than the smallest matrix the message names, or use --energy',
  },
  E_NOT_FINITE: {
    meaning: 'a tensor’s difference (fine-tune − base) holds NaN or infinity',
    commands: 'lowrank',
    fix: 'check the model named in the message: one of its tensors holds NaN or infinite values',
  },
  E_BAD_ADAPTER: {
    meaning: 'a LoRA adapter folder is not in PEFT’s layout: config missing or not LORA, keys or factor shapes wrong',
    commands: 'import-lora',
    fix: 'give a folder with adapter_config.json (peft_type LORA) and adapter_model.safetensors as PEFT saves them',
  },
  E_ADAPTER_MISMATCH: {
    meaning: 'a LoRA adapter does not fit the base model: a module it changes is missing there or has another shape',
    commands: 'import-lora',
    fix: 'give the base model the adapter was trained on (its base_model_name_or_path)',
  },
  E_DTYPE_UNKNOWN: {
    meaning: 'a dtype name wgit does not know',
    commands: `${METHODS}, checkout`,
    fix: 'use a dtype docs/commands/inspect.md lists',
  },
  E_DTYPE_UNSUPPORTED: {
    meaning: 'a merge result was asked for in a non-float dtype',
    commands: METHODS,
    fix: 'merge float tensors only (F32, F16, BF16, F64)',
  },
  E_DTYPE_LENGTH: {
    meaning: 'a byte buffer is not a whole number of elements of its dtype, or an output array has the wrong length',
    commands: LIBRARY,
    fix: BUG,
  },
  E_RMM_GROUP: {
    meaning: 'the basis and coefficient tensors of a reversible merge are missing or malformed',
    commands: 'checkout --model',
    fix: 'run `wgit fsck`; the commit was not written by wgit merge --method rmm or is damaged',
  },

  // Compute kernels
  E_KERNEL_MISSING: {
    meaning: 'the WebAssembly kernel module was not built',
    commands: KERNEL_USERS,
    fix: 'run `pnpm build` in packages/core',
  },
  E_KERNEL_THREADS: {
    meaning: 'the kernel thread count is not an integer from 1 to 256',
    commands: KERNEL_USERS,
    fix: 'pass a thread count from 1 to 256',
  },
  E_KERNEL_OOM: {
    meaning: 'the kernels would need more than 4 GiB of WebAssembly memory, or the memory cannot grow',
    commands: KERNEL_USERS,
    fix: 'free memory, or use fewer threads (WGIT_THREADS)',
  },
  E_KERNEL_TRAP: {
    meaning: 'a kernel failed inside WebAssembly',
    commands: KERNEL_USERS,
    fix: BUG,
  },
  E_KERNEL_CLOSED: {
    meaning: 'the kernel pool was used after it was closed',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_ARG: {
    meaning: 'a kernel was called with a bad argument (size, option)',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_DTYPE: {
    meaning: 'a kernel was given a dtype other than F32, BF16 or F16',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_LENGTH: {
    meaning: 'kernel inputs and outputs differ in length',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_ALIAS: {
    meaning: 'a kernel output overlaps one of its inputs',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_BAD_FREE: {
    meaning: 'kernel memory was freed twice, or was not allocated by this pool',
    commands: LIBRARY,
    fix: BUG,
  },
  E_KERNEL_INTERNAL: {
    meaning: 'a kernel’s internal consistency check failed',
    commands: KERNEL_USERS,
    fix: BUG,
  },
  E_DEVICE_UNAVAILABLE: {
    meaning:
      'the GPU device was asked for but none is usable: no webgpu module, no Vulkan loader, no Vulkan ICD, no adapter, or only a software one',
    commands: `${KERNEL_USERS}, doctor`,
    fix: 'run `wgit doctor` to see what is missing (install the GPU driver with its Vulkan ICD), or use the cpu (or auto) device',
  },
  E_DEVICE_ERROR: {
    meaning: 'the GPU reported an error while computing: out of memory, a refused command, or a lost device',
    commands: KERNEL_USERS,
    fix: 'retry with the cpu device; if it repeats, report it as a bug with the output of `wgit doctor --json`',
  },

  // Worker threads
  E_WORKER_EXIT: {
    meaning: 'a worker thread of the process pool stopped unexpectedly; the jobs it held failed',
    commands: 'commit, checkout, merge, lines, transfer',
    fix: 're-run (a new pool starts); if it repeats, report it as a bug',
  },

  // Demo
  E_BAD_DATASET: {
    meaning: 'the demo’s digits data is unreadable or malformed',
    commands: 'demo',
    fix: 'reinstall wgit; the data ships with it',
  },
  E_BAD_MODEL: {
    meaning: 'a model given to the demo’s evaluation is not a digits classifier',
    commands: 'demo',
    fix: 'evaluate only the demo’s own models',
  },

  // Remotes
  E_REMOTE_URL: {
    meaning: 'a remote URL is malformed, of an unknown scheme, or carries credentials (user:password@, signed query)',
    commands: 'remote add, clone, push, fetch, pull',
    fix: 'give a folder, file:// or s3://bucket/prefix URL; keep credentials in the AWS environment or files, never in the URL',
  },
  E_REMOTE_EXISTS: {
    meaning: 'a remote of that name is configured already',
    commands: 'remote add',
    fix: 'choose another name, or remove the remote first',
  },
  E_UNKNOWN_REMOTE: {
    meaning: 'no remote of that name is configured',
    commands: 'remote remove, remote show, push, fetch, pull',
    fix: 'list the remotes with `wgit remote list`, or add one with `wgit remote add`',
  },
  E_REMOTE_REF_NOT_FOUND: {
    meaning: 'the remote has no branch or tag of that name (or is empty)',
    commands: 'clone, pull, push',
    fix: 'check the name; `wgit remote show NAME` lists the remote’s branches',
  },
  E_NON_FAST_FORWARD: {
    meaning: 'the update would drop commits: the target ref has commits the new value does not contain',
    commands: 'push, pull',
    fix: 'fetch and merge or rebuild on top of the remote’s branch, or give --force to overwrite it',
  },
  E_REMOTE_CORRUPT: {
    meaning: 'an object, chunk or ref on the remote is missing, malformed or does not match its name',
    commands: 'fetch, pull, clone, push',
    fix: 'nothing entered the local repository; repair the remote (push the object again from a repository that has it)',
  },
  E_REMOTE_UNAVAILABLE: {
    meaning:
      'the remote could not be reached or kept failing (server errors, throttling, dropped connections) after retries',
    commands: 'push, fetch, pull, clone, remote show',
    fix: 're-run the command later; transfers resume where they stopped, and a remote ref never names a missing object',
  },
  E_REMOTE_DENIED: {
    meaning:
      'the remote refused the request: no credentials, wrong credentials, or no permission on the bucket or folder',
    commands: 'push, fetch, pull, clone, remote show',
    fix: 'check the AWS credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID …) and the bucket policy, or the folder’s permissions',
  },
  E_REMOTE_LOCKED: {
    meaning: 'another pusher held the remote ref’s lock for longer than the wait',
    commands: 'push',
    fix: 're-run the push; a lock whose owner died expires by itself',
  },

  // Anything else
  E_INTERNAL: {
    meaning: 'an unexpected failure inside wgit',
    commands: 'every command',
    fix: BUG,
  },
} as const satisfies Record<string, ErrorCodeInfo>;

/** Every code in the catalogue. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** How a failure of the operating system is reported; docs/errors.md prints it below the table. */
export const SYSTEM_ERROR_NOTE =
  'A failure the operating system reports keeps its code behind `E_`: `E_NOENT` (no such file), `E_ACCES` (permission denied), `E_NOSPC` (no space left) and so on; these are not listed above. The exit status is 1.';

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** The CLI exit status for a code: 2 for usage errors, 1 for everything else (system codes included). */
export function exitStatus(code: string): 1 | 2 {
  return isErrorCode(code) ? ((ERROR_CODES[code] as ErrorCodeInfo).exit ?? 1) : 1;
}
