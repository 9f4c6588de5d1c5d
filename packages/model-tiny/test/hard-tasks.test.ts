import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { createRng } from '@kvfold/core';
import {
  EVAL_SETTINGS,
  FACT_SNAP,
  MIX_TASKS,
  MIN_ROW_LENGTH,
  PASSKEY_QUESTION,
  PROSE_TRAIN_SHARE,
  SPECIAL_TOKENS,
  ANSWER_WEIGHT,
  evalTaskSample,
  fillerWords,
  layoutPrompt,
  mixedTrainingRow,
  multiNeedleSample,
  parseMix,
  proseSentences,
  variableTrackingSample,
  wordNeedleSample,
} from '../src/index.js';

const lengths = fc.constantFrom(256, 512, 1024, 2048);
const fillers = fc.constantFrom('grammar' as const, 'prose' as const);

describe('prose corpus', () => {
  it('splits into disjoint train and eval parts of clean ASCII without digits, colons or task phrases', () => {
    const train = proseSentences('train');
    const evalPart = proseSentences('eval');
    const total = train.length + evalPart.length;
    expect(total).toBeGreaterThan(3500);
    expect(train.length).toBe(Math.floor(total * PROSE_TRAIN_SHARE));
    const trainSet = new Set(train);
    // Short refrains ("Abasement, n.") may repeat; whole long sentences never cross the split.
    expect(evalPart.filter((s) => s.length > 60 && trainSet.has(s))).toEqual([]);
    for (const s of [...train, ...evalPart]) expect(/^[\x20-\x7e]+$/.test(s) && !/[\d:_]|pass key|\bVAR\b/.test(s)).toBe(true);
    expect(() => proseSentences('test' as 'eval')).toThrow(/split must be "train" or "eval"/);
  });
});

describe('layoutPrompt', () => {
  it('places every fact verbatim, in order, near its depth, and ends with the question at questionOffset', () => {
    fc.assert(
      fc.property(lengths, fillers, fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 4 }), (length, filler, seed, k) => {
        const rng = createRng(seed);
        const depths = Array.from({ length: k }, () => rng.next()).sort((a, b) => a - b);
        const facts = depths.map((_, i) => `Fact number ${'abcd'[i]} holds.`);
        const question = ' Which fact? ';
        const out = layoutPrompt({ length, facts, depths, question, rng: createRng(seed), filler, caller: 'test' });
        expect(out.prompt.length).toBe(length);
        expect(out.prompt.slice(out.questionOffset)).toBe(question);
        const fillLen = length - question.length - facts.reduce((a, f) => a + f.length + 1, 0);
        let before = 0;
        out.factOffsets.forEach((o, i) => {
          expect(out.prompt.startsWith(facts[i], o)).toBe(true);
          if (i > 0) expect(o).toBeGreaterThan(out.factOffsets[i - 1]);
          // Offset minus the facts before it = filler bytes before it: within the snap distance of the target.
          expect(Math.abs(o - before - depths[i] * fillLen)).toBeLessThanOrEqual(FACT_SNAP + 8);
          before += facts[i].length + 1;
        });
      }),
      { numRuns: 60 },
    );
  });

  it('rejects a length too short for the facts and unordered depths, naming the caller', () => {
    const base = { facts: ['A long fact sentence.'], question: ' Q? ', rng: createRng(1), caller: 'myTask' };
    expect(() => layoutPrompt({ ...base, length: 10, depths: [0.5] })).toThrow(/myTask: length must be an integer >= 26/);
    expect(() => layoutPrompt({ ...base, facts: ['a.', 'b.'], length: 200, depths: [0.6, 0.2] })).toThrow(/depths must be non-decreasing/);
    expect(() => layoutPrompt({ ...base, length: 200, depths: [0.5], filler: 'poems' as 'prose' })).toThrow(/filler must be "grammar" or "prose"/);
  });
});

describe('wordNeedleSample', () => {
  it('hides a key of filler words twice, is deterministic and exact in length', () => {
    fc.assert(
      fc.property(lengths, fillers, fc.double({ min: 0, max: 1, noNaN: true }), fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 6 }), (length, filler, depth, seed, words) => {
        const s = wordNeedleSample({ length, depth, seed, filler, words });
        expect(s).toEqual(wordNeedleSample({ length, depth, seed, filler, words }));
        expect(s.prompt.length).toBe(length);
        expect(s.prompt.endsWith(PASSKEY_QUESTION)).toBe(true);
        expect(s.questionOffset).toBe(length - PASSKEY_QUESTION.length);
        const key = s.answer.split(' ');
        expect(key.length).toBe(words);
        expect(new Set(key).size).toBe(words);
        const vocab = new Set(fillerWords({ filler }));
        for (const w of key) expect(vocab.has(w)).toBe(true);
        expect(s.prompt.startsWith(`The pass key is ${s.answer}. Remember it. ${s.answer} is the pass key.`, s.needleOffset)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it('uses words that really are frequent in the filler, and digits on request', () => {
    const prose = fillerWords({ filler: 'prose' });
    expect(prose.length).toBeGreaterThan(150);
    const text = proseSentences('eval').join(' ');
    for (const w of prose.slice(0, 20)) expect(text.split(new RegExp(`\\b${w}\\b`)).length - 1).toBeGreaterThanOrEqual(4);
    const d = wordNeedleSample({ length: 512, depth: 0.5, seed: 3, filler: 'prose', value: 'digits' });
    expect(/^[1-9]\d{4}$/.test(d.answer)).toBe(true);
    expect(d.task).toBe('passkey-prose');
    expect(() => wordNeedleSample({ length: 512, depth: 2, seed: 1 })).toThrow(/depth must be in \[0, 1\]/);
    expect(() => wordNeedleSample({ length: 512, depth: 0.5, seed: 1, words: 0 })).toThrow(/words must be an integer in \[1, 6\]/);
  });
});

describe('multiNeedleSample', () => {
  it('holds 2-4 distinct named needles and asks for one of them or all in prompt order', () => {
    fc.assert(
      fc.property(lengths, fillers, fc.integer({ min: 2, max: 4 }), fc.constantFrom('one' as const, 'all' as const), fc.integer({ min: 0, max: 1e6 }), (length, filler, needles, query, seed) => {
        const s = multiNeedleSample({ length, needles, query, seed, filler });
        expect(s).toEqual(multiNeedleSample({ length, needles, query, seed, filler }));
        expect(s.prompt.length).toBe(length);
        const facts = [...s.prompt.slice(0, s.questionOffset).matchAll(/The pass key of the (\w+) is (\d+)\./g)];
        expect(facts.length).toBe(needles);
        expect(facts.map((m) => m.index)).toEqual(s.factOffsets);
        expect(new Set(facts.map((m) => m[1])).size).toBe(needles);
        expect(new Set(facts.map((m) => m[2])).size).toBe(needles);
        const question = s.prompt.slice(s.questionOffset);
        if (query === 'one') {
          const name = /pass key of the (\w+)\?/.exec(question)?.[1];
          expect(facts.find((m) => m[1] === name)?.[2]).toBe(s.answer);
          expect(question.endsWith(`The pass key of the ${name} is `)).toBe(true);
          expect(s.chance).toBeCloseTo(1 / needles);
        } else {
          expect(s.answer).toBe(facts.map((m) => m[2]).join(', '));
          expect(question).toBe(' What are all the pass keys? The pass keys are ');
        }
      }),
      { numRuns: 40 },
    );
  });

  it('rejects needle counts outside 2-4 and unknown queries', () => {
    expect(() => multiNeedleSample({ length: 512, seed: 1, needles: 5 })).toThrow(/needles must be an integer in \[2, 4\]/);
    expect(() => multiNeedleSample({ length: 512, seed: 1, query: 'some' as 'one' })).toThrow(/query must be "one" or "all"/);
  });
});

describe('variableTrackingSample', () => {
  it('answers by walking the queried chain from its last variable back to the number', () => {
    fc.assert(
      fc.property(lengths, fillers, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 1e6 }), (length, filler, hops, chains, seed) => {
        fc.pre((hops + 1) * chains * 18 + 60 < length);
        const s = variableTrackingSample({ length, hops, chains, seed, filler });
        expect(s.prompt.length).toBe(length);
        const statements = [...s.prompt.slice(0, s.questionOffset).matchAll(/VAR ([A-Z]{3}) = ([A-Z]{3}|\d+)\./g)];
        expect(statements.length).toBe((hops + 1) * chains);
        expect(statements.map((m) => m.index)).toEqual(s.factOffsets);
        const assigned = new Map(statements.map((m) => [m[1], m[2]]));
        expect(assigned.size).toBe(statements.length);
        // Every variable is assigned before it is read, so each chain reads in text order.
        const seen = new Set<string>();
        for (const m of statements) {
          if (!/^\d+$/.test(m[2])) expect(seen.has(m[2])).toBe(true);
          seen.add(m[1]);
        }
        const last = /VAR ([A-Z]{3})\? \1 = $/.exec(s.prompt)?.[1];
        expect(last).toBeDefined();
        const walk: string[] = [];
        for (let v = assigned.get(last!)!; ; v = assigned.get(v)!) {
          walk.push(v);
          if (/^\d+$/.test(v)) break;
        }
        expect(walk.length).toBe(hops + 1);
        expect(s.answer).toBe(walk.join(' = '));
      }),
      { numRuns: 50 },
    );
  });

  it('rejects hop and chain counts out of range', () => {
    expect(() => variableTrackingSample({ length: 512, seed: 1, hops: 0 })).toThrow(/hops must be an integer in \[1, 4\]/);
    expect(() => variableTrackingSample({ length: 512, seed: 1, chains: 4 })).toThrow(/chains must be an integer in \[1, 3\]/);
    expect(() => variableTrackingSample({ length: 60, seed: 1 })).toThrow(/variableTrackingSample: length must be an integer >=/);
  });
});

describe('evaluation cells', () => {
  it('give every task at 256-2048 tokens with the question starting at questionOffset, from held-out prose', () => {
    for (const task of MIX_TASKS) {
      expect(EVAL_SETTINGS[task].length).toBeGreaterThan(10);
      for (const length of [256, 2048]) {
        for (let i = 0; i < 10; i++) {
          const s = evalTaskSample(task, length, i);
          expect(s.prompt.length).toBe(length);
          expect(s.prompt[s.questionOffset]).toBe(' ');
          expect(/^ (What|Which)/.test(s.prompt.slice(s.questionOffset))).toBe(true);
          expect(s.factOffsets.every((o) => o < s.questionOffset)).toBe(true);
        }
      }
      expect(evalTaskSample(task, 512, 0)).toEqual(evalTaskSample(task, 512, 0));
      expect(evalTaskSample(task, 512, 0).prompt).not.toBe(evalTaskSample(task, 512, 1).prompt);
    }
    const trainText = new Set(proseSentences('train'));
    const s = evalTaskSample('word-needle', 2048, 0);
    const long = s.prompt.split(/(?<=\.) /).filter((x) => x.length > 80 && !x.includes('pass key'));
    expect(long.some((x) => trainText.has(x))).toBe(false);
    expect(() => evalTaskSample('poems' as 'recall', 512, 0)).toThrow(/unknown task "poems"; allowed: passkey, recall/);
  });
});

describe('mixedTrainingRow', () => {
  const all = parseMix(MIX_TASKS.map((t) => `${t}=1`).join(','));

  it('builds bos + prompt + answer + "." + eos with the answer weighted, for every task and length', () => {
    const rng = createRng(11);
    const kinds = new Set<string>();
    for (const L of [128, 256, 512, 1024]) {
      for (let i = 0; i < 60; i++) {
        const r = mixedTrainingRow(rng, L, all);
        kinds.add(r.kind);
        expect(L).toBeGreaterThanOrEqual(MIN_ROW_LENGTH[r.kind]);
        expect(r.ids.length).toBe(L + 1);
        expect(r.weights.length).toBe(L);
        expect(r.ids[0]).toBe(SPECIAL_TOKENS.bos);
        expect(r.ids[L]).toBe(SPECIAL_TOKENS.eos);
        expect(r.ids[L - 1]).toBe(46);
        expect(r.weights[L - 1]).toBe(2);
        expect(r.weights[L - 3]).toBe(ANSWER_WEIGHT);
        for (const id of r.ids.subarray(1, L)) expect(id).toBeLessThan(128);
      }
    }
    expect(kinds).toEqual(new Set(MIX_TASKS));
  });

  it("follows the mix weights, repeats a step's rows from its fork and parses mixes strictly", () => {
    const rng = createRng(5);
    const only = Array.from({ length: 50 }, () => mixedTrainingRow(rng, 512, parseMix('variable-tracking=1')).kind);
    expect(new Set(only)).toEqual(new Set(['variable-tracking']));
    // Training draws each step's rows from its own fork (seed, step), so a resumed run repeats them exactly.
    const stream = createRng(8);
    const row = (step: number) => Array.from(mixedTrainingRow(stream.fork(step), 512, all).ids);
    expect(row(3)).toEqual(row(3));
    expect(row(3)).not.toEqual(row(4));
    expect(parseMix('passkey=2, recall')).toEqual({ passkey: 2, recall: 1 });
    expect(() => parseMix('poems=1')).toThrow(/unknown task "poems"; allowed: passkey, recall/);
    expect(() => parseMix('passkey=-1')).toThrow(/weight of passkey must be a number >= 0/);
    expect(() => parseMix('passkey=0')).toThrow(/must sum to more than 0/);
  });
});
