import { stat } from 'node:fs/promises';
import { MODEL_JSON_LIMITS, readModelJson } from './model/json.js';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ModelError } from '@kvfold/core';

/** Text ↔ token ids, whatever the implementation behind it. */
export interface TextTokenizer {
  /** `bytes` (token id = UTF-8 byte) or `huggingface` (tokenizer.json). */
  readonly kind: 'bytes' | 'huggingface';
  /** Encode text to ids (special tokens such as BOS added as the tokenizer's template says). */
  encode(text: string): number[];
  /** Decode ids to text, skipping special tokens. Incomplete UTF-8 sequences decode to U+FFFD. */
  decode(ids: readonly number[]): string;
  /** End-of-sequence ids known to the tokenizer (may be empty). */
  readonly eosTokenIds: readonly number[];
  /** Beginning-of-sequence id, when the tokenizer has one. */
  readonly bosTokenId?: number;
}

/** Options of {@link byteTokenizer}. */
export interface ByteTokenizerOptions {
  /** End-of-sequence ids (usually ids >= 256 reserved by the model). */
  readonly eosTokenIds?: readonly number[];
  /** A BOS id to prepend on encode, if the model was trained with one. */
  readonly bosTokenId?: number;
}

/**
 * The byte tokenizer: token id = UTF-8 byte value (0..255). Ids of 256 and above are the model's
 * special tokens and decode to nothing.
 */
export function byteTokenizer(options: ByteTokenizerOptions = {}): TextTokenizer {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder('utf-8');
  const bos = options.bosTokenId;
  return {
    kind: 'bytes',
    eosTokenIds: [...(options.eosTokenIds ?? [])],
    ...(bos !== undefined ? { bosTokenId: bos } : {}),
    encode(text: string): number[] {
      const ids = Array.from(encoder.encode(text));
      return bos !== undefined ? [bos, ...ids] : ids;
    },
    decode(ids: readonly number[]): string {
      return decoder.decode(Uint8Array.from(ids.filter((i) => i >= 0 && i < 256)));
    },
  };
}

async function readJson(path: string): Promise<unknown> {
  return readModelJson(path, MODEL_JSON_LIMITS.tokenizer);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function tokenContent(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { content?: unknown }).content === 'string') return (t as { content: string }).content;
  return undefined;
}

function idList(v: unknown): number[] {
  const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
  return list.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
}

/** Wrap an `@huggingface/tokenizers` tokenizer built from tokenizer.json (+ tokenizer_config.json). */
export function huggingFaceTokenizer(tokenizerJson: object, tokenizerConfig: object = {}, extraEos: readonly number[] = []): TextTokenizer {
  const tok = new HfTokenizer(tokenizerJson, tokenizerConfig);
  const cfg = tokenizerConfig as Record<string, unknown>;
  const eosName = tokenContent(cfg.eos_token);
  const bosName = tokenContent(cfg.bos_token);
  const eos = new Set(extraEos);
  if (eosName !== undefined) {
    const id = tok.token_to_id(eosName);
    if (id !== undefined) eos.add(id);
  }
  const bos = bosName !== undefined ? tok.token_to_id(bosName) : undefined;
  return {
    kind: 'huggingface',
    eosTokenIds: [...eos],
    ...(bos !== undefined ? { bosTokenId: bos } : {}),
    encode: (text) => tok.encode(text).ids,
    decode: (ids) => tok.decode([...ids], { skip_special_tokens: true }),
  };
}

/**
 * Load the tokenizer of a model folder. `config.json` with `"kvfold": {"tokenizer": "bytes"}` selects
 * the {@link byteTokenizer} (with `"special_tokens": {"bos": id, "eos": id}` in the same object, prompts
 * start with that BOS id and that EOS id ends generation); otherwise `tokenizer.json` (with `tokenizer_config.json` when present) is
 * loaded with `@huggingface/tokenizers`. EOS ids come from `config.json`, `generation_config.json` and
 * the tokenizer config.
 * @throws ModelError when no tokenizer can be found or a file is not valid JSON.
 */
export async function loadTokenizer(folder: string): Promise<TextTokenizer> {
  const configPath = join(folder, 'config.json');
  const config = (await exists(configPath)) ? ((await readJson(configPath)) as Record<string, unknown>) : {};
  const genPath = join(folder, 'generation_config.json');
  const gen = (await exists(genPath)) ? ((await readJson(genPath)) as Record<string, unknown>) : {};
  const eos = [...new Set([...idList(config.eos_token_id), ...idList(gen.eos_token_id)])];
  const ext = config.kvfold as { tokenizer?: unknown } | undefined;
  if (ext && typeof ext === 'object' && ext.tokenizer === 'bytes') {
    // `kvfold.special_tokens` names the ids above the byte range; a `bos` there means prompts start with it.
    const special = (ext as { special_tokens?: unknown }).special_tokens;
    const sp = special && typeof special === 'object' ? (special as Record<string, unknown>) : {};
    const bos = idList(sp.bos)[0];
    const allEos = [...new Set([...eos, ...idList(sp.eos)])];
    return byteTokenizer({ eosTokenIds: allEos, ...(bos !== undefined ? { bosTokenId: bos } : {}) });
  }
  const tokPath = join(folder, 'tokenizer.json');
  if (!(await exists(tokPath))) {
    throw new ModelError(`${folder}: no tokenizer.json, and config.json does not select the byte tokenizer ("kvfold": {"tokenizer": "bytes"})`, { folder, file: tokPath, reason: 'missing' });
  }
  const tokJson = await readJson(tokPath);
  const tcPath = join(folder, 'tokenizer_config.json');
  const tc = (await exists(tcPath)) ? await readJson(tcPath) : {};
  try {
    return huggingFaceTokenizer(tokJson as object, tc as object, eos);
  } catch (cause) {
    throw new ModelError(`${tokPath}: cannot build the tokenizer: ${(cause as Error).message}`, { file: tokPath }, cause);
  }
}

/** Splitting a context from the rest of a prompt now lives in `@kvfold/core` (shared with the transformers.js adapter); re-exported here. */
export { splitTokens, type SplitTokens } from '@kvfold/core';
