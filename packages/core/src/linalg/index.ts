export { gaussianFill } from './gaussian.js';
export { jacobiSVD, type SmallSVD } from './jacobi.js';
export { orthonormalize } from './orth.js';
export { householderQR, type QR } from './qr.js';
export { RSVD_DEFAULTS, type Rsvd, type RsvdOptions, randomizedSvd, rankForEnergy } from './rsvd.js';
