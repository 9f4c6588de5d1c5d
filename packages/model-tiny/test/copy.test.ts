import { describe, expect, it } from 'vitest';
import { createRng } from '@kvfold/core';
import { SPECIAL_TOKENS } from '../src/config.js';
import { copyTrainingRow } from '../src/data/copy.js';
import { trainArgs } from '../src/train/args.js';

describe('copying rows (train.js --copy-share)', () => {
  it.each([160, 256, 1023])('a row of %i positions repeats its first half, and only the repeat is scored', (L) => {
    const r = copyTrainingRow(createRng(7), L);
    expect(r.ids.length).toBe(L + 1);
    expect(r.weights.length).toBe(L);
    expect(r.ids[0]).toBe(SPECIAL_TOKENS.bos);
    const bytes = Array.from(r.ids.subarray(1));
    const half = Math.floor(L / 2);
    for (let k = half; k < L; k++) expect(bytes[k]).toBe(bytes[k - half]);
    // Lower-case words separated by spaces: filler words, no grammar.
    expect(Buffer.from(bytes.slice(0, half)).toString()).toMatch(/^[a-z ]+$/);
    for (let t = 0; t < L; t++) expect(r.weights[t]).toBe(t > half ? 1 : 0);
  });

  it('is seeded: the same stream gives the same row, another gives another', () => {
    expect(Array.from(copyTrainingRow(createRng(3), 256).ids)).toEqual(Array.from(copyTrainingRow(createRng(3), 256).ids));
    expect(Array.from(copyTrainingRow(createRng(4), 256).ids)).not.toEqual(Array.from(copyTrainingRow(createRng(3), 256).ids));
  });

  it('parses --copy-share in [0, 1], default 0', () => {
    expect(trainArgs([]).copyShare).toBe(0);
    expect(trainArgs(['--copy-share', '0.5']).copyShare).toBe(0.5);
    expect(() => trainArgs(['--copy-share', '1.5'])).toThrow('--copy-share 1.5 must be in [0, 1]');
    expect(() => trainArgs(['--copy-share=-1'])).toThrow('--copy-share "-1" must be a number >= 0');
  });
});
