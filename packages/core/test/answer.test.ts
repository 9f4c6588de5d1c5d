import { describe, expect, it } from 'vitest';
import { engineAnswer, splitTokens, type GenerationResult } from '../src/index.js';

/** Words to ids, with a BOS (0) first and "ab" merged into one token (9), as BPE merges across a seam. */
const tokenizer = {
  encode(text: string): number[] {
    const ids = [0];
    for (let i = 0; i < text.length; i++) {
      if (text.startsWith('ab', i)) {
        ids.push(9);
        i++;
      } else ids.push(text.charCodeAt(i) - 96);
    }
    return ids;
  },
};

describe('splitTokens', () => {
  it('splits one encoding of the whole prompt at the context, BOS once', () => {
    expect(splitTokens(tokenizer, 'cd' + 'ef', 2)).toEqual({ context: [0, 3, 4], rest: [5, 6] });
  });

  it('keeps a token that merges across the seam in the rest, so nothing is encoded twice', () => {
    // "ca" + "bd": the whole prompt encodes c, ab, d; the context alone encodes c, a.
    expect(splitTokens(tokenizer, 'ca' + 'bd', 2)).toEqual({ context: [0, 3], rest: [9, 4] });
  });

  it('gives an empty rest when the split is at the end', () => {
    expect(splitTokens(tokenizer, 'cd', 2)).toEqual({ context: [0, 3, 4], rest: [] });
  });
});

describe('engineAnswer', () => {
  it("maps a generation run with a context to what an AnswerEngine returns", () => {
    const run: GenerationResult & { contextTokens: number } = {
      text: '42.',
      tokens: [5, 3, 7, 1],
      promptTokens: 6,
      finishReason: 'stop',
      timings: { prefillMs: 1, decodeMs: 2, decodeSteps: 3, decodeTokensPerSecond: 1500, totalMs: 3 },
      cache: { peakBytes: 900, finalBytes: 700, lengths: [10, 11], budget: 8, positions: 120 },
      contextTokens: 110,
    };
    expect(engineAnswer(run)).toEqual({ text: '42.', contextTokens: 110, questionTokens: 6, generatedTokens: 4, keptSlots: [10, 11], cacheBytes: 700 });
  });
});
