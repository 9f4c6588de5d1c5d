import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fullCacheEval, summariseFullCache, type FullCacheItem } from '../src/full-cache.js';
import { openModel } from '../src/model.js';
import { wilsonInterval } from '../src/stats.js';
import { tempDir, tinyModelFolder } from './helpers/tiny-model.js';

describe('fullCacheEval', () => {
  it('scores every item of every cell in both settings, agrees between them, and resumes from its log', async () => {
    const { model } = await openModel(await tinyModelFolder(3));
    const log = join(tempDir(), 'items.jsonl');
    const options = { tasks: ['passkey', 'variable-tracking'] as const, lengths: [256], n: 3, log };
    const cells = await fullCacheEval(model, options);
    expect(cells.map((c) => `${c.task}/${c.setting}/${c.accuracy.n}`)).toEqual([
      'passkey/after-compression/3',
      'passkey/in-prompt/3',
      'variable-tracking/after-compression/3',
      'variable-tracking/in-prompt/3',
    ]);
    const items = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as FullCacheItem);
    expect(items.length).toBe(12);
    // Same weights, full cache: prefilling the question or decoding it gives the same greedy text.
    for (const i of items.filter((x) => x.setting === 'in-prompt')) {
      const twin = items.find((x) => x.setting === 'after-compression' && x.task === i.task && x.sample === i.sample)!;
      expect(i.predicted).toBe(twin.predicted);
      expect(i.correct).toBe(i.predicted.startsWith(i.expected));
    }
    let calls = 0;
    const again = await fullCacheEval(model, { ...options, onProgress: () => calls++ });
    expect(calls).toBe(0);
    expect(again).toEqual(cells);
    expect(readFileSync(log, 'utf8').trim().split('\n').length).toBe(12);
    // A narrower call over the same log counts only its own items.
    const fewer = await fullCacheEval(model, { ...options, tasks: ['passkey'], n: 2, settings: ['in-prompt'], onProgress: () => calls++ });
    expect(calls).toBe(0);
    expect(fewer.map((c) => `${c.task}/${c.setting}/${c.accuracy.n}`)).toEqual(['passkey/in-prompt/2']);
    // Items of another seed (or generator) are refused rather than counted for the prompts asked now.
    await expect(fullCacheEval(model, { ...options, seed: 1 })).rejects.toThrow(/written from other items/);
    expect(calls).toBe(0);
  }, 120_000);

  it('rejects an unknown task and n < 1 before running any item', async () => {
    const { model } = await openModel(await tinyModelFolder(3));
    await expect(fullCacheEval(model, { tasks: ['poems' as 'passkey'] })).rejects.toThrow(/unknown task "poems"; allowed/);
    await expect(fullCacheEval(model, { n: 0 })).rejects.toThrow(/n must be an integer >= 1/);
  });
});

describe('summariseFullCache', () => {
  it('groups items into cells with Wilson intervals', () => {
    const item = (sample: number, correct: boolean, length = 256): FullCacheItem => ({ task: 'recall', length, setting: 'in-prompt', sample, expected: '1', predicted: correct ? '1' : '2', correct });
    const cells = summariseFullCache([item(0, true), item(1, false), item(2, true), item(0, true, 512)]);
    expect(cells).toEqual([
      { task: 'recall', length: 256, setting: 'in-prompt', accuracy: wilsonInterval(2, 3) },
      { task: 'recall', length: 512, setting: 'in-prompt', accuracy: wilsonInterval(1, 1) },
    ]);
  });
});
