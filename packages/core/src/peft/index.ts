export {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  type LoraConfig,
  leafOf,
  loraKeys,
  moduleOf,
  moduleScaling,
  parseLoraConfig,
  parseLoraKey,
  patternValue,
} from './config.js';
export { exportLora, type LoraExportReport } from './export.js';
export { importLora, type LoraAdapter, type LoraModule, openLoraAdapter, planLoraImport } from './import.js';
