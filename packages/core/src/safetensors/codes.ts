/**
 * Every error code the safetensors reader, writer and model loader can raise,
 * with its meaning. The property tests check that hostile input only ever
 * produces one of these, and docs/commands/inspect.md lists the same table.
 */
export const SAFETENSORS_ERROR_CODES = {
  E_SAFETENSORS_TRUNCATED:
    'the file is shorter than its header says (or shorter than 8 bytes, or shrank while being read)',
  E_SAFETENSORS_HEADER_TOO_LARGE: 'the declared JSON header length is over 100,000,000 bytes',
  E_SAFETENSORS_JSON: 'the header is not valid UTF-8 JSON, does not start with "{", or is not an object',
  E_SAFETENSORS_ENTRY: 'a tensor entry is not an object with exactly the fields dtype, shape, data_offsets',
  E_SAFETENSORS_NAME: 'a tensor name is empty or contains a NUL character',
  E_SAFETENSORS_DTYPE: 'a tensor has an unknown dtype',
  E_SAFETENSORS_SHAPE:
    'a shape is not a list of non-negative integers, or its element count times the dtype size differs from the byte range',
  E_SAFETENSORS_OFFSETS:
    'data_offsets are malformed, reversed, past the end of the file, overlap, or leave a gap (tensors must tile the data section exactly)',
  E_SAFETENSORS_DUPLICATE:
    'a tensor name (or metadata key, or entry field) appears twice, in one file or across shards',
  E_SAFETENSORS_METADATA: '__metadata__ is not an object of string values',
  E_SAFETENSORS_INDEX:
    'model.safetensors.index.json is malformed (not JSON, no weight_map object, non-string shard names)',
  E_SAFETENSORS_INDEX_MISMATCH:
    'the index and the shards disagree: a tensor is in a shard but not in the weight_map (or under another shard), the reverse, or a numbered shard file beside the index is not in it',
  E_SAFETENSORS_SHARD_MISSING: 'the index names a shard file that does not exist',
  E_SAFETENSORS_WRITE:
    'the writer was used out of order: wrong tensor, wrong byte length, or writing after finish/abort',
  E_UNSAFE_PATH: 'a shard name is not a safe relative path, or a symbolic link points outside the model folder',
  E_NOT_A_MODEL: 'the folder holds no .safetensors file, or the path is not a regular file or folder',
  E_UNSUPPORTED_FILE: 'the model folder contains a FIFO, socket or device, or a link to one',
  E_NOT_FOUND: 'the path (or side file) does not exist, or a symbolic link in the folder points to nothing',
  E_TENSOR_NOT_FOUND: 'no tensor of that name in the model',
  E_BUFFER_TOO_SMALL: 'the buffer passed to readTensor is smaller than the tensor',
} as const;

export type SafetensorsErrorCode = keyof typeof SAFETENSORS_ERROR_CODES;
