import type { KernelSession, SessionFactory } from './session.js';

/**
 * Sessions of the kernel models, created on first use and kept for the life of the kernels object: one
 * session per kernel variant (dims are symbolic, so never one per shape).
 */
export class SessionCache {
  private readonly sessions = new Map<string, KernelSession>();

  constructor(private readonly factory: SessionFactory) {}

  /** The session of kernel variant `key`, building its model with `build` the first time. */
  get(key: string, build: () => Uint8Array): KernelSession {
    let s = this.sessions.get(key);
    if (!s) {
      s = this.factory.create(key, build());
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Names of the sessions created so far. */
  keys(): string[] {
    return [...this.sessions.keys()];
  }

  /** Release every session. */
  releaseAll(): void {
    for (const s of this.sessions.values()) s.release();
    this.sessions.clear();
  }
}
