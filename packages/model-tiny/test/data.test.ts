import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createRng } from '@kvfold/core';
import { fillerText, passkeySample, recallSample, trainingRow, PASSKEY_QUESTION, ANSWER_WEIGHT, SPECIAL_TOKENS } from '../src/index.js';

describe('fillerText', () => {
  it('is deterministic for a seed, exact in length, ASCII without digits or colons', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 2 ** 31 }), (length, seed) => {
        const a = fillerText({ length, seed });
        expect(a).toBe(fillerText({ length, seed }));
        expect(a.length).toBe(length);
        expect(/^[A-Za-z ,.]*$/.test(a)).toBe(true);
        expect(a.includes('pass key')).toBe(false);
      }),
      { numRuns: 30 },
    );
  });

  it('varies: many distinct sentences and different seeds differ', () => {
    const t = fillerText({ length: 4000, seed: 1 });
    const sentences = new Set(t.split('. ').slice(0, -1));
    expect(sentences.size).toBeGreaterThan(40);
    expect(fillerText({ length: 200, seed: 2 })).not.toBe(fillerText({ length: 200, seed: 3 }));
  });
});

describe('passkeySample', () => {
  it('is deterministic, has the requested length, ends with the question and contains the key twice', () => {
    fc.assert(
      fc.property(fc.constantFrom(128, 256, 512, 1024, 2048), fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 1e6 }), (length, depth, seed) => {
        const s = passkeySample({ length, depth, seed });
        expect(s).toEqual(passkeySample({ length, depth, seed }));
        expect(s.prompt.length).toBe(length);
        expect(s.prompt.endsWith(PASSKEY_QUESTION)).toBe(true);
        expect(/^[1-9]\d{4}$/.test(s.answer)).toBe(true);
        expect(s.prompt.split(s.answer).length - 1).toBe(2);
        expect(s.prompt.indexOf(`The pass key is ${s.answer}.`)).toBe(s.needleOffset);
      }),
      { numRuns: 40 },
    );
  });

  it('puts the needle at the requested depth of the filler (within one sentence)', () => {
    for (const length of [512, 2048]) {
      for (const depth of [0, 0.25, 0.5, 0.75, 1]) {
        const s = passkeySample({ length, depth, seed: 17 });
        const needleLen = s.prompt.indexOf(' is the pass key.') + ' is the pass key.'.length - s.needleOffset;
        const filler = length - needleLen - PASSKEY_QUESTION.length;
        expect(Math.abs(s.needleOffset - depth * filler)).toBeLessThanOrEqual(130);
      }
    }
    expect(passkeySample({ length: 1024, depth: 0, seed: 4 }).needleOffset).toBe(0);
  });

  it('rejects a depth outside [0, 1]', () => {
    expect(() => passkeySample({ length: 256, depth: 1.5, seed: 1 })).toThrow(RangeError);
  });
});

describe('recallSample', () => {
  it('is deterministic and the answer is the value paired with the queried key', () => {
    fc.assert(
      fc.property(fc.constantFrom(256, 512, 1024), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 1e6 }), (length, pairs, seed) => {
        const s = recallSample({ length, pairs, seed });
        expect(s).toEqual(recallSample({ length, pairs, seed }));
        expect(s.prompt.length).toBe(length);
        expect(s.pairs.length).toBe(pairs);
        expect(new Set(s.pairs.map((p) => p.key)).size).toBe(pairs);
        for (const p of s.pairs) expect(s.prompt.includes(`Key ${p.key}: ${p.value}.`)).toBe(true);
        expect(s.pairs.find((p) => p.key === s.key)?.value).toBe(s.answer);
        expect(s.prompt.endsWith(`${s.key}: `)).toBe(true);
        expect(s.chance).toBeCloseTo(1 / pairs);
      }),
      { numRuns: 30 },
    );
  });
});

describe('trainingRow', () => {
  it('has bos first, the answer then "." and eos last, and weights the answer digits', () => {
    const rng = createRng(9);
    for (const L of [128, 512]) {
      for (let i = 0; i < 10; i++) {
        const r = trainingRow(rng, L);
        expect(r.ids.length).toBe(L + 1);
        expect(r.weights.length).toBe(L);
        expect(r.ids[0]).toBe(SPECIAL_TOKENS.bos);
        expect(r.ids[L]).toBe(SPECIAL_TOKENS.eos);
        expect(r.ids[L - 1]).toBe(46);
        const nAns = r.kind === 'passkey' ? 5 : 4;
        for (let j = 0; j < nAns; j++) {
          expect(r.weights[L - 2 - nAns + j]).toBe(ANSWER_WEIGHT);
          const d = r.ids[L - 1 - nAns + j];
          expect(d >= 48 && d <= 57).toBe(true);
        }
      }
    }
  });

  it("draws a step's rows from the step's own stream, so a resumed run repeats them exactly", () => {
    const rows = (step: number) => {
      const rng = createRng(3).fork(step);
      return [trainingRow(rng, 128), trainingRow(rng, 256)].map((r) => Array.from(r.ids));
    };
    expect(rows(41)).toEqual(rows(41));
    expect(rows(41)).not.toEqual(rows(42));
  });
});


describe('trainingRow recall share', () => {
  it('draws only the task a share of 0 or 1 asks for, and about half of each by default', () => {
    const kinds = (share?: number) => {
      const rng = createRng(7);
      return Array.from({ length: 200 }, () => trainingRow(rng, 128, share).kind);
    };
    expect(new Set(kinds(1))).toEqual(new Set(['recall']));
    expect(new Set(kinds(0))).toEqual(new Set(['passkey']));
    const half = kinds().filter((k) => k === 'recall').length;
    expect(half).toBeGreaterThan(70);
    expect(half).toBeLessThan(130);
  });
});
