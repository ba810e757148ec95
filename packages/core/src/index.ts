export * from './errors.js';
export * from './dtypes.js';
export * from './safetensors/index.js';
export * from './kernels/index.js';
export * from './methods/index.js';
