import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { decodeSafetensors, encodeSafetensors } from '../src/index.js';

describe('safetensors writer', () => {
  it('writes the documented layout for a hand-built file', () => {
    const bytes = encodeSafetensors({ b: { shape: [2], data: Float32Array.of(1.5, -2) }, a: { shape: [1, 1], data: Float32Array.of(3) } });
    const view = new DataView(bytes.buffer);
    const n = Number(view.getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    // Sorted by name: a first at offset 0, then b.
    expect(header.a).toEqual({ dtype: 'F32', shape: [1, 1], data_offsets: [0, 4] });
    expect(header.b).toEqual({ dtype: 'F32', shape: [2], data_offsets: [4, 12] });
    expect(bytes.length).toBe(8 + n + 12);
    expect(view.getFloat32(8 + n, true)).toBe(3);
    expect(view.getFloat32(8 + n + 4, true)).toBe(1.5);
    expect(view.getFloat32(8 + n + 8, true)).toBe(-2);
  });

  it('round-trips random tensors and metadata', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.stringMatching(/^[a-z][a-z0-9_.]{0,12}$/),
          fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 }),
          { minKeys: 1, maxKeys: 5 },
        ),
        fc.integer({ min: 0, max: 1e6 }),
        (shapes, seed) => {
          let x = seed;
          const tensors = Object.fromEntries(
            Object.entries(shapes).map(([name, shape]) => {
              const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
              return [name, { shape, data }];
            }),
          );
          const { tensors: back, metadata } = decodeSafetensors(encodeSafetensors(tensors, { step: '7' }));
          expect(metadata).toEqual({ step: '7' });
          expect(Object.keys(back).sort()).toEqual(Object.keys(tensors).sort());
          for (const [name, t] of Object.entries(tensors)) {
            expect(back[name].shape).toEqual(t.shape);
            expect(Array.from(back[name].data)).toEqual(Array.from(t.data));
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('rejects a shape that does not match the data', () => {
    expect(() => encodeSafetensors({ a: { shape: [3], data: new Float32Array(2) } })).toThrow(RangeError);
  });
});
