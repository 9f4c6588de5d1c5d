// kvfold's kernels on tfjs-backend-wasm's threaded build (`threads` above 1, Node): kvfold starts the build
// tfjs itself never starts in Node, its heap is shared memory, and the kernels split heads over worker
// threads there. Split calls give the reference backend's results bit for bit (each head runs the same code),
// and the workers do take part. This file starts tfjs's wasm engine itself: the threaded build can only
// replace that engine before anything starts it.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { createTfjsKernels } from '../src/index.js';
import { engineKernels } from '../src/wasm/heap.js';
import { threadedWasmStarted, useThreadedWasmEngine } from '../src/wasm/threaded.js';
import { bits, everyKernel, expectReferenceBits, randomLayer, rng } from './helpers.js';

// threadMinBytes 0: every call with two heads or more is split, however small.
const SPLIT = { threads: 2, minBytes: 0 };
const threaded = createTfjsKernels({ engine: 'wasm', threads: SPLIT.threads, threadMinBytes: SPLIT.minBytes });

/** Chunks of heads the workers have run for calls split as {@link SPLIT}. */
function workerChunks(): number {
  return engineKernels(tf.backend()).threadsFor(SPLIT)?.workerChunks ?? -1;
}

describe('tfjs kernels on the threaded wasm build (threads: 2)', () => {
  it('start the threaded build, whose heap is shared memory, and the workers run chunks of heads', async () => {
    const k = await threaded;
    expect(threadedWasmStarted()).toBe(true);
    expect(k.kernelMode).toBe('wasm');
    expect(k.describe()).toContain("the threaded build's shared heap");
    expect(k.describe()).toContain('on 2 threads');
    expect(engineKernels(tf.backend()).engine.wasm.HEAPU8.buffer).toBeInstanceOf(SharedArrayBuffer);
    // The workers start with the first split call and take chunks once they are up; a call long enough for a
    // worker to wake before the caller has claimed every chunk (8 heads x 2048 x 64 keys).
    const keys = k.fromHost(randomLayer(8, 2048, 64, rng(1)).keys);
    const deadline = Date.now() + 20_000;
    while (workerChunks() <= 0 && Date.now() < deadline) {
      k.dispose(k.adjacentCosine(keys));
      await new Promise((r) => setTimeout(r, 5));
    }
    k.dispose(keys);
    expect(workerChunks()).toBeGreaterThan(0);
  });

  it('give the reference backend results bit for bit on random shapes and plans, every call split by heads', async () => {
    await expectReferenceBits(await threaded, 2, 9, 60);
  });

  it('a one-thread backend on the same engine gives the same bits, split nowhere', async () => {
    await threaded;
    const one = await createTfjsKernels({ engine: 'wasm' });
    expect(one.describe()).not.toContain('threads');
    const base = randomLayer(6, 40, 24, rng(9));
    expect((await everyKernel(one, base, rng(10))).map(bits)).toEqual((await everyKernel(await threaded, base, rng(10))).map(bits));
  });

  it('asked for one thread, the engine stays as it is and says why', async () => {
    expect(await useThreadedWasmEngine(1)).toEqual({ threads: 1, why: 'one thread asked for' });
    expect(await useThreadedWasmEngine(3)).toEqual({ threads: 3 });
  });
});
