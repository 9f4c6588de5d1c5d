import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Absolute path of the bundled weights folder (Hugging Face Llama layout: config.json,
 * model.safetensors, MODEL_CARD.md). Resolved from this module, so it works from src/ and dist/.
 */
export const modelTinyPath: string = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'weights');

export { fillerText, fillerSentence, type FillerOptions } from './data/filler.js';
export {
  passkeySample,
  recallSample,
  PASSKEY_QUESTION,
  type PasskeyOptions,
  type RecallOptions,
  type RecallSample,
  type TaskSample,
} from './data/tasks.js';
export { trainingRow, encodeBytes, ANSWER_WEIGHT, CLOSE_WEIGHT, type TrainingRow } from './data/training.js';
export { toHfConfig, SPECIAL_TOKENS, type TinyModelConfig } from './config.js';
