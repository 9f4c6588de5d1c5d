import { describe, expect, it } from 'vitest';
import { DTypeError, ErrorCode, ShapeError, hostLayer, hostTensor, rows } from '@kvfold/core';

describe('hostTensor / hostLayer', () => {
  it('builds tensors and default layer fields', () => {
    const l = hostLayer({ heads: 2, length: 3, headDim: 1, keys: [1, 2, 3, 4, 5, 6], values: [0, 0, 0, 0, 0, 0] });
    expect(Array.from(l.positions.data)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(l.counts.data)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(rows(l.keys.shape.length === 3 ? hostTensor('float32', [2, 3], l.keys.data) : l.scores)).toEqual([[1, 2, 3], [4, 5, 6]]);
  });
  it('rejects data that does not fit the shape, with KVF_SHAPE', () => {
    const e = (() => { try { hostTensor('float32', [2, 2], [1, 2, 3]); } catch (x) { return x; } })() as ShapeError;
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.code).toBe(ErrorCode.Shape);
    expect(e.message).toBe('data has 3 elements but shape [2, 2] needs 4');
    expect(() => hostTensor('int32', [-1], [])).toThrow(/invalid dimension -1/);
  });
  it('rejects a typed array of the other dtype, with KVF_DTYPE', () => {
    const e = (() => { try { hostTensor('int32', [2], new Float32Array(2)); } catch (x) { return x; } })() as DTypeError;
    expect(e.code).toBe(ErrorCode.DType);
    expect(e.message).toBe('data has dtype float32; expected "int32"');
  });
});
