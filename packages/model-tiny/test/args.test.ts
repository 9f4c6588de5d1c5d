import { describe, expect, it } from 'vitest';
import { trainArgs } from '../src/train/args.js';

describe('the training script command line (node:util parseArgs)', () => {
  it('reads every option with its type', () => {
    const a = trainArgs(['--preset', 'tiny', '--steps', '10', '--lr', '0.001', '--weights', 'none', '--lengths', '128,256', '--recall-share', '0.25', '--stop-after', '3']);
    expect(a).toMatchObject({ preset: 'tiny', steps: 10, lr: 0.001, weights: null, lengths: [128, 256], recallShare: 0.25, stopAfter: 3, tokens: 4096, seed: 1234 });
    expect(trainArgs([]).stopAfter).toBe(Infinity);
  });

  it('refuses unknown flags, missing values and bad numbers, naming them', () => {
    expect(() => trainArgs(['--step', '10'])).toThrow(/Unknown option '--step'/);
    expect(() => trainArgs(['--steps'])).toThrow(/--steps/);
    expect(() => trainArgs(['--steps', '2.5'])).toThrow('--steps "2.5" must be an integer >= 1');
    expect(() => trainArgs(['--lengths', '128,x'])).toThrow('--lengths "x" must be an integer >= 1');
    expect(() => trainArgs(['--recall-share', '2'])).toThrow(/--recall-share 2 must be in \[0, 1\]/);
    expect(() => trainArgs(['--preset', 'huge'])).toThrow('unknown preset huge; use tiny, main');
    expect(() => trainArgs(['extra'])).toThrow(/positional/);
  });
});
