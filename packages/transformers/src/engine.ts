import { engineAnswer, type AnswerEngine, type KVKernels } from '@kvfold/core';
import { generateCompressed } from './generate.js';
import { inspectDecoder, type TransformersModelLike, type TransformersTokenizerLike } from './model.js';

/** Options of {@link transformersEngine}. */
export interface TransformersEngineOptions<T> {
  /** A transformers.js causal LM (`AutoModelForCausalLM.from_pretrained(...)`) whose decoder follows the Hugging Face cache interface. */
  readonly model: TransformersModelLike;
  /** Its tokenizer (`AutoTokenizer.from_pretrained(...)`). */
  readonly tokenizer: TransformersTokenizerLike;
  /** Kernels of the kvfold backend the policy runs on (`await kv.backend('reference')` or `'onnx'`). */
  readonly kernels: KVKernels<T>;
  /** Proportional attention through the decoder's `past_log_counts.{i}` inputs (a `model_proportional` graph). Default false. */
  readonly proportional?: boolean;
  /** Shown in results. Default names transformers.js and the kernels. */
  readonly name?: string;
}

/**
 * A transformers.js model as an `AnswerEngine` for `@kvfold/pipeline`'s `answer()`: the context is
 * prefilled and compressed by the policy, the question read after, and the answer decoded greedily —
 * {@link generateCompressed} with a `context`. The decoder is checked here, so a model kvfold cannot drive
 * fails when the engine is made, not at the first question.
 * @throws ModelError naming the missing input or output of the decoder.
 */
export function transformersEngine<T>(options: TransformersEngineOptions<T>): AnswerEngine {
  inspectDecoder(options.model);
  const { model, tokenizer, kernels } = options;
  return {
    name: options.name ?? `@kvfold/transformers (transformers.js; policy kernels: ${kernels.describe()})`,
    async answer(r) {
      return engineAnswer(
        await generateCompressed({
          model,
          tokenizer,
          kernels,
          policy: r.policy,
          budget: r.budget,
          context: r.context,
          prompt: r.question,
          maxNewTokens: r.maxNewTokens,
          stop: r.stop,
          seed: r.seed,
          ...(options.proportional ? { proportional: true } : {}),
        }),
      );
    },
  };
}
