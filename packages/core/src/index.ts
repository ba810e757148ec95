export * from './dtypes.js';
export * from './errors.js';
export * from './kernels/index.js';
export * from './methods/index.js';
export * from './parse.js';
export * from './safetensors/index.js';
