/** A seeded pseudo-random source. Same seed, same sequence, on every backend and platform. */
export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A new independent stream derived from this one's seed and `salt` (does not advance this one). */
  fork(salt: number): Rng;
}

/** splitmix32 finaliser: spreads nearby seeds apart. */
function mix(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  return (x ^ (x >>> 15)) >>> 0;
}

/**
 * Create a seeded RNG (mulberry32 state transition; 32-bit, fast, reproducible). Not cryptographic.
 * Streams for a layer and step are made with `fork`, so results never depend on call order.
 */
export function createRng(seed: number): Rng {
  const base = mix(seed >>> 0);
  let state = base;
  const rng: Rng = {
    next() {
      state = (state + 0x6d2b79f5) | 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
    int(n: number) {
      return Math.floor(rng.next() * n);
    },
    fork(salt: number) {
      return createRng(mix(base ^ mix(salt >>> 0)));
    },
  };
  return rng;
}
