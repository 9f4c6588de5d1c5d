/**
 * A `tokenizer.json` equal to kvfold's byte tokenizer (token id = UTF-8 byte value), so transformers.js,
 * which only reads Hugging Face tokenizer files, encodes and decodes a byte-level model's text exactly as
 * `@kvfold/runtime` does.
 * @module
 */

/** Special tokens of a byte-level checkpoint (ids above 255), from `config.json`'s `kvfold.special_tokens`. */
export interface ByteSpecialTokens {
  /** Id prepended to every prompt, if the model was trained with one. */
  readonly bos?: number;
  /** Id that ends generation. */
  readonly eos?: number;
}

/**
 * GPT-2's byte → printable character table: byte-level BPE tokenizers (and their `ByteLevel` decoder)
 * work on these characters, so a vocabulary mapping each byte's character to the byte's value makes a BPE
 * with no merges behave as the identity on bytes.
 */
export function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let c = 0x21; c <= 0x7e; c++) printable.push(c);
  for (let c = 0xa1; c <= 0xac; c++) printable.push(c);
  for (let c = 0xae; c <= 0xff; c++) printable.push(c);
  const table: string[] = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return table;
}

/** Name of a special token id in the generated tokenizer. */
export function specialTokenName(id: number, special: ByteSpecialTokens): string {
  if (id === special.bos) return '<|kvfold:bos|>';
  if (id === special.eos) return '<|kvfold:eos|>';
  return `<|kvfold:${id}|>`;
}

/** The two documents {@link byteTokenizerFiles} writes. */
export interface ByteTokenizerFiles {
  /** `tokenizer.json`. */
  readonly tokenizer: object;
  /** `tokenizer_config.json`. */
  readonly tokenizerConfig: object;
}

/**
 * The `tokenizer.json` and `tokenizer_config.json` documents of a byte-level model of `vocabSize` ids:
 * ids 0..255 are bytes, every id from 256 up is a special token (skipped when decoding), and prompts start
 * with the BOS id when there is one — the same ids `byteTokenizer` produces. A special token's name in a
 * prompt's text is read as that token, which the byte tokenizer would spell out byte by byte; the names
 * (`<|kvfold:bos|>`) are chosen never to occur in ordinary text.
 */
export function byteTokenizerFiles(vocabSize: number, special: ByteSpecialTokens, maxLength: number): ByteTokenizerFiles {
  const table = byteToUnicode();
  const vocab: Record<string, number> = {};
  table.forEach((ch, b) => (vocab[ch] = b));
  const added = [];
  for (let id = 256; id < vocabSize; id++) {
    const content = specialTokenName(id, special);
    vocab[content] = id;
    added.push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const bos = special.bos !== undefined ? specialTokenName(special.bos, special) : undefined;
  const postProcessor =
    bos === undefined
      ? null
      : {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [special.bos], tokens: [bos] } },
        };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: postProcessor,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
    ...(bos !== undefined ? { bos_token: bos, add_bos_token: true } : {}),
    ...(special.eos !== undefined ? { eos_token: specialTokenName(special.eos, special) } : {}),
  };
  return { tokenizer, tokenizerConfig };
}
