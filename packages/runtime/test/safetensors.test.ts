import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ModelError } from '@kvfold/core';
import { SafetensorsFile, encodeSafetensors, floatToBFloat16Bits, floatToHalfBits } from '../src/index.js';

function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerLengthOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLengthOverride ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function modelError(f: () => unknown): ModelError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ModelError);
    expect((e as ModelError).code).toBe('KVF_MODEL');
    return e as ModelError;
  }
  throw new Error('expected a ModelError');
}

describe('safetensors', () => {
  it('round-trips F32 and F64 exactly, with metadata and 8-byte aligned data', async () => {
    const a = { shape: [2, 3], data: [1, -2.5, 3.25, 0, 1e-30, -7] };
    const bytes = encodeSafetensors({ a, b: { shape: [2], data: [Math.PI, -1], dtype: 'F64' } }, { format: 'pt' });
    const f = SafetensorsFile.fromBytes(bytes);
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + headerLength) % 8).toBe(0);
    expect(f.header.metadata).toEqual({ format: 'pt' });
    expect(f.names()).toEqual(['a', 'b']);
    const ra = await f.read('a');
    expect(ra.shape).toEqual([2, 3]);
    expect(Array.from(ra.data)).toEqual(Array.from(Float32Array.from(a.data)));
    expect((await f.read('b')).data[0]).toBe(Math.fround(Math.PI));
  });

  it('reads from a Node Buffer (whose slice is a view, not a copy) as from a Uint8Array', async () => {
    const bytes = encodeSafetensors({ a: { shape: [2], data: [1, 2] }, b: { shape: [3], data: [3, 4, 5] } });
    // A Buffer inside a larger allocation, as readFileSync's pooled buffers can be.
    const pool = Buffer.alloc(bytes.length + 64);
    pool.set(bytes, 32);
    const f = SafetensorsFile.fromBytes(pool.subarray(32, 32 + bytes.length));
    expect(Array.from((await f.read('b')).data)).toEqual([3, 4, 5]);
    expect(Array.from((await f.read('a')).data)).toEqual([1, 2]);
  });

  it('decodes float16 and bfloat16 exactly for representable values', async () => {
    const values = [0, -0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 1.5, -3.75];
    const f = SafetensorsFile.fromBytes(encodeSafetensors({ h: { shape: [values.length], data: values, dtype: 'F16' }, b: { shape: [values.length], data: values, dtype: 'BF16' } }));
    expect(Array.from((await f.read('h')).data)).toEqual(values);
    const bf = Array.from((await f.read('b')).data);
    expect(bf.slice(0, 5)).toEqual([0, -0, 1, -2, 0.5]);
    expect(bf[8]).toBe(1.5);
    expect(floatToHalfBits(1)).toBe(0x3c00);
    expect(floatToHalfBits(-2)).toBe(0xc000);
    expect(floatToHalfBits(1e6)).toBe(0x7c00);
    expect(floatToBFloat16Bits(1)).toBe(0x3f80);
    expect(floatToBFloat16Bits(-1)).toBe(0xbf80);
  });

  it('property: F16 / BF16 round trips stay within half an ulp (relative 2^-11 / 2^-8)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.float({ min: -60000, max: 60000, noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 40 }), async (xs) => {
        const f = SafetensorsFile.fromBytes(encodeSafetensors({ h: { shape: [xs.length], data: xs, dtype: 'F16' }, b: { shape: [xs.length], data: xs, dtype: 'BF16' } }));
        const h = (await f.read('h')).data;
        const b = (await f.read('b')).data;
        xs.forEach((x, i) => {
          expect(Math.abs(h[i]! - x)).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -11, 2 ** -25) + 1e-12);
          expect(Math.abs(b[i]! - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8 + 1e-38);
        });
      }),
      { numRuns: 40 },
    );
  });

  it('reads tensors whose data offsets are not aligned to the element size', async () => {
    const data = new Uint8Array(1 + 8);
    new DataView(data.buffer).setFloat32(1, 2.5, true);
    new DataView(data.buffer).setFloat32(5, -1, true);
    const f = SafetensorsFile.fromBytes(rawFile({ pad: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, x: { dtype: 'F32', shape: [2], data_offsets: [1, 9] } }, data));
    expect(Array.from((await f.read('x')).data)).toEqual([2.5, -1]);
  });

  it('names the file and the problem for truncated files and bad headers', () => {
    expect(modelError(() => SafetensorsFile.fromBytes(new Uint8Array(5), 'x.safetensors')).details).toMatchObject({ file: 'x.safetensors', reason: 'truncated' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile({}, new Uint8Array(0), 1000))).details).toMatchObject({ reason: 'truncated' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile('{"a": [1,'))).details).toMatchObject({ reason: 'header' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile('[1, 2]'))).details).toMatchObject({ reason: 'header' });
  });

  it('names the tensor for data beyond the file, unknown dtypes, inconsistent offsets and malformed entries', () => {
    const e1 = modelError(() => SafetensorsFile.fromBytes(rawFile({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8))));
    expect(e1.details).toMatchObject({ tensor: 'w', reason: 'truncated' });
    expect(e1.message).toContain('"w"');
    const e2 = modelError(() => SafetensorsFile.fromBytes(rawFile({ w: { dtype: 'F12', shape: [1], data_offsets: [0, 2] } }, new Uint8Array(2))));
    expect(e2.details).toMatchObject({ tensor: 'w', reason: 'dtype' });
    expect(e2.message).toContain('F12');
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)))).details).toMatchObject({ tensor: 'w' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }))).details).toMatchObject({ tensor: 'w' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)))).details).toMatchObject({ tensor: 'w' });
    expect(modelError(() => SafetensorsFile.fromBytes(rawFile({ w: 5 }))).details).toMatchObject({ tensor: 'w' });
  });

  it('refuses to read non-float dtypes and absent tensors, naming them', async () => {
    const f = SafetensorsFile.fromBytes(rawFile({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)));
    await expect(f.read('ids')).rejects.toMatchObject({ code: 'KVF_MODEL', details: { tensor: 'ids', dtype: 'I64', reason: 'dtype' } });
    await expect(f.read('nope')).rejects.toMatchObject({ code: 'KVF_MODEL', details: { tensor: 'nope', reason: 'missing' } });
  });

  it('property: random headers of any dtype/shape never crash the parser (valid → readable, invalid → ModelError)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
        fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I8', 'Q4', ''),
        fc.integer({ min: -4, max: 4 }),
        fc.integer({ min: 0, max: 2 }),
        async (shape, dtype, slack, cut) => {
          const size = { F32: 4, F16: 2, BF16: 2, F64: 8, I8: 1 }[dtype as 'F32'] ?? 2;
          const bytes = shape.reduce((a, b) => a * b, 1) * size;
          const end = Math.max(0, bytes + slack);
          const file = rawFile({ t: { dtype, shape, data_offsets: [0, end] } }, new Uint8Array(Math.max(0, end - cut)));
          let parsed: SafetensorsFile | undefined;
          try {
            parsed = SafetensorsFile.fromBytes(file);
          } catch (e) {
            expect(e).toBeInstanceOf(ModelError);
            return;
          }
          // Parsing succeeds only for a known dtype whose offsets match the shape and lie inside the file.
          expect(['F32', 'F16', 'BF16', 'F64', 'I8']).toContain(dtype);
          expect(end).toBe(bytes);
          expect(end === 0 || cut === 0).toBe(true);
          if (['F32', 'F16', 'BF16', 'F64'].includes(dtype)) expect((await parsed.read('t')).data.length).toBe(bytes / size);
          else await expect(parsed.read('t')).rejects.toBeInstanceOf(ModelError);
        },
      ),
      { numRuns: 50 },
    );
  });
});
