import { BufferPool, type DType } from '@kvfold/core';
import type { KernelSession, SessionFactory } from './session.js';

/**
 * Sessions of the kernel models, created on first use and kept for the life of the kernels object: one
 * session per kernel variant and element type. Dimensions are symbolic, so a shape never adds a session.
 */
export class SessionCache {
  private readonly sessions = new Map<string, KernelSession>();

  /**
   * @param factory creates the sessions (onnxruntime-node itself, or the native addon).
   * @param pool where kernels get the memory of the layer outputs they preallocate (see `layerOutputTensors`).
   */
  constructor(
    private readonly factory: SessionFactory,
    readonly pool: BufferPool = new BufferPool(0),
  ) {}

  /**
   * The session of kernel variant `kernel` for data of element type `dtype`, building its model with
   * `build` the first time. Today every float kernel of the contract is float32; the type is part of the
   * key so that a model typed for another element type can never be handed data it was not built for.
   */
  get(kernel: string, dtype: DType, build: () => Uint8Array): KernelSession {
    const key = `${kernel}:${dtype}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = this.factory.create(key, build());
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Keys (`kernel:dtype`) of the sessions created so far. */
  keys(): string[] {
    return [...this.sessions.keys()];
  }

  /** Release every session. */
  releaseAll(): void {
    for (const s of this.sessions.values()) s.release();
    this.sessions.clear();
  }
}
