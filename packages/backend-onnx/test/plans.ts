import { hostTensor, type HostTensor } from '@kvfold/core';
import { randInt } from './helpers.js';

/** A host segment plan. */
export interface HostSegmentPlan {
  segment: HostTensor;
  pivot: HostTensor;
  sigma: HostTensor;
  valueScale: 'count' | 'none';
}

/**
 * Random valid segment plan: per head, at least `O` slots kept, split in order into `O` non-empty runs
 * (dropped slots may sit inside a run), a random member as pivot, sigma in [0.3, 4].
 */
export function randomSegmentPlan(H: number, L: number, r: () => number): HostSegmentPlan {
  const O = L === 0 ? 0 : randInt(r, 1, L);
  const segment = new Int32Array(H * L).fill(-1);
  const pivot = new Int32Array(H * O);
  for (let h = 0; h < H; h++) {
    const keptCount = randInt(r, O, L);
    const slots = Array.from({ length: L }, (_, i) => i);
    for (let i = L - 1; i > 0; i--) {
      const j = randInt(r, 0, i);
      [slots[i], slots[j]] = [slots[j]!, slots[i]!];
    }
    const kept = slots.slice(0, keptCount).sort((a, b) => a - b);
    // O - 1 distinct cut points among the keptCount - 1 gaps.
    const gaps = Array.from({ length: Math.max(keptCount - 1, 0) }, (_, i) => i + 1);
    for (let i = gaps.length - 1; i > 0; i--) {
      const j = randInt(r, 0, i);
      [gaps[i], gaps[j]] = [gaps[j]!, gaps[i]!];
    }
    const cuts = new Set(gaps.slice(0, O - 1));
    let o = 0;
    const members: number[][] = [[]];
    kept.forEach((slot, idx) => {
      if (cuts.has(idx)) {
        o++;
        members.push([]);
      }
      segment[h * L + slot] = o;
      members[o]!.push(slot);
    });
    for (let s = 0; s < O; s++) pivot[h * O + s] = members[s]![randInt(r, 0, members[s]!.length - 1)]!;
  }
  return {
    segment: hostTensor('int32', [H, L], segment),
    pivot: hostTensor('int32', [H, O], pivot),
    sigma: hostTensor('float32', [H, O], Float32Array.from({ length: H * O }, () => 0.3 + r() * 3.7)),
    valueScale: r() < 0.5 ? 'count' : 'none',
  };
}

/** A host neighbour-merge plan. */
export interface HostNeighbourPlan {
  keep: HostTensor;
  source: HostTensor;
  targetStart: HostTensor;
  targetCount: HostTensor;
  gate: HostTensor;
}

/** Random valid CaM plan: `K` kept slots ascending, `S` sources among the others, windows inside `keep`. */
export function randomNeighbourPlan(H: number, L: number, r: () => number): HostNeighbourPlan {
  const K = randInt(r, 0, L);
  const S = randInt(r, 0, L - K);
  const keep = new Int32Array(H * K);
  const source = new Int32Array(H * S);
  const ts = new Int32Array(H * S);
  const tc = new Int32Array(H * S);
  const gate = new Float32Array(H * S);
  for (let h = 0; h < H; h++) {
    const slots = Array.from({ length: L }, (_, i) => i);
    for (let i = L - 1; i > 0; i--) {
      const j = randInt(r, 0, i);
      [slots[i], slots[j]] = [slots[j]!, slots[i]!];
    }
    slots.slice(0, K).sort((a, b) => a - b).forEach((s, j) => (keep[h * K + j] = s));
    slots.slice(K, K + S).sort((a, b) => a - b).forEach((s, j) => (source[h * S + j] = s));
    for (let s = 0; s < S; s++) {
      const i = h * S + s;
      if (K === 0 || r() < 0.15) {
        tc[i] = 0;
        ts[i] = K === 0 ? 0 : randInt(r, 0, K - 1);
      } else {
        ts[i] = randInt(r, 0, K - 1);
        tc[i] = randInt(r, 1, K - ts[i]!);
      }
      gate[i] = r() < 0.3 ? 0 : r() < 0.7 ? 1 : r();
    }
  }
  return {
    keep: hostTensor('int32', [H, K], keep),
    source: hostTensor('int32', [H, S], source),
    targetStart: hostTensor('int32', [H, S], ts),
    targetCount: hostTensor('int32', [H, S], tc),
    gate: hostTensor('float32', [H, S], gate),
  };
}
