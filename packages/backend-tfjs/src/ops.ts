import * as tf from '@tensorflow/tfjs-core';

/**
 * Tensor primitives the kernels are built from, each written the way that is fast on the engine that
 * runs it. Measured on tfjs 4.22 (8 x 8,192 x 16 float32, 2 shared cores; see the package README):
 *
 * - wasm `Gather` copies element by element (about 50 ns per element) while `GatherNd` with `[k, 1]`
 *   indices copies whole rows (5 ms instead of 120 ms for 2 M elements); on cpu it is the other way round.
 * - wasm `BatchMatMul` with `transposeB` is about 7x slower than transposing explicitly first (cpu and
 *   libtensorflow prefer the flag), and batched (batch > 1) 9-14x slower than separate 2-D calls; see
 *   the observe kernel.
 * - cpu binary ops that broadcast a column (`[R, C] - [R, 1]`) compute an index per element (about 95 ns
 *   per element, against 9 ns without broadcasting); an outer product with a row of ones (`[R, 1] @ [1, C]`)
 *   materialises the column in about 8 ns per element. Broadcasting a trailing suffix (`[R, C] + [C]`)
 *   and a scalar stay on the fast path everywhere.
 * - cpu `Slice` of a region that is not contiguous in memory costs about 600 ns per element, so kernels
 *   flatten heads into rows and slice only contiguous ranges (a free view on cpu).
 * - wasm `Slice` first copies its whole input out of the wasm heap (`readSync`), so slicing one head out of
 *   `[H, ...]` costs the size of all heads, and a loop over heads becomes quadratic in H. Row ranges are
 *   taken with `GatherNd` on wasm instead ({@link rowRange}); wasm `Gather` downloads its indices to check
 *   them one by one in JavaScript, which is why {@link takeRows} avoids it too.
 * - wasm binary and comparison ops on int32 that broadcast fall back to a slow path (about 170 ns per
 *   element); float32 ones are fast.
 * - `where` with a scalar branch broadcasts it with `Tile`, slow on both engines; kernels pass same-shape
 *   branches or use arithmetic instead.
 *
 * Every function here must be called inside `tf.tidy`.
 * @module
 */

/** Rows of `x [N, ...rest]` at int32 `index [k]`, in index order (duplicates allowed) → `[k, ...rest]`. Indices must be in range. */
export function takeRows(x: tf.Tensor, index: tf.Tensor): tf.Tensor {
  const k = index.shape[0]!;
  const rest = x.shape.slice(1);
  if (k === 0 || x.shape[0] === 0) return tf.zeros([k, ...rest], x.dtype);
  if (tf.getBackend() === 'wasm') return tf.gatherND(x, tf.reshape(index, [k, 1]));
  return tf.gather(x, index, 0);
}

/**
 * {@link takeRows} for an index without duplicates. On cpu, where `Gather` computes an index per
 * element (about 100 ns each), the rows are moved with two scatterNDs instead (about 10 ns per
 * element): each source row learns its destination from a scatter of `0..k-1` over the index, and
 * rows not taken go to a spare row that is sliced off. Other engines take the rows directly.
 */
export function takeDistinctRows(x: tf.Tensor, index: tf.Tensor): tf.Tensor {
  const N = x.shape[0]!;
  const k = index.shape[0]!;
  if (tf.getBackend() !== 'cpu' || k === 0 || N === 0) return takeRows(x, index);
  const slot = tf.scatterND(tf.reshape(index, [k, 1]), tf.range(1, k + 1, 1, 'int32'), [N]);
  // slot - 1 is the destination of a taken row; the others (slot 0) go to the spare row k.
  const dest = tf.where(tf.greater(slot, tf.scalar(0, 'int32')), tf.sub(slot, tf.scalar(1, 'int32')), tf.fill([N], k, 'int32'));
  return firstRows(tf.scatterND(tf.reshape(dest, [N, 1]), x, [k + 1, ...x.shape.slice(1)]), k);
}

/** A column `col [R]` as an operand that broadcasts against `[R, C]` on the current engine's fast path (float32). */
export function column(col: tf.Tensor, C: number): tf.Tensor {
  const R = col.shape[0]!;
  if (tf.getBackend() === 'cpu' && C > 1) return tf.matMul(tf.reshape(col, [R, 1]), tf.ones([1, C]));
  return tf.reshape(col, [R, 1]);
}

/** An int32 column `col [R]` as an operand that broadcasts against `[R, C]` exactly (tile on cpu, where float products could round). */
export function intColumn(col: tf.Tensor, C: number): tf.Tensor {
  const R = col.shape[0]!;
  const c = tf.reshape(col, [R, 1]);
  return tf.getBackend() === 'cpu' && C > 1 ? tf.tile(c, [1, C]) : c;
}

/** Float32 represents every integer below 2^24 exactly. */
export const FLOAT_EXACT = 1 << 24;

/**
 * `[H, n]` int32 → flat `[H * n]` row indices into `[H * L]` rows: `index[h, j] + h * L`. Indices are
 * assumed in range. Adding an int32 column broadcasts element by element on both engines (about 150 ns
 * per element), so while every flat index fits a float32 integer the sum is done in float32 and cast back.
 */
export function flatIndex(index: tf.Tensor, L: number): tf.Tensor {
  const [H, n] = index.shape as [number, number];
  if (H <= 1) return tf.reshape(index, [H * n]);
  if (H * L < FLOAT_EXACT) {
    const offsets = tf.mul(tf.range(0, H, 1, 'float32'), tf.scalar(L));
    return tf.reshape(tf.cast(tf.add(tf.cast(index, 'float32'), column(offsets, n)), 'int32'), [H * n]);
  }
  const offsets = tf.mul(tf.range(0, H, 1, 'int32'), tf.scalar(L, 'int32'));
  return tf.reshape(tf.add(index, intColumn(offsets, n)), [H * n]);
}

/**
 * `[H, n]` int32 → `[H, n, 2]` gatherND indices `(h, index[h, j])`: with them one `gatherND` takes the rows
 * of a `[H, L, ...rest]` tensor straight into `[H, n, ...rest]`, with no reshaped view of the input or of
 * the output (tfjs counts every view's bytes in `tf.memory()` as if it were a new buffer). With `firstHead`,
 * row `h` of `index` belongs to head `firstHead + h` (a block of heads).
 */
export function headRowIndex(index: tf.Tensor, firstHead = 0): tf.Tensor {
  const [H, n] = index.shape as [number, number];
  // floor(i / n) in float32 is exact with margin while H * n < 2^22.
  if (H * n >= 1 << 22 || firstHead + H >= 1 << 22) return tf.stack([tf.tile(tf.reshape(tf.range(firstHead, firstHead + H, 1, 'int32'), [H, 1]), [1, n]), index], 2);
  const head = tf.add(tf.floor(tf.div(tf.range(0, H * n, 1, 'float32'), tf.scalar(n))), tf.scalar(firstHead));
  return indexPairs(head, tf.cast(index, 'float32'), [H, n]);
}

/**
 * Two float32 tensors of whole numbers below 2^24 with `size(shape)` elements → int32 `[...shape, 2]`
 * gatherND indices `(a, b)`. Two outer products with `[1, 0]` and `[0, 1]` build them: stacking along a
 * last axis of 2 costs 25-40 ms at 64 K pairs on wasm (copied element by element), this about 1 ms.
 */
export function indexPairs(a: tf.Tensor, b: tf.Tensor, shape: readonly number[]): tf.Tensor {
  const R = a.size;
  const pairs = tf.add(tf.matMul(tf.reshape(a, [R, 1]), tf.tensor2d([[1, 0]])), tf.matMul(tf.reshape(b, [R, 1]), tf.tensor2d([[0, 1]])));
  return tf.reshape(tf.cast(pairs, 'int32'), [...shape, 2]);
}

/** True on engines whose `gatherND` copies whole rows fast (wasm, tensorflow); cpu's computes an index per element. */
export function rowGatherFast(): boolean {
  return tf.getBackend() !== 'cpu';
}

/** `x [N, ...]` shifted down by one row along axis 0, with `fill` in row 0 (`y[0] = fill`, `y[i] = x[i - 1]`). */
export function shiftDown(x: tf.Tensor, fill: number): tf.Tensor {
  const N = x.shape[0]!;
  const rest = x.shape.slice(1);
  const first = tf.fill([1, ...rest], fill, x.dtype);
  if (N <= 1) return N === 0 ? x : first;
  return tf.concat([first, rowRange(x, 0, N - 1)], 0);
}

/** Bool `[H * L]`: true at the first slot of each head (flat index a multiple of `L`). */
export function headStarts(H: number, L: number): tf.Tensor {
  // float32 while exact: wasm's int32 ops with a scalar run element by element (13 ms at 128 K slots).
  const t = H * L < FLOAT_EXACT ? 'float32' : 'int32';
  return tf.equal(tf.mod(tf.range(0, H * L, 1, t), tf.scalar(L, t)), tf.scalar(0, t));
}

/**
 * Rows `[start, start + count)` of `x [N, ...rest]` along axis 0: a view on cpu (contiguous slice), a
 * take of those rows on wasm (whose `Slice` would copy all N rows first).
 */
export function rowRange(x: tf.Tensor, start: number, count: number): tf.Tensor {
  const rest = x.shape.slice(1);
  if (count === 0) return tf.zeros([0, ...rest], x.dtype);
  if (start === 0 && count === x.shape[0]) return x;
  if (tf.getBackend() === 'wasm') return tf.gatherND(x, tf.reshape(tf.range(start, start + count, 1, 'int32'), [count, 1]));
  return tf.slice(x, [start, ...rest.map(() => 0)], [count, ...rest]);
}

/** Rows `[0, n)` of `x` along axis 0 ({@link rowRange}). */
export function firstRows(x: tf.Tensor, n: number): tf.Tensor {
  return rowRange(x, 0, n);
}

/** Head `h` of `x [H, L, ...rest]` as `[L, ...rest]` ({@link rowRange} over the flattened heads). */
export function head(x: tf.Tensor, h: number): tf.Tensor {
  const [H, L] = x.shape as [number, number];
  const rest = x.shape.slice(2);
  return rowRange(tf.reshape(x, [H * L, ...rest]), h * L, L);
}

/** Bool mask of the finite elements of a float32 tensor (isNaN and isInf exist on every engine, isFinite not everywhere). */
export function finiteMask(x: tf.Tensor): tf.Tensor {
  return tf.logicalNot(tf.logicalOr(tf.isNaN(x), tf.isInf(x)));
}

/**
 * Per row of `rows [N, D]`, the power of two `2^-floor(log2 max|row|)` (clamped to a finite float32 factor;
 * 1 for a zero row) that brings the row's largest element near 1 → float32 `[N]`. Scaling by a power of two
 * is exact, so a kernel that squares keys (norms, cosines) scales them first: float32 squares of keys above
 * about 1.8e19 overflow, and of keys below about 1e-19 underflow, where the reference's float64 sums do
 * neither.
 */
export function rowScales(rows: tf.Tensor): tf.Tensor {
  const m = tf.max(tf.abs(rows), -1);
  const e = tf.clipByValue(tf.floor(tf.div(tf.log(m), tf.scalar(Math.LN2))), -126, 126);
  return tf.where(tf.greater(m, 0), tf.pow(tf.scalar(2), tf.neg(e)), tf.onesLike(m));
}
