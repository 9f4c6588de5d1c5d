import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { byteTokenizer, loadTokenizer } from '../src/index.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'kvfold-tok-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A tiny SentencePiece-style BPE tokenizer.json (Metaspace, BOS template), written by hand. */
const vocab: Record<string, number> = { '<s>': 0, '</s>': 1, '▁': 2, h: 3, e: 4, l: 5, o: 6, w: 7, r: 8, d: 9, '▁h': 10, ll: 11, '▁he': 12, '▁hell': 13, '▁hello': 14, '▁w': 15, or: 16, '▁wor': 17, '▁world': 18, '<unk>': 19 };
const tokenizerJson = {
  version: '1.0',
  added_tokens: [
    { id: 0, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    { id: 1, content: '</s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
  post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] } } },
  decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['▁ h', 'l l', '▁h e', '▁he ll', '▁hell o', '▁ w', 'o r', '▁w or', '▁wor l', '▁worl d'] },
};

describe('tokenizers', () => {
  it('byte tokenizer: ids are UTF-8 bytes; special ids (>= 256) decode to nothing', () => {
    const t = byteTokenizer({ eosTokenIds: [256] });
    expect(t.encode('hé')).toEqual([104, 0xc3, 0xa9]);
    expect(t.decode([104, 256, 0xc3, 0xa9])).toBe('hé');
    expect(t.decode([0xc3])).toBe('\ufffd');
    expect(t.eosTokenIds).toEqual([256]);
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => t.decode(t.encode(s)) === s), { numRuns: 50 });
  });

  it('loadTokenizer picks bytes from config.json and collects EOS ids from config and generation_config', async () => {
    const f = join(root, 'bytes');
    await import('node:fs/promises').then((fs) => fs.mkdir(f));
    await writeFile(join(f, 'config.json'), JSON.stringify({ eos_token_id: 3, kvfold: { tokenizer: 'bytes' } }));
    await writeFile(join(f, 'generation_config.json'), JSON.stringify({ eos_token_id: [3, 4] }));
    const t = await loadTokenizer(f);
    expect(t.kind).toBe('bytes');
    expect(t.eosTokenIds).toEqual([3, 4]);
    expect(t.encode('A')).toEqual([65]);
    expect(t.bosTokenId).toBeUndefined();
    // The embedded model's layout: special ids above the byte range, prompts start with BOS.
    await writeFile(join(f, 'config.json'), JSON.stringify({ eos_token_id: 257, bos_token_id: 256, kvfold: { tokenizer: 'bytes', special_tokens: { bos: 256, eos: 258 } } }));
    const t2 = await loadTokenizer(f);
    expect(t2.encode('A')).toEqual([256, 65]);
    expect(t2.bosTokenId).toBe(256);
    expect([...t2.eosTokenIds].sort()).toEqual([257, 258, 3, 4].sort());
    expect(t2.decode([256, 65, 257])).toBe('A');
  });

  it('loadTokenizer reads tokenizer.json with @huggingface/tokenizers (BOS template, EOS from tokenizer_config)', async () => {
    const f = join(root, 'hf');
    await import('node:fs/promises').then((fs) => fs.mkdir(f));
    await writeFile(join(f, 'config.json'), JSON.stringify({ model_type: 'llama' }));
    await writeFile(join(f, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    await writeFile(join(f, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' } }));
    const t = await loadTokenizer(f);
    expect(t.kind).toBe('huggingface');
    expect(t.encode('hello world')).toEqual([0, 14, 18]);
    expect(t.decode([0, 14, 18, 1])).toBe('hello world');
    expect(t.eosTokenIds).toEqual([1]);
    expect(t.bosTokenId).toBe(0);
  });

  it('loadTokenizer names what is missing or malformed', async () => {
    const f = join(root, 'none');
    await import('node:fs/promises').then((fs) => fs.mkdir(f));
    await expect(loadTokenizer(f)).rejects.toMatchObject({ code: 'KVF_MODEL', details: { reason: 'missing' } });
    await writeFile(join(f, 'tokenizer.json'), '{');
    await expect(loadTokenizer(f)).rejects.toMatchObject({ code: 'KVF_MODEL', details: { file: join(f, 'tokenizer.json') } });
  });
});
