// tfjs's cpu engine prints "Hi, looks like you are running TensorFlow.js in Node.js..." on the first tensor
// of a process. This file runs in its own worker, so the cpu engine's first tensor is made here.
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { createTfjsKernels } from '../src/index.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('tfjs stays quiet', () => {
  it("prints no Node.js banner on the cpu engine's first tensor (tfjs's PROD flag is on)", async () => {
    const printed: string[] = [];
    for (const method of ['log', 'warn', 'info'] as const) vi.spyOn(console, method).mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
    const k = await createTfjsKernels({ engine: 'cpu' });
    const t = k.fromHost({ dtype: 'float32', shape: [2], data: Float32Array.of(1, 2) });
    expect(Array.from((await k.toHost(t)).data)).toEqual([1, 2]);
    expect(tf.env().getBool('PROD')).toBe(true);
    expect(printed.filter((l) => l.includes('TensorFlow.js in Node.js'))).toEqual([]);
  });
});
