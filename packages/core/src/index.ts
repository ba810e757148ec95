export * from './device/index.js';
export * from './dtypes.js';
export * from './errors.js';
export * from './methods/index.js';
export * from './objects/index.js';
export * from './parse.js';
export * from './safetensors/index.js';
export * from './util/safe-path.js';
