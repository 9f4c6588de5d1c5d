import { describe, expect, it } from 'vitest';
import { hostLayer, layerFromHost } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { close, f32, i32 } from './util.js';

// DESIGN.md worked example: keys k1..k5 with adjacent cosines 0.85, 0.82, 0.6, 0.7; eps = 0.75 gives the
// sets {k1,k2,k3}, {k4}, {k5}; k3 (highest attention) is the pivot; sigma = 5.
// Unit vectors at angles a1 = 0, a_{i+1} = a_i + acos(c_i), so cos(a_{i+1} - a_i) = c_i by construction.
const cosines = [0.85, 0.82, 0.6, 0.7];
const angles = [0];
for (const c of cosines) angles.push(angles.at(-1)! + Math.acos(c));
const keyData = angles.flatMap((a) => [Math.cos(a), Math.sin(a)]);
// values v1..v5 (only v1..v3 enter the merge)
const valueData = [1, -1, 2, 0.5, 3, 2, 4, 4, 5, 5];
const k = createReferenceKernels();
const layer = layerFromHost(k, hostLayer({ heads: 1, length: 5, headDim: 2, keys: keyData, values: valueData, scores: [0.1, 0.2, 0.9, 0.3, 0.4] }));

describe('DESIGN.md worked example', () => {
  it('adjacentCosine recovers 0.85, 0.82, 0.6, 0.7', () => {
    close(k.adjacentCosine(layer.keys).data, cosines, 1e-6);
  });

  it('eps = 0.75 splits the keys into {k1,k2,k3}, {k4}, {k5}', () => {
    // The grouping rule KVMerger applies to the kernel's output: start a new set when cos < eps.
    const cos = k.adjacentCosine(layer.keys).data;
    const segment = [0];
    for (let i = 0; i < cos.length; i++) segment.push(segment.at(-1)! + (cos[i]! >= 0.75 ? 0 : 1));
    expect(segment).toEqual([0, 0, 0, 1, 2]);
  });

  it('merges {k1,k2,k3} around pivot k3 with sigma 5', () => {
    // Unit vectors: ||k3 - ki||^2 = 2 - 2 cos(a3 - ai).
    //   cos(a3 - a2) = 0.82                                       -> d2 = 0.36
    //   cos(a3 - a1) = 0.85*0.82 - sqrt((1-0.85^2)(1-0.82^2)) = 0.697 - sqrt(0.0909090) = 0.39548881 -> d2 = 1.20902239
    // g = exp(-d2 / (2*25)): g1 = exp(-0.02418045) = 0.97610956, g2 = exp(-0.0072) = 0.99282586, g3 = 1
    // sum g = 2.96893542 -> w = [0.32877426, 0.33440467, 0.33682107]
    // k1 = [1, 0], k2 = [0.85, 0.52678269], k3 = [0.39548881, 0.91847080]
    // key = sum w_i k_i = [0.74622719, 0.48551890]
    // value ('count', all counts 1) = 3 * sum w_i v_i with v1=[1,-1], v2=[2,0.5], v3=[3,2] = [6.02414041, 1.53621062]
    const out = k.mergeSegments(layer, { segment: i32([1, 5], [0, 0, 0, 1, 2]), pivot: i32([1, 3], [2, 3, 4]), sigma: f32([1, 3], [5, 5, 5]), valueScale: 'count' });
    close(out.keys.data.subarray(0, 2), [0.74622719, 0.4855189], 1e-6);
    close(out.values.data.subarray(0, 2), [6.02414041, 1.53621062], 1e-6);
    // singletons pass through unchanged
    close(out.keys.data.subarray(2), keyData.slice(6), 1e-6);
    close(out.values.data.subarray(2), [4, 4, 5, 5], 1e-6);
    expect(Array.from(out.positions.data)).toEqual([2, 3, 4]);
    expect(Array.from(out.counts.data)).toEqual([3, 1, 1]);
    close(out.scores.data, [1.2, 0.3, 0.4], 1e-6);
  });
});
