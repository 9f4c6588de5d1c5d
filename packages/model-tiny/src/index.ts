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
export {
  layoutPrompt,
  sentenceSource,
  stratifiedDepths,
  FACT_SNAP,
  type FillerKind,
  type FillerChoice,
  type LayoutOptions,
  type Layout,
  type PlacedSample,
} from './data/compose.js';
export { proseSentences, prosePath, PROSE_TRAIN_SHARE, type ProseSplit } from './data/prose.js';
export { wordNeedleSample, fillerWords, type WordNeedleOptions } from './data/word-needle.js';
export { multiNeedleSample, NEEDLE_NAMES, type MultiNeedleOptions } from './data/multi-needle.js';
export { variableTrackingSample, type VariableTrackingOptions } from './data/variable-tracking.js';
export { mixedTrainingRow, parseMix, MIX_TASKS, MIN_ROW_LENGTH, type Mix, type MixTask, type MixedRow } from './data/mix.js';
export { evalTaskSample, evalSeed, EVAL_DEPTHS, EVAL_SETTINGS } from './data/eval-tasks.js';
