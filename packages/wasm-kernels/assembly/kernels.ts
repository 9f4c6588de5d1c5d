// WebAssembly SIMD versions of the reference backend's hot loops (AssemblyScript; built by
// `pnpm run build:wasm` into ../wasm/kernels.wasm, which is committed and checked by test/wasm.test.ts).
//
// adjacentCosine and gather compute exactly what core's TypeScript kernel of the same name computes
// (packages/core/src/kernels), bit for bit: the same operations in the same order. adjacentCosine's oracle
// sums in four float32 lanes (element d in lane d mod 4), which is one f32x4 accumulator, and falls back to
// float64 sums (even and odd elements: one f64x2 accumulator) for norms outside its lane range. No fused
// multiply-add, no reassociation: adjacentCosine's values, and so KVMerger's segment decisions, are the
// oracle's (KVMerger ranks every link by its cosine value, so only exact values keep its plans; see
// docs/architecture.md).
//
// mergeSegments and mergeIntoNeighbours compute their value arithmetic in float32 lanes (f32x4, four
// elements per operation, no float64 conversions): their outputs are float32 anyway, and they stay within
// the project's 1e-5 parity tolerance of the float64 oracle (test/wasm.test.ts measures the difference),
// not bit-identical to it. Plan decisions never depend on those values.
// Independent dependency chains (neighbour pairs, run members) are interleaved for throughput.
//
// Pointers are byte offsets into the imported (shared) memory where the backend's tensors live.
//
// exp is this file's own (gaussianExp), not the host's Math.exp nor AssemblyScript's: a call out to the host
// per merged member measured 10-15% of mergeSegments, and the library's exp brings a 2 KiB lookup table as
// an active data segment, which instantiation would write at a fixed address of whatever memory the module
// is given (the tfjs backend gives it the tfjs-backend-wasm engine's heap). test/wasm.test.ts checks the
// module has no data, global or start section.

/** ln 2 split for the Cody-Waite reduction: the high part has 21 trailing zero bits, so `k * LN2_HI` is exact for |k| < 2^21. */
const LN2_HI: f64 = 6.93147180369123816490e-1;
const LN2_LO: f64 = 1.90821492927058770002e-10;
const INV_LN2: f64 = 1.44269504088896338700;
/** Remez coefficients of the rational approximation of e^r on [-ln2/2, ln2/2] (the classic fdlibm set; values are facts, the code is ours). */
const P1: f64 = 1.66666666666666019037e-1;
const P2: f64 = -2.77777777770155933842e-3;
const P3: f64 = 6.61375632143793436117e-5;
const P4: f64 = -1.65339022054652515390e-6;
const P5: f64 = 4.13813679705723846039e-8;

/**
 * e^x for the Gaussian weights (x = -d^2 / 2 sigma^2 <= 0, or NaN), within 1 ulp of Math.exp for normal
 * results: x = k ln2 + r with |r| <= ln2/2, e^r from the rational approximation, then scaled by 2^k
 * (in two steps where the result is subnormal or near the top). 0 below -746 (where Math.exp underflows
 * too), NaN for NaN; positive x (the kernels never pass one) the same way up to the overflow at 709.78.
 */
export function gaussianExp(x: f64): f64 {
  if (x !== x) return x;
  if (x < -746) return 0;
  if (x > 709.782712893384) return Infinity;
  const k = nearest<f64>(x * INV_LN2);
  const hi = x - k * LN2_HI;
  const lo = k * LN2_LO;
  const r = hi - lo;
  const r2 = r * r;
  const c = r - r2 * (P1 + r2 * (P2 + r2 * (P3 + r2 * (P4 + r2 * P5))));
  const y = 1 - (lo - (r * c) / (2 - c) - hi);
  const ki = <i64>k;
  if (ki > 1023) return y * reinterpret<f64>((ki + 1022) << 52) * 2;
  if (ki >= -1021) return y * reinterpret<f64>((ki + 1023) << 52);
  // Subnormal result: scale by 2^(k + 1000) first (a normal number), then by 2^-1000, so only the last step rounds.
  return y * reinterpret<f64>((ki + 2023) << 52) * reinterpret<f64>(<i64>23 << 52);
}

/** Elements 0, 1 of a float32x4 as float64x2. */
// @ts-ignore: decorator
@inline function lo(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

/** Elements 2, 3 of a float32x4 as float64x2. */
// @ts-ignore: decorator
@inline function hi(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

/** Two float32 at `p` as float64x2. */
// @ts-ignore: decorator
@inline function pair(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

// @ts-ignore: decorator
@inline function f(p: usize): f64 {
  return <f64>load<f32>(p);
}

/** `acc + x * y` over the tail elements `[d, D)` of two rows, as the oracle's scalar pair loop. */
function tailDot(acc: v128, x: usize, y: usize, d: i32, D: i32): v128 {
  for (; d + 1 < D; d += 2) {
    const o = <usize>d << 2;
    acc = f64x2.add(acc, f64x2.mul(pair(x + o), pair(y + o)));
  }
  if (d < D) {
    const o = <usize>d << 2;
    acc = f64x2.replace_lane(acc, 0, f64x2.extract_lane(acc, 0) + f(x + o) * f(y + o));
  }
  return acc;
}

/** `acc + (x - y)^2` over the tail elements `[d, D)`, as the oracle's scalar pair loop. */
function tailDist(acc: v128, x: usize, y: usize, d: i32, D: i32): v128 {
  for (; d + 1 < D; d += 2) {
    const o = <usize>d << 2;
    const t = f64x2.sub(pair(x + o), pair(y + o));
    acc = f64x2.add(acc, f64x2.mul(t, t));
  }
  if (d < D) {
    const o = <usize>d << 2;
    const t = f(x + o) - f(y + o);
    acc = f64x2.replace_lane(acc, 0, f64x2.extract_lane(acc, 0) + t * t);
  }
  return acc;
}

// @ts-ignore: decorator
@inline function sum2(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/** core's ADJACENT_COSINE_LANE_RANGE: squared norms in [2^-60, 2^100] take the float32 lane sums. */
const LANE_LO: f64 = 8.673617379884035e-19;
const LANE_HI: f64 = 1.2676506002282294e30;

// @ts-ignore: decorator
@inline function inLanes(n: f64): bool {
  return n >= LANE_LO && n <= LANE_HI;
}

/** core's clampedCosine. */
// @ts-ignore: decorator
@inline function clamped(dot: f64, n0: f64, n1: f64): f32 {
  const den = Math.sqrt(n0) * Math.sqrt(n1);
  let c = den > 0 ? dot / den : 0.0;
  if (c > 1) c = 1;
  else if (c < -1) c = -1;
  return <f32>c;
}

/** core's cosine64: float64 sums, even elements in lane 0 and odd ones in lane 1. */
function cosine64(a: usize, b: usize, D: i32): f32 {
  const z = f64x2.splat(0);
  return clamped(sum2(tailDot(z, a, b, 0, D)), sum2(tailDot(z, a, a, 0, D)), sum2(tailDot(z, b, b, 0, D)));
}

/** `acc + x * y` for the tail elements `[D4, D)` (fewer than 4) in lanes 0, 1, 2; the other lanes add +0. */
function tailLanes(acc: v128, x: usize, y: usize, D4: i32, D: i32): v128 {
  const o = <usize>D4 << 2;
  let px = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(x + o));
  let py = f32x4.replace_lane(f32x4.splat(0), 0, load<f32>(y + o));
  if (D4 + 1 < D) {
    px = f32x4.replace_lane(px, 1, load<f32>(x + o, 4));
    py = f32x4.replace_lane(py, 1, load<f32>(y + o, 4));
  }
  if (D4 + 2 < D) {
    px = f32x4.replace_lane(px, 2, load<f32>(x + o, 8));
    py = f32x4.replace_lane(py, 2, load<f32>(y + o, 8));
  }
  // A lane accumulator is never -0 (it starts at +0), so adding +0 leaves it as it is.
  return f32x4.add(acc, f32x4.mul(px, py));
}

/**
 * core's adjacentCosine: keys float32 [H, L, D] at `k`, out float32 [H, L - 1] at `out`. Dot products and
 * squared norms in float32 lanes (element d in lane d mod 4), lanes summed pairwise in float64; a pair
 * with a norm outside the lane range is recomputed in float64 ({@link cosine64}), as the oracle does.
 */
export function adjacentCosine(k: usize, out: usize, H: i32, L: i32, D: i32): void {
  if (L === 0) return;
  const M = L - 1;
  const row = <usize>D << 2;
  const D4 = D & ~3;
  for (let h = 0; h < H; h++) {
    const base = k + <usize>h * <usize>L * row;
    const o = out + ((<usize>h * <usize>M) << 2);
    let sq0 = f32x4.splat(0);
    for (let d = 0; d < D4; d += 4) {
      const v = v128.load(base + (<usize>d << 2));
      sq0 = f32x4.add(sq0, f32x4.mul(v, v));
    }
    if (D4 < D) sq0 = tailLanes(sq0, base, base, D4, D);
    let n0 = sumLanes(sq0);
    // One pair at a time, rows in address order: the left row is still in L1 from the previous pair, so
    // memory sees one sequential stream (interleaving four pairs, five row streams 512 bytes apart, measured
    // three times slower), and out-of-order execution overlaps consecutive pairs' accumulator chains.
    for (let i = 0; i < M; i++) {
      const a = base + <usize>i * row;
      const b = a + row;
      let dot = f32x4.splat(0);
      let sq = f32x4.splat(0);
      for (let d = 0; d < D4; d += 4) {
        const off = <usize>d << 2;
        const va = v128.load(a + off);
        const vb = v128.load(b + off);
        dot = f32x4.add(dot, f32x4.mul(va, vb));
        sq = f32x4.add(sq, f32x4.mul(vb, vb));
      }
      if (D4 < D) {
        dot = tailLanes(dot, a, b, D4, D);
        sq = tailLanes(sq, b, b, D4, D);
      }
      const n1 = sumLanes(sq);
      store<f32>(o + (<usize>i << 2), inLanes(n0) && inLanes(n1) ? clamped(sumLanes(dot), n0, n1) : cosine64(a, b, D));
      n0 = n1;
    }
  }
}

/** Copy one row of `bytes` (a multiple of 4) from `src` to `dst` (rows of one layer never overlap). */
// @ts-ignore: decorator
@inline function copyRow(dst: usize, src: usize, bytes: usize): void {
  const b32 = bytes & ~31;
  let o: usize = 0;
  for (; o < b32; o += 32) {
    v128.store(dst + o, v128.load(src + o));
    v128.store(dst + o, v128.load(src + o, 16), 16);
  }
  for (; o < bytes; o += 4) store<i32>(dst + o, load<i32>(src + o));
}

/** Copy `n` consecutive slot rows of every field (core's copySlots). Rows are slot indices `h * length + slot`. */
function copySlots(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, src: usize, ok: usize, ov: usize, op: usize, oc: usize, os: usize, dst: usize, n: usize, row: usize): void {
  if (n === 1) {
    // One slot (H2O's scattered heavy hitters): an inline vector copy of the two rows and plain moves of
    // the three scalars cost less than five bulk-copy calls.
    copyRow(ok + dst * row, lk + src * row, row);
    copyRow(ov + dst * row, lv + src * row, row);
    store<i32>(op + (dst << 2), load<i32>(lp + (src << 2)));
    store<i32>(oc + (dst << 2), load<i32>(lc + (src << 2)));
    store<i32>(os + (dst << 2), load<i32>(ls + (src << 2)));
    return;
  }
  // Keys and values row by row, side by side, rather than one bulk copy of the run's keys and then one of its
  // values: measured 10-15% less gather time on H2O's keep sets (one long recent run per head plus scattered
  // heavy hitters), and the same finding as gatherHead's on CaM's.
  for (let t: usize = 0; t < n; t++) {
    copyRow(ok + (dst + t) * row, lk + (src + t) * row, row);
    copyRow(ov + (dst + t) * row, lv + (src + t) * row, row);
  }
  // A short run's scalars move in a loop: memory.copy leaves the compiled code for a library call, and
  // KVMerger's plans hold hundreds of short runs of kept slots per head between merged runs (mergeSegments at
  // 32 x 4,096 on one thread: 0.93-0.95x the time with three memory.copy calls per run).
  if (n < 64) {
    for (let t: usize = 0; t < n; t++) {
      const d = (dst + t) << 2, s = (src + t) << 2;
      store<i32>(op + d, load<i32>(lp + s));
      store<i32>(oc + d, load<i32>(lc + s));
      store<i32>(os + d, load<i32>(ls + s));
    }
    return;
  }
  memory.copy(op + (dst << 2), lp + (src << 2), n << 2);
  memory.copy(oc + (dst << 2), lc + (src << 2), n << 2);
  memory.copy(os + (dst << 2), ls + (src << 2), n << 2);
}

/**
 * core's gather: the layer (keys, values [H, L, D]; positions, counts, scores [H, L]) at int32 `idx`
 * [H, k] into the output layer of k slots per head. Runs of consecutive source slots are found once; their key and value rows move side by side, their scalars as one copy.
 */
export function gather(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, idx: usize, H: i32, L: i32, D: i32, k: i32, ok: usize, ov: usize, op: usize, oc: usize, os: usize): void {
  const row = <usize>D << 2;
  for (let h = 0; h < H; h++) {
    const rowBase = <usize>h * <usize>L;
    const outBase = <usize>h * <usize>k;
    let j = 0;
    while (j < k) {
      const first = load<i32>(idx + ((outBase + <usize>j) << 2));
      let e = j + 1;
      while (e < k && load<i32>(idx + ((outBase + <usize>e) << 2)) === first + (e - j)) e++;
      copySlots(lk, lv, lp, lc, ls, rowBase + <usize>first, ok, ov, op, oc, os, outBase + <usize>j, <usize>(e - j), row);
      j = e;
    }
  }
}

/** Squared distance of rows x and y in float64 (the fallback of {@link checkedDist}: float32 lanes widened, even and odd elements in two lanes). */
// @ts-ignore: decorator
@inline function distance(x: usize, y: usize, D: i32, D4: i32): f64 {
  let acc = f64x2.splat(0);
  for (let d = 0; d < D4; d += 4) {
    const off = <usize>d << 2;
    const vx = v128.load(x + off);
    const vy = v128.load(y + off);
    const tl = f64x2.sub(lo(vx), lo(vy));
    const th = f64x2.sub(hi(vx), hi(vy));
    acc = f64x2.add(f64x2.add(acc, f64x2.mul(tl, tl)), f64x2.mul(th, th));
  }
  if (D4 < D) acc = tailDist(acc, x, y, D4, D);
  return sum2(acc);
}

/**
 * core's mergeSegments (KVMerger) after validation. Layer fields as in {@link gather}; plan `seg` int32
 * [H, L], `piv` int32 [H, M], `sig` float32 [H, M]; output layer of M slots per head. Scratch: `start`,
 * `end` int32 [H * M]; `rows` int32 [L]; `weights`, `valueWeights` float64 [L].
 */
export function mergeSegments(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, seg: usize, piv: usize, sig: usize, H: i32, L: i32, D: i32, M: i32, byCount: bool, ok: usize, ov: usize, op: usize, oc: usize, os: usize, start: usize, end: usize, rows: usize, weights: usize, valueWeights: usize): void {
  const row = <usize>D << 2;
  // Run bounds (the oracle's runBounds): every kept slot stores its run's first slot and itself + 1 (the run's
  // last store wins), with no branch on the run boundaries, which fall wherever the merged links do. A valid
  // plan (checked before any kernel runs) uses every id in [0, M) on every head, so nothing needs clearing.
  for (let h = 0; h < H; h++) {
    let prev = -1;
    let first = 0;
    for (let i = 0; i < L; i++) {
      const s = load<i32>(seg + ((<usize>h * <usize>L + <usize>i) << 2));
      if (s === -1) continue;
      const at = (<usize>h * <usize>M + <usize>s) << 2;
      first = select<i32>(i, first, s !== prev);
      prev = s;
      store<i32>(start + at, first);
      store<i32>(end + at, i + 1);
    }
  }
  for (let h = 0; h < H; h++) {
    const rowBase = <usize>h * <usize>L;
    let o = 0;
    while (o < M) {
      const ho = <usize>h * <usize>M + <usize>o;
      const st = load<i32>(start + (ho << 2));
      const en = load<i32>(end + (ho << 2));
      if (en - st === 1) {
        let n = 1;
        while (o + n < M && load<i32>(end + ((ho + <usize>n) << 2)) - load<i32>(start + ((ho + <usize>n) << 2)) === 1 && load<i32>(start + ((ho + <usize>n) << 2)) === st + n) n++;
        copySlots(lk, lv, lp, lc, ls, rowBase + <usize>st, ok, ov, op, oc, os, ho, <usize>n, row);
        o += n;
        continue;
      }
      // The run's members (its slots not evicted), their counts and scores, in one pass.
      let total: i32 = 0;
      let score: f64 = 0;
      let m = 0;
      for (let i = st; i < en; i++) {
        const r = rowBase + <usize>i;
        if (load<i32>(seg + (r << 2)) !== o) continue;
        total += load<i32>(lc + (r << 2));
        score += <f64>load<f32>(ls + (r << 2));
        store<i32>(rows + (<usize>m << 2), <i32>r);
        m++;
      }
      const p = rowBase + <usize>load<i32>(piv + (ho << 2));
      mergeRun(lk, lv, lc, m, p, <f64>load<f32>(sig + (ho << 2)), byCount ? total : 0, ok + ho * row, ov + ho * row, D, rows, weights, valueWeights);
      store<i32>(op + (ho << 2), load<i32>(lp + (p << 2)));
      store<i32>(oc + (ho << 2), total);
      store<f32>(os + (ho << 2), <f32>score);
      o++;
    }
  }
}

/** The four float32 lanes of `v` summed in float64 (pairwise). */
// @ts-ignore: decorator
@inline function sumLanes(v: v128): f64 {
  return (<f64>f32x4.extract_lane(v, 0) + <f64>f32x4.extract_lane(v, 1)) + (<f64>f32x4.extract_lane(v, 2) + <f64>f32x4.extract_lane(v, 3));
}

/** Lane sums of squared differences of rows x and y over the tail elements `[d, D)`, in float32, added to lane 0. */
function tailDist32(acc: v128, x: usize, y: usize, d: i32, D: i32): v128 {
  let s: f32 = 0;
  for (; d < D; d++) {
    const o = <usize>d << 2;
    const t = load<f32>(x + o) - load<f32>(y + o);
    s += t * t;
  }
  return f32x4.replace_lane(acc, 0, f32x4.extract_lane(acc, 0) + s);
}

/**
 * A squared distance summed in float32 lanes, checked: below 2^-100 (where float32 squares may have
 * underflowed, which could turn a tiny distance into 0 and a vanishing weight into 1) or at infinity
 * (float32 overflow) it is recomputed in float64 from the rows, as the oracle does.
 */
// @ts-ignore: decorator
@inline function checkedDist(d2: f64, x: usize, y: usize, D: i32, D4: i32): f64 {
  // The pivot's own distance is exactly 0 in both precisions (NaN for a non-finite row, recomputed below).
  return (d2 >= 7.888609052210118e-31 && d2 < Infinity) || (x === y && d2 === 0) ? d2 : distance(x, y, D, D4);
}

/**
 * The oracle's mergeRun in float32 lanes over the run's `m` member rows listed in `rows` (row indices; the
 * list is rewritten): Gaussian weights around pivot row `p` (distances summed in float32 lanes, weights in
 * float64), then the weighted rows with weights already divided by their sum, summed in float32. Not
 * bit-identical to the oracle (which sums in float64): within 1e-5 relative (test/wasm.test.ts measures it).
 */
function mergeRun(lk: usize, lv: usize, lc: usize, m: i32, p: usize, sigma: f64, total: i32, outK: usize, outV: usize, D: i32, rows: usize, weights: usize, valueWeights: usize): void {
  const row = <usize>D << 2;
  const D4 = D & ~3;
  const pk = lk + p * row;
  const twoSigma2 = 2 * sigma * sigma;
  // Squared distances to the pivot, one member at a time in address order: the run's rows are read as one
  // sequential stream (two members side by side measured slower), and out-of-order execution overlaps the
  // members' independent chains.
  for (let q = 0; q < m; q++) {
    const x = lk + <usize>load<i32>(rows + (<usize>q << 2)) * row;
    let a = f32x4.splat(0);
    if ((D & 15) === 0) {
      let a1 = a, a2 = a, a3 = a;
      for (let d = 0; d < D; d += 16) {
        const off = <usize>d << 2;
        const t0 = f32x4.sub(v128.load(pk + off), v128.load(x + off));
        const t1 = f32x4.sub(v128.load(pk + off, 16), v128.load(x + off, 16));
        const t2 = f32x4.sub(v128.load(pk + off, 32), v128.load(x + off, 32));
        const t3 = f32x4.sub(v128.load(pk + off, 48), v128.load(x + off, 48));
        a = f32x4.add(a, f32x4.mul(t0, t0));
        a1 = f32x4.add(a1, f32x4.mul(t1, t1));
        a2 = f32x4.add(a2, f32x4.mul(t2, t2));
        a3 = f32x4.add(a3, f32x4.mul(t3, t3));
      }
      a = f32x4.add(f32x4.add(a, a1), f32x4.add(a2, a3));
    } else {
      for (let d = 0; d < D4; d += 4) {
        const off = <usize>d << 2;
        const t = f32x4.sub(v128.load(pk + off), v128.load(x + off));
        a = f32x4.add(a, f32x4.mul(t, t));
      }
      if (D4 < D) a = tailDist32(a, pk, x, D4, D);
    }
    store<f64>(weights + (<usize>q << 3), checkedDist(sumLanes(a), pk, x, D, D4));
  }
  let n = 0;
  let sumG: f64 = 0;
  for (let j = 0; j < m; j++) {
    const d2 = load<f64>(weights + (<usize>j << 3));
    // d2 = 0 short-circuits so the pivot weighs exactly 1 even when 2 sigma^2 underflows to 0.
    const g = d2 === 0 ? 1.0 : gaussianExp(-d2 / twoSigma2);
    if (g === 0) continue;
    const r = load<i32>(rows + (<usize>j << 2));
    sumG += g;
    store<i32>(rows + (<usize>n << 2), <i32>(<usize>r * row));
    store<f64>(weights + (<usize>n << 3), g);
    store<f64>(valueWeights + (<usize>n << 3), total > 0 ? g / <f64>load<i32>(lc + (<usize>r << 2)) : g);
    n++;
  }
  // Weights divided by their sum (values: times C / sum), rounded to float32 in place (entry j's float32
  // lands below entry j + 1's float64, so the forward pass never overwrites an unread weight).
  const kScale = 1 / sumG;
  const vScale = total > 0 ? <f64>total / sumG : kScale;
  for (let j = 0; j < n; j++) {
    store<f32>(weights + (<usize>j << 2), <f32>(load<f64>(weights + (<usize>j << 3)) * kScale));
    store<f32>(valueWeights + (<usize>j << 2), <f32>(load<f64>(valueWeights + (<usize>j << 3)) * vScale));
  }
  // Members one at a time in address order, keys then values, into the output rows (which stay in L1): the
  // value rows stream from memory sequentially, as the key rows did in the distance pass.
  const r0 = <usize>load<i32>(rows);
  if ((D & 15) === 0) weightedSum16(outK, lk, rows, weights, n, D);
  else {
    weightedRows1(outK, lk + r0, f32x4.splat(load<f32>(weights)), D, D4);
    for (let j = 1; j < n; j++) addScaled(outK, lk + <usize>load<i32>(rows + (<usize>j << 2)), load<f32>(weights + (<usize>j << 2)), D);
  }
  weightedRows1(outV, lv + r0, f32x4.splat(load<f32>(valueWeights)), D, D4);
  for (let j = 1; j < n; j++) addScaled(outV, lv + <usize>load<i32>(rows + (<usize>j << 2)), load<f32>(valueWeights + (<usize>j << 2)), D);
}

/**
 * `out = sum_j w[j] * row_j` over rows of D float32 (D a multiple of 16) at byte offsets `rows[j]` from `base`,
 * j in [0, n): 16 columns at a time in four registers across all members, each column summed in member order as
 * {@link weightedRows1} then {@link addScaled} do (the same float32 operations in the same order), without
 * storing and reloading the partial sums for every member.
 */
function weightedSum16(out: usize, base: usize, rows: usize, w: usize, n: i32, D: i32): void {
  const x0 = base + <usize>load<i32>(rows);
  const s0 = f32x4.splat(load<f32>(w));
  for (let c = 0; c < D; c += 16) {
    const off = <usize>c << 2;
    let a0 = f32x4.mul(s0, v128.load(x0 + off));
    let a1 = f32x4.mul(s0, v128.load(x0 + off, 16));
    let a2 = f32x4.mul(s0, v128.load(x0 + off, 32));
    let a3 = f32x4.mul(s0, v128.load(x0 + off, 48));
    for (let j = 1; j < n; j++) {
      const x = base + <usize>load<i32>(rows + (<usize>j << 2)) + off;
      const s = f32x4.splat(load<f32>(w + (<usize>j << 2)));
      a0 = f32x4.add(a0, f32x4.mul(s, v128.load(x)));
      a1 = f32x4.add(a1, f32x4.mul(s, v128.load(x, 16)));
      a2 = f32x4.add(a2, f32x4.mul(s, v128.load(x, 32)));
      a3 = f32x4.add(a3, f32x4.mul(s, v128.load(x, 48)));
    }
    v128.store(out + off, a0);
    v128.store(out + off, a1, 16);
    v128.store(out + off, a2, 32);
    v128.store(out + off, a3, 48);
  }
}

/** `out = w0 * x` over one row of D float32. */
function weightedRows1(out: usize, x: usize, w0: v128, D: i32, D4: i32): void {
  for (let d = 0; d < D4; d += 4) {
    const off = <usize>d << 2;
    v128.store(out + off, f32x4.mul(w0, v128.load(x + off)));
  }
  const s0 = f32x4.extract_lane(w0, 0);
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    store<f32>(out + off, s0 * load<f32>(x + off));
  }
}

/** `acc[0 .. D) += s * x[0 .. D)` (float32). */
function addScaled(acc: usize, x: usize, s: f32, D: i32): void {
  const D4 = D & ~3;
  const sv = f32x4.splat(s);
  for (let d = 0; d < D4; d += 4) {
    const off = <usize>d << 2;
    v128.store(acc + off, f32x4.add(v128.load(acc + off), f32x4.mul(sv, v128.load(x + off))));
  }
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    store<f32>(acc + off, load<f32>(acc + off) + s * load<f32>(x + off));
  }
}

/** `acc[0 .. n) += y[0 .. n)` (float32). */
function addRow(acc: usize, y: usize, n: i32): void {
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const o = <usize>i << 2;
    v128.store(acc + o, f32x4.add(v128.load(acc + o), v128.load(y + o)));
  }
  for (let i = n4; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(acc + o, load<f32>(acc + o) + load<f32>(y + o));
  }
}

/**
 * gather of head `h`'s output slots `[j0, j1)` (of `K` per head), slot by slot, each slot's key, scalars and
 * value together: keys and values then stream side by side, which measured faster here than {@link gather}'s
 * bulk copies of a run's keys and then its values (a tenth less mergeIntoNeighbours time on the benchmark's
 * CaM plans, half of whose blocks no window reaches).
 */
function gatherHead(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, keep: usize, h: i32, j0: i32, j1: i32, L: i32, D: i32, K: i32, ok: usize, ov: usize, op: usize, oc: usize, os: usize): void {
  const row = <usize>D << 2;
  const inRows = <usize>h * <usize>L;
  for (let t = j0; t < j1; t++) {
    const j = <usize>h * <usize>K + <usize>t;
    const i = inRows + <usize>load<i32>(keep + (j << 2));
    copyRow(ok + j * row, lk + i * row, row);
    store<i32>(op + (j << 2), load<i32>(lp + (i << 2)));
    store<i32>(oc + (j << 2), load<i32>(lc + (i << 2)));
    store<i32>(os + (j << 2), load<i32>(ls + (i << 2)));
    copyRow(ov + j * row, lv + i * row, row);
  }
}

/** `acc[0 .. D) = s * x[0 .. D)` (float32): the first term of a block-sum row, which is therefore never cleared first. */
function storeScaled(acc: usize, x: usize, s: f32, D: i32): void {
  const D4 = D & ~3;
  const sv = f32x4.splat(s);
  for (let d = 0; d < D4; d += 4) {
    const off = <usize>d << 2;
    v128.store(acc + off, f32x4.mul(sv, v128.load(x + off)));
  }
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    store<f32>(acc + off, s * load<f32>(x + off));
  }
}

/** `out[0 .. D) = x[0 .. D) + y[0 .. D)` (float32; two vectors a step, as {@link copyRow}: the sweep's per-row work). */
function sumRows2(out: usize, x: usize, y: usize, D: i32): void {
  const D4 = D & ~3;
  const D8 = D & ~7;
  let d0 = 0;
  for (; d0 < D8; d0 += 8) {
    const off = <usize>d0 << 2;
    v128.store(out + off, f32x4.add(v128.load(x + off), v128.load(y + off)));
    v128.store(out + off, f32x4.add(v128.load(x + off, 16), v128.load(y + off, 16)), 16);
  }
  for (let d = d0; d < D4; d += 4) {
    const off = <usize>d << 2;
    v128.store(out + off, f32x4.add(v128.load(x + off), v128.load(y + off)));
  }
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    store<f32>(out + off, load<f32>(x + off) + load<f32>(y + off));
  }
}

/** `out[0 .. D) = (x[0 .. D) + y[0 .. D)) + z[0 .. D)` (float32; two vectors a step). */
function sumRows3(out: usize, x: usize, y: usize, z: usize, D: i32): void {
  const D4 = D & ~3;
  const D8 = D & ~7;
  let d0 = 0;
  for (; d0 < D8; d0 += 8) {
    const off = <usize>d0 << 2;
    v128.store(out + off, f32x4.add(f32x4.add(v128.load(x + off), v128.load(y + off)), v128.load(z + off)));
    v128.store(out + off, f32x4.add(f32x4.add(v128.load(x + off, 16), v128.load(y + off, 16)), v128.load(z + off, 16)), 16);
  }
  for (let d = d0; d < D4; d += 4) {
    const off = <usize>d << 2;
    v128.store(out + off, f32x4.add(f32x4.add(v128.load(x + off), v128.load(y + off)), v128.load(z + off)));
  }
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    store<f32>(out + off, load<f32>(x + off) + load<f32>(y + off) + load<f32>(z + off));
  }
}

// Per-row marks of a block (int32, in the `fill` scratch, which the counting sort is done with by then):
// some window ends at the row (its `backward` row holds the row's terms), and from bit 2 up, 1 + the row
// whose `backward` row holds this row's backward running sum (0: none, the sum is zero).
const ENDS = 2;
const BACK_SHIFT = 2;

/**
 * core's mergeIntoNeighbours (CaM) after validation: gather the kept slots (`keep` int32 [H, K]) into the
 * output layer, then add each source's gated value to its window of kept neighbours with the oracle's
 * block sums. Plan: `source`, `tStart`, `tCount` int32 [H, S], `gate` float32 [H, S]. Scratch: `order`
 * int32 [S], `firstOf` and `fill` int32 [K + 1], `forward` and `backward` float32 [K * D].
 *
 * Per block of B kept slots, one ascending sweep writes each row's key, position, count, score and value
 * `out[t] = (v[keep[t]] + forward[t]) + backward[t]` together (the input rows are read in address order,
 * keys and values side by side, instead of gathering them and read-modify-writing the values afterwards),
 * adding the terms of the windows that start at a row as it gets there: CaM's sources lie just before the
 * kept slot their window starts at, so their values are read in the same ascending pass.
 *
 * The block sums are the oracle's without clearing B x D blocks first: a row's first term is stored rather
 * than added to zero, rows no window ends at are not written, and the running sums skip such rows, reading
 * the last written row instead (`forward`: the row of the sum so far; `backward`: through the marks above).
 * A row's terms that run into the next block are left in the row of that block's `backward` they end at
 * (two sets of rows, alternating by block), so the next block reads neither those values nor their gates
 * again; that needs all of the row's windows to end at one row, and when another row's windows end there
 * too (CaM's near the end of the kept set) the terms are added there one by one instead. Adding zero is
 * exact, so every float32 value is the one cleared blocks would give, in the same order: the terms of a
 * row in the order of `order`, `forward[t] = terms(t) + forward[t - 1]`, `backward[t] = terms(t) +
 * backward[t + 1]`, and `(v + forward) + backward` (float32 addition is commutative, so `forward[t - 1] +
 * terms(t)` is the same value). A block with a window that neither reaches its end nor leaves it, or
 * with windows out of order (CaM's plans have neither), takes the oracle's path on cleared blocks
 * ({@link mergeBlockGeneral}).
 */
export function mergeIntoNeighbours(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, keep: usize, source: usize, tStart: usize, tCount: usize, gate: usize, H: i32, L: i32, D: i32, K: i32, S: i32, ok: usize, ov: usize, op: usize, oc: usize, os: usize, order: usize, firstOf: usize, fill: usize, forward: usize, backward: usize): void {
  const row = <usize>D << 2;
  for (let h = 0; h < H; h++) {
    const s0 = h * S;
    let B = 0;
    for (let s = s0; s < s0 + S; s++) {
      const c = load<i32>(tCount + (<usize>s << 2));
      if (load<f32>(gate + (<usize>s << 2)) !== 0 && c > B) B = c;
    }
    if (B === 0) {
      gatherHead(lk, lv, lp, lc, ls, keep, h, 0, K, L, D, K, ok, ov, op, oc, os);
      continue;
    }
    const blocks = (K + B - 1) / B;
    memory.fill(firstOf, 0, <usize>(blocks + 1) << 2);
    for (let s = s0; s < s0 + S; s++) {
      if (load<f32>(gate + (<usize>s << 2)) !== 0 && load<i32>(tCount + (<usize>s << 2)) > 0) {
        const at = firstOf + (<usize>(load<i32>(tStart + (<usize>s << 2)) / B + 1) << 2);
        store<i32>(at, load<i32>(at) + 1);
      }
    }
    for (let x = 0; x < blocks; x++) {
      const at = firstOf + (<usize>(x + 1) << 2);
      store<i32>(at, load<i32>(at) + load<i32>(at - 4));
    }
    memory.copy(fill, firstOf, <usize>blocks << 2);
    for (let s = s0; s < s0 + S; s++) {
      if (load<f32>(gate + (<usize>s << 2)) !== 0 && load<i32>(tCount + (<usize>s << 2)) > 0) {
        const at = fill + (<usize>(load<i32>(tStart + (<usize>s << 2)) / B) << 2);
        const q = load<i32>(at);
        store<i32>(at, q + 1);
        store<i32>(order + (<usize>q << 2), s);
      }
    }
    const inRows = <usize>h * <usize>L;
    const outRows = <usize>h * <usize>K;
    // The forward running sum, and the terms of a row that go nowhere else.
    const sum = forward;
    const terms = forward + row;
    const marks = fill;
    // Whether this block's backward terms and marks were left by the previous block's sweep, and whether any were.
    let ready = false;
    let readyEnds = false;
    for (let x = 0; x < blocks; x++) {
      const b0 = x * B;
      const b1 = min(K, b0 + B);
      const n = b1 - b0;
      const n1 = x + 1 < blocks ? min(K, b1 + B) - b1 : 0;
      const prev0 = x > 0 ? load<i32>(firstOf + (<usize>(x - 1) << 2)) : 0;
      const here0 = load<i32>(firstOf + (<usize>x << 2));
      const here1 = load<i32>(firstOf + (<usize>(x + 1) << 2));
      // Backward rows and marks of this block and the next, alternating between the first B rows and the
      // next ones (block x at row (x & 1) * B: an odd block starts at b0 >= B, so b0 + n <= K bounds both).
      const cur = <usize>(x & 1) * <usize>B;
      const nxt = <usize>B - cur;
      const back = backward + cur * row;
      const mark = marks + (cur << 2);
      const backNext = backward + nxt * row;
      const markNext = marks + (nxt << 2);
      // The sweep below takes this block's windows in the order they start; CaM's are (sources ascending).
      let general = false;
      let at = b0;
      for (let q = here0; q < here1; q++) {
        const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
        const a = load<i32>(tStart + s);
        if (a + load<i32>(tCount + s) < b1 || a < at) general = true;
        at = a;
      }
      if (general) {
        mergeBlockGeneral(lk, lv, lp, lc, ls, keep, source, tStart, tCount, gate, h, L, D, K, ok, ov, op, oc, os, order, prev0, here0, here1, b0, b1, forward, backward);
        ready = false;
        continue;
      }
      let ends = readyEnds;
      if (!ready) {
        ends = false;
        for (let q = prev0; q < here0; q++) {
          const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
          if (load<i32>(tStart + s) + load<i32>(tCount + s) > b0) ends = true;
        }
      }
      // Blocks no window reaches: a plain gather.
      if (!ends && here0 === here1) {
        gatherHead(lk, lv, lp, lc, ls, keep, h, b0, b1, L, D, K, ok, ov, op, oc, os);
        ready = false;
        continue;
      }
      if (!ready) {
        // Windows that started in the previous block and run into this one: their prefix part, a term at the
        // row they end at (their values were read one block ago, so they are in cache).
        memory.fill(mark, 0, <usize>n << 2);
        for (let q = prev0; q < here0; q++) {
          const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
          const c = load<i32>(tCount + s);
          const end = load<i32>(tStart + s) + c;
          if (end <= b0) continue;
          const r = <usize>(end - 1 - b0);
          const src = lv + (inRows + <usize>load<i32>(source + s)) * row;
          const g = <f32>(<f64>load<f32>(gate + s) / <f64>c);
          const m = load<i32>(mark + (r << 2));
          if ((m & ENDS) !== 0) addScaled(back + r * row, src, g, D);
          else {
            storeScaled(back + r * row, src, g, D);
            store<i32>(mark + (r << 2), m | ENDS);
          }
        }
      }
      // The backward running sum, descending over the rows with terms; every row notes which row holds its sum.
      let last = -1;
      for (let t = n - 1; t >= 0; t--) {
        const p = mark + (<usize>t << 2);
        const m = load<i32>(p);
        if ((m & ENDS) !== 0) {
          if (last >= 0) addRow(back + <usize>t * row, back + <usize>last * row, D);
          last = t;
        }
        store<i32>(p, m | ((last + 1) << BACK_SHIFT));
      }
      // One ascending sweep: the terms of the windows starting at a row (CaM's sources just before that kept
      // slot, so the values are read in address order), the forward sum, and the row's output. The terms of
      // windows that run into the next block are written where that block's backward sum wants them (the row
      // they end at), so it need not read those values again, when all windows of the row end at the same
      // row (CaM's do) and no other row's windows do (else they are added there one by one, in order).
      if (n1 > 0) memory.fill(markNext, 0, <usize>n1 << 2);
      let complete = n1 > 0;
      let nextEnds = false;
      let q = here0;
      let started = false; // whether a window has started in this block yet
      let sumAt = sum; // the row holding the forward sum once one has
      for (let t = 0; t < n; t++) {
        const j = outRows + <usize>(b0 + t);
        const i = inRows + <usize>load<i32>(keep + (j << 2));
        if (q < here1 && load<i32>(tStart + (<usize>load<i32>(order + (<usize>q << 2)) << 2)) === b0 + t) {
          // The windows starting here: order[q .. q2), all `c` wide or not (`uniform`).
          const c = load<i32>(tCount + (<usize>load<i32>(order + (<usize>q << 2)) << 2));
          let q2 = q + 1;
          let uniform = true;
          for (; q2 < here1; q2++) {
            const s = <usize>load<i32>(order + (<usize>q2 << 2)) << 2;
            if (load<i32>(tStart + s) !== b0 + t) break;
            if (load<i32>(tCount + s) !== c) uniform = false;
          }
          const e = b0 + t + c - 1 - b1; // the row of the next block they end at (when uniform and >= 0)
          let dst = started ? terms : sum;
          let shared = false; // another row's windows end at row e too
          if (!uniform) complete = false;
          else if (e >= 0 && complete) {
            if ((load<i32>(markNext + (<usize>e << 2)) & ENDS) === 0) {
              dst = backNext + <usize>e * row;
              store<i32>(markNext + (<usize>e << 2), ENDS);
              nextEnds = true;
            } else shared = true;
          }
          // terms(t) in the order of `order`, then forward[t] = terms(t) + forward[t - 1].
          for (let p = q; p < q2; p++) {
            const s = <usize>load<i32>(order + (<usize>p << 2)) << 2;
            const src = lv + (inRows + <usize>load<i32>(source + s)) * row;
            const g = <f32>(<f64>load<f32>(gate + s) / <f64>load<i32>(tCount + s));
            if (p === q) storeScaled(dst, src, g, D);
            else addScaled(dst, src, g, D);
          }
          if (!started) sumAt = dst;
          else {
            sumRows2(sum, sumAt, dst, D);
            sumAt = sum;
          }
          started = true;
          if (shared) {
            const r = backNext + <usize>e * row;
            for (let p = q; p < q2; p++) {
              const s = <usize>load<i32>(order + (<usize>p << 2)) << 2;
              addScaled(r, lv + (inRows + <usize>load<i32>(source + s)) * row, <f32>(<f64>load<f32>(gate + s) / <f64>load<i32>(tCount + s)), D);
            }
          }
          q = q2;
        }
        copyRow(ok + j * row, lk + i * row, row);
        store<i32>(op + (j << 2), load<i32>(lp + (i << 2)));
        store<i32>(oc + (j << 2), load<i32>(lc + (i << 2)));
        store<i32>(os + (j << 2), load<i32>(ls + (i << 2)));
        const b = (load<i32>(mark + (<usize>t << 2)) >> BACK_SHIFT) - 1;
        const out = ov + j * row;
        const v = lv + i * row;
        if (started) {
          if (b >= 0) sumRows3(out, v, sumAt, back + <usize>b * row, D);
          else sumRows2(out, v, sumAt, D);
        } else if (b >= 0) sumRows2(out, v, back + <usize>b * row, D);
        else copyRow(out, v, row);
      }
      ready = complete;
      readyEnds = nextEnds;
    }
  }
}

/**
 * One block of {@link mergeIntoNeighbours} as the oracle does it, on cleared `forward` and `backward` blocks:
 * for blocks with a window inside them, whose terms go to every target after the running sums.
 * `order[prev0 .. here0)` are the previous block's sources, `order[here0 .. here1)` this block's.
 */
function mergeBlockGeneral(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, keep: usize, source: usize, tStart: usize, tCount: usize, gate: usize, h: i32, L: i32, D: i32, K: i32, ok: usize, ov: usize, op: usize, oc: usize, os: usize, order: usize, prev0: i32, here0: i32, here1: i32, b0: i32, b1: i32, forward: usize, backward: usize): void {
  const row = <usize>D << 2;
  const width = (b1 - b0) * D;
  gatherHead(lk, lv, lp, lc, ls, keep, h, b0, b1, L, D, K, ok, ov, op, oc, os);
  memory.fill(forward, 0, <usize>width << 2);
  memory.fill(backward, 0, <usize>width << 2);
  for (let q = prev0; q < here0; q++) {
    const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
    const c = load<i32>(tCount + s);
    const end = load<i32>(tStart + s) + c;
    if (end <= b0) continue;
    const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
    addScaled(backward + ((<usize>(end - 1 - b0) * <usize>D) << 2), src, <f32>(<f64>load<f32>(gate + s) / <f64>c), D);
  }
  for (let q = here0; q < here1; q++) {
    const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
    const c = load<i32>(tCount + s);
    const a = load<i32>(tStart + s);
    if (a + c < b1) continue;
    const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
    addScaled(forward + ((<usize>(a - b0) * <usize>D) << 2), src, <f32>(<f64>load<f32>(gate + s) / <f64>c), D);
  }
  for (let t = 1; t < b1 - b0; t++) addRow(forward + <usize>t * row, forward + <usize>(t - 1) * row, D);
  for (let t = b1 - b0 - 2; t >= 0; t--) addRow(backward + <usize>t * row, backward + <usize>(t + 1) * row, D);
  // Windows that neither reach their block's end nor leave it: added to each target.
  for (let q = here0; q < here1; q++) {
    const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
    const a = load<i32>(tStart + s);
    const c = load<i32>(tCount + s);
    if (a + c >= b1) continue;
    const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
    const g = <f32>(<f64>load<f32>(gate + s) / <f64>c);
    for (let t = a; t < a + c; t++) addScaled(forward + ((<usize>(t - b0) * <usize>D) << 2), src, g, D);
  }
  // outV = (outV + forward) + backward.
  const at = ov + ((<usize>(h * K + b0) * <usize>D) << 2);
  const w4 = width & ~3;
  for (let i = 0; i < w4; i += 4) {
    const o4 = <usize>i << 2;
    v128.store(at + o4, f32x4.add(f32x4.add(v128.load(at + o4), v128.load(forward + o4)), v128.load(backward + o4)));
  }
  for (let i = w4; i < width; i++) {
    const o4 = <usize>i << 2;
    store<f32>(at + o4, load<f32>(at + o4) + load<f32>(forward + o4) + load<f32>(backward + o4));
  }
}

/**
 * Whether a mergeSegments plan passes every content check of core's checkPlan (1) or not (0; core's host
 * check then names the problem): ids -1 or non-decreasing from 0 without gaps and below M, every head's
 * last id M - 1, each pivot a member of its run, sigma > 0, and in `count` mode every member count >= 1.
 */
export function screenSegments(seg: usize, piv: usize, sig: usize, counts: usize, H: i32, L: i32, M: i32, byCount: bool): i32 {
  for (let h = 0; h < H; h++) {
    let prev = -1;
    const base = <usize>h * <usize>L;
    // Without a branch per slot: a kept slot's id is its predecessor's or the next one (an unsigned step of
    // 0 or 1; ids that only ever step up by one from -1 and end at M - 1 stay below M), an evicted slot (-1)
    // leaves prev alone. Segment boundaries fall wherever the merged links do, so a branch on them
    // mispredicted about every other slot (3.06 -> 1.35 ms at 32 x 16k, bench/kvmerger-kernels.mjs).
    let bad: u32 = 0;
    const minCount = byCount ? 1 : -2147483648;
    for (let i = 0; i < L; i++) {
      const at = (base + <usize>i) << 2;
      const s = load<i32>(seg + at);
      const kept = <u32>(s !== -1);
      bad |= kept & (<u32>(<u32>(s - prev) > 1) | <u32>(load<i32>(counts + at) < minCount));
      prev = select<i32>(s, prev, kept);
    }
    if (bad !== 0 || prev !== M - 1) return 0;
    for (let o = 0; o < M; o++) {
      const at = (<usize>h * <usize>M + <usize>o) << 2;
      const p = load<i32>(piv + at);
      if (p < 0 || p >= L || load<i32>(seg + ((base + <usize>p) << 2)) !== o) return 0;
      if (!(load<f32>(sig + at) > 0)) return 0;
    }
  }
  return 1;
}

/**
 * core's accumulate: `out = a + b` over `n` float32 elements, four lanes at a time. A float32 sum is what core
 * computes too (its float64 sum of two float32 values rounds to the same float32), so the result is identical.
 */
export function accumulate(a: usize, b: usize, out: usize, n: i32): void {
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const at = <usize>i << 2;
    v128.store(out + at, f32x4.add(v128.load(a + at), v128.load(b + at)));
  }
  for (let i = n4; i < n; i++) {
    const at = <usize>i << 2;
    store<f32>(out + at, load<f32>(a + at) + load<f32>(b + at));
  }
}

/**
 * core's linkSegments (packages/core/src/kernels/linkSegments.ts): for each head's merged links (`[H, C]`,
 * strictly ascending within [0, L - 2]; link i joins slots i and i + 1), the segment id of every slot into
 * `seg` `[H, L]` and each run's pivot into `piv` `[H, L - C]`: the highest score, ties to the lower slot, NaN
 * lowest. Integer outputs, so the same as core's whatever the route.
 *
 * After the join flags, one pass over the slots with no data-dependent branch (run boundaries fall wherever
 * the links do, so a branch on them would mispredict about every other slot): a slot starts a run unless a
 * link joins it, the running best score and its slot move by selects, and the run's pivot entry is rewritten
 * at every slot so that it holds the best once the run ends.
 */
export function linkSegments(links: usize, scores: usize, seg: usize, piv: usize, H: i32, L: i32, C: i32): void {
  const M = L - C;
  for (let h = 0; h < H; h++) {
    const lk = links + ((<usize>h * <usize>C) << 2);
    const sc = scores + ((<usize>h * <usize>L) << 2);
    const sg = seg + ((<usize>h * <usize>L) << 2);
    const pv = piv + ((<usize>h * <usize>M) << 2);
    // The segment row first holds the join flags (1 where a link joins a slot to its predecessor): independent
    // stores, where walking the link list alongside the slots chained every slot on a load (1.8 against 1.0 ms
    // at 32 x 16k). Comparing scores as int32 rank keys (1.4 ms), or two heads per pass (1.6-1.8 ms), was slower.
    memory.fill(sg, 0, <usize>L << 2);
    for (let j = 0; j < C; j++) store<i32>(sg + ((<usize>load<i32>(lk + (<usize>j << 2)) + 1) << 2), 1);
    let id = -1;
    let p = 0;
    let best: f32 = -Infinity;
    for (let i = 0; i < L; i++) {
      const at = <usize>i << 2;
      const fresh = load<i32>(sg + at) ^ 1;
      const raw = load<f32>(sc + at);
      const v = select<f32>(raw, -Infinity, raw == raw);
      id += fresh;
      const better = <bool>fresh | (v > best);
      best = select<f32>(v, best, better);
      p = select<i32>(i, p, better);
      store<i32>(sg + at, id);
      store<i32>(pv + (<usize>id << 2), p);
    }
  }
}

/** `n` bytes rounded up to a multiple of 16 (each block of {@link mergeSimilar}'s scratch starts aligned). */
// @ts-ignore: decorator
@inline function block(n: usize): usize {
  return (n + 15) & ~15;
}

/** Bytes of {@link mergeSimilar}'s scratch (one per thread) for heads of `L` slots merging `C` links each. */
export function mergeSimilarScratch(L: i32, C: i32): usize {
  const n1 = <usize>(L > 0 ? L - 1 : 0);
  const l = <usize>L;
  const m = <usize>(L - C);
  return 3 * block(n1 << 2) + block(l) + block(<usize>C << 2) + 2 * block(l << 2) + 4 * block(m << 2) + block(TOPK_HIST_BYTES) + 2 * block(l << 3);
}

/**
 * core's mergeSimilar after validation, one head at a time: adjacentCosine, the eligibility mask (neither slot
 * protected, cosine finite and `>= minSim`; the others NaN), topK of the masked cosines, linkSegments by the
 * scores, and mergeSegments with every sigma `sigma`, each the kernel of that name on one head, so the result is
 * the chain's bit for bit. A head's keys are still in cache when its merge reads them again (the cosines just
 * read them), and its plan never leaves wasm. Layer and output layer as in {@link mergeSegments}; `prot` int32
 * [H, P] (slots, checked); `lowest` float32 [H] and `eligible` int32 [H] out; `scratch`: {@link mergeSimilarScratch} bytes.
 */
export function mergeSimilar(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, prot: usize, H: i32, L: i32, D: i32, P: i32, C: i32, minSim: f64, sigma: f64, byCount: bool, ok: usize, ov: usize, op: usize, oc: usize, os: usize, lowest: usize, eligible: usize, scratch: usize): void {
  const n1 = L > 0 ? L - 1 : 0;
  const M = L - C;
  const row = <usize>D << 2;
  let at = scratch;
  const cos = at;
  at += block(<usize>n1 << 2);
  const rank = at;
  at += block(<usize>n1 << 2);
  const cand = at;
  at += block(<usize>n1 << 2);
  const flags = at;
  at += block(<usize>L);
  const links = at;
  at += block(<usize>C << 2);
  const seg = at;
  at += block(<usize>L << 2);
  const rows = at;
  at += block(<usize>L << 2);
  const piv = at;
  at += block(<usize>M << 2);
  const sig = at;
  at += block(<usize>M << 2);
  const start = at;
  at += block(<usize>M << 2);
  const end = at;
  at += block(<usize>M << 2);
  const hist = at;
  at += block(TOPK_HIST_BYTES);
  const weights = at;
  at += block(<usize>L << 3);
  const valueWeights = at;
  const s32 = <f32>sigma;
  for (let j = 0; j < M; j++) store<f32>(sig + (<usize>j << 2), s32);
  for (let h = 0; h < H; h++) {
    const kh = lk + <usize>h * <usize>L * row;
    const sh = ls + ((<usize>h * <usize>L) << 2);
    adjacentCosine(kh, cos, 1, L, D);
    memory.fill(flags, 0, <usize>L);
    const ph = prot + ((<usize>h * <usize>P) << 2);
    for (let j = 0; j < P; j++) store<u8>(flags + <usize>load<i32>(ph + (<usize>j << 2)), 1);
    let n = 0;
    for (let i = 0; i < n1; i++) {
      const c = load<f32>(cos + (<usize>i << 2));
      const free = (load<u8>(flags + <usize>i) | load<u8>(flags + <usize>i + 1)) === 0;
      const fits = c - c == 0 && <f64>c >= minSim;
      const yes = free && fits;
      store<f32>(rank + (<usize>i << 2), select<f32>(c, NaN, yes));
      n += <i32>yes;
    }
    store<i32>(eligible + (<usize>h << 2), n);
    topK(rank, links, 1, n1, 0, n1, C, cand, hist);
    let low: f32 = Infinity;
    for (let j = 0; j < C; j++) low = min<f32>(low, load<f32>(cos + (<usize>load<i32>(links + (<usize>j << 2)) << 2)));
    store<f32>(lowest + (<usize>h << 2), low);
    linkSegments(links, sh, seg, piv, 1, L, C);
    const hl = (<usize>h * <usize>L) << 2;
    const hm = (<usize>h * <usize>M) << 2;
    mergeSegments(kh, lv + <usize>h * <usize>L * row, lp + hl, lc + hl, sh, seg, piv, sig, 1, L, D, M, byCount, ok + <usize>h * <usize>M * row, ov + <usize>h * <usize>M * row, op + hm, oc + hm, os + hm, start, end, rows, weights, valueWeights);
  }
}

/** 1 when every entry of `prot` `[H, P]` is a slot in [0, L) and (`byCount`) every count of `counts` `[H, L]` is >= 1 (core's mergeSimilar check), else 0. */
export function screenSimilar(prot: usize, counts: usize, H: i32, L: i32, P: i32, byCount: bool): i32 {
  let bad: u32 = 0;
  const n = <usize>H * <usize>P;
  for (let i: usize = 0; i < n; i++) bad |= <u32>(<u32>load<i32>(prot + (i << 2)) >= <u32>L);
  if (byCount) {
    const m = <usize>H * <usize>L;
    for (let i: usize = 0; i < m; i++) bad |= <u32>(load<i32>(counts + (i << 2)) < 1);
  }
  return bad === 0 ? 1 : 0;
}

/** 1 when each head's row of `links` (`[H, C]`) is strictly ascending within [0, L - 2] (core's linkSegments check), else 0. */
export function screenLinks(links: usize, H: i32, L: i32, C: i32): i32 {
  let bad: u32 = 0;
  for (let h = 0; h < H; h++) {
    let prev = -1;
    const row = links + ((<usize>h * <usize>C) << 2);
    for (let j = 0; j < C; j++) {
      const x = load<i32>(row + (<usize>j << 2));
      bad |= <u32>(x <= prev) | <u32>(x > L - 2);
      prev = x;
    }
  }
  return <i32>(bad === 0);
}

/**
 * Whether a mergeIntoNeighbours plan passes every content check of core's checkPlan (1) or not (0): keep
 * strictly ascending within [0, L), sources within [0, L), counts >= 0, each window with count > 0 inside
 * keep, gates finite.
 */
export function screenNeighbours(keep: usize, source: usize, tStart: usize, tCount: usize, gate: usize, H: i32, L: i32, K: i32, S: i32): i32 {
  for (let h = 0; h < H; h++) {
    let prev = -1;
    for (let j = 0; j < K; j++) {
      const x = load<i32>(keep + ((<usize>h * <usize>K + <usize>j) << 2));
      if (x < 0 || x >= L || x <= prev) return 0;
      prev = x;
    }
  }
  const ns = <usize>H * <usize>S;
  for (let i: usize = 0; i < ns; i++) {
    const src = load<i32>(source + (i << 2));
    if (src < 0 || src >= L) return 0;
    const c = load<i32>(tCount + (i << 2));
    const st = load<i32>(tStart + (i << 2));
    if (c < 0) return 0;
    if (c > 0 && (st < 0 || <i64>st + <i64>c > <i64>K)) return 0;
    const g = load<f32>(gate + (i << 2));
    if (!(g - g === 0)) return 0;
  }
  return 1;
}

// topK: core's radix selection (packages/core/src/kernels/topK.ts). A selection has one right answer (the
// k best slots by key, ties to the lower slot, ascending), so the output is core's exactly whatever the
// route: the keys are core's rankKey, four lanes at a time; the first digit (key bits 21..31) is counted in
// four histograms, one per lane, so runs of scores in the same bin (common: the digit is the sign, the
// exponent and two mantissa bits) do not serialise on one counter; the keys whose first digit is the
// threshold's are compacted in place, and the two lower digits (bits 10..20, 0..9) are counted over those
// only; the last pass compares the scores with the threshold's float. Compaction and output go four lanes
// per store through a shuffle table built in the scratch, with no branch per slot (a mispredicted branch
// per slot would cost more than the rest).

/** core's rankKey on four float32 bit patterns: NaN as -Infinity, -0 as 0, then sign-flipped so unsigned order is score order. */
// @ts-ignore: decorator
@inline function rankKeys(b: v128): v128 {
  const nan = i32x4.gt_s(v128.and(b, i32x4.splat(0x7fffffff)), i32x4.splat(0x7f800000));
  b = v128.bitselect(i32x4.splat(0xff800000), b, nan);
  b = v128.andnot(b, i32x4.eq(b, i32x4.splat(0x80000000)));
  return v128.xor(b, v128.or(i32x4.shr_s(b, 31), i32x4.splat(0x80000000)));
}

/** core's rankKey on one float32 bit pattern. */
// @ts-ignore: decorator
@inline function rankKey(b: u32): u32 {
  if ((b & 0x7fffffff) > 0x7f800000) b = 0xff800000;
  else if (b === 0x80000000) b = 0;
  return b ^ (<u32>(<i32>b >> 31) | 0x80000000);
}

// @ts-ignore: decorator
@inline function bump(at: usize): void {
  store<i32>(at, load<i32>(at) + 1);
}

/** Int32 words of topK's `hist` scratch: four 2048-bin histograms, then the 16-entry shuffle table. */
// @ts-ignore: decorator
@inline const TOPK_TABLE: usize = 4 * 2048 * 4;

/** Bytes of topK's `hist` scratch: the histograms, then the 16-entry shuffle table (TOPK_HIST_WORDS in src/index.ts). */
// @ts-ignore: decorator
@inline const TOPK_HIST_BYTES: usize = TOPK_TABLE + 16 * 16;

/**
 * core's topK after validation: scores float32 [H, L] at `scores`, the indices of each head's `k` best
 * slots among `[from, to)` (ascending) into int32 [H, k] at `out`. Scratch: `keys` int32 [to - from],
 * `hist` int32 [8192 + 64].
 */
export function topK(scores: usize, out: usize, H: i32, L: i32, from: i32, to: i32, k: i32, keys: usize, hist: usize): void {
  const m = to - from;
  if (k === 0) return;
  // Entry `mask` of the table: the byte shuffle that moves the int32 lanes set in `mask` to the front, in order.
  const table = hist + TOPK_TABLE;
  for (let mask = 0; mask < 16; mask++) {
    let p: usize = 0;
    for (let l = 0; l < 4; l++) {
      if (((mask >> l) & 1) === 0) continue;
      store<u32>(table + (<usize>mask << 4) + (p << 2), 0x03020100 + 0x04040404 * <u32>l);
      p++;
    }
    for (; p < 4; p++) store<u32>(table + (<usize>mask << 4) + (p << 2), 0);
  }
  for (let h = 0; h < H; h++) {
    const o = out + ((<usize>h * <usize>k) << 2);
    if (k === m) {
      for (let j = 0; j < k; j++) store<i32>(o + (<usize>j << 2), from + j);
      continue;
    }
    topKHead(scores + ((<usize>h * <usize>L + <usize>from) << 2), o, m, k, from, keys, hist, table);
  }
}

/** One head of {@link topK}: `m` scores at `s`, `0 < k < m`. */
function topKHead(s: usize, o: usize, m: i32, k: i32, from: i32, keys: usize, hist: usize, table: usize): void {
  const m4 = m & ~3;
  // First digit (bits 21..31): lane l counts into hist[l * 2048 ..].
  memory.fill(hist, 0, TOPK_TABLE);
  for (let i = 0; i < m4; i += 4) {
    const key = rankKeys(v128.load(s + (<usize>i << 2)));
    v128.store(keys + (<usize>i << 2), key);
    const d = i32x4.shr_u(key, 21);
    bump(hist + (<usize>i32x4.extract_lane(d, 0) << 2));
    bump(hist + 8192 + (<usize>i32x4.extract_lane(d, 1) << 2));
    bump(hist + 16384 + (<usize>i32x4.extract_lane(d, 2) << 2));
    bump(hist + 24576 + (<usize>i32x4.extract_lane(d, 3) << 2));
  }
  for (let i = m4; i < m; i++) {
    const x = rankKey(load<u32>(s + (<usize>i << 2)));
    store<u32>(keys + (<usize>i << 2), x);
    bump(hist + (<usize>(x >>> 21) << 2));
  }
  // `need`: winners still to place at or below the current prefix (core's).
  let found = findBin(hist, 4, 2048, k);
  const b1 = <i32>found;
  let need = <i32>(found >> 32);
  // The keys in the threshold's first bin, compacted in place (the store never passes the keys not yet read).
  const want = i32x4.splat(b1);
  let n = 0;
  for (let i = 0; i < m4; i += 4) {
    const key = v128.load(keys + (<usize>i << 2));
    const hit = i32x4.bitmask(i32x4.eq(i32x4.shr_u(key, 21), want));
    v128.store(keys + (<usize>n << 2), i8x16.swizzle(key, v128.load(table + (<usize>hit << 4))));
    n += <i32>popcnt(hit);
  }
  for (let i = m4; i < m; i++) {
    const x = load<u32>(keys + (<usize>i << 2));
    store<u32>(keys + (<usize>n << 2), x);
    n += <i32>(x >>> 21 === <u32>b1);
  }
  // Second digit (bits 10..20) over the candidates.
  memory.fill(hist, 0, 2048 * 4);
  for (let q = 0; q < n; q++) bump(hist + (<usize>((load<u32>(keys + (<usize>q << 2)) >>> 10) & 2047) << 2));
  found = findBin(hist, 1, 2048, need);
  const b2 = <i32>found;
  need = <i32>(found >> 32);
  // Third digit (bits 0..9) over the candidates with the second digit too; the others count into bin 1024.
  memory.fill(hist, 0, 1025 * 4);
  for (let q = 0; q < n; q++) {
    const x = load<u32>(keys + (<usize>q << 2));
    bump(hist + (<usize>select<u32>(x & 1023, 1024, ((x >>> 10) & 2047) === <u32>b2) << 2));
  }
  found = findBin(hist, 1, 1024, need);
  const b3 = <i32>found;
  need = <i32>(found >> 32);
  // The threshold key t as a score: t is some slot's key, so it is neither NaN nor -0, and for every score x,
  // key(x) > t exactly when x > tf, and key(x) = t exactly when x = tf, or x is NaN and tf is -Infinity.
  const t = (<u32>b1 << 21) | (<u32>b2 << 10) | <u32>b3;
  const tf = reinterpret<f32>(t & 0x80000000 ? t ^ 0x80000000 : ~t);
  const tv = f32x4.splat(tf);
  const nanTies = i32x4.splat(tf === -Infinity ? -1 : 0);
  // Every slot above t wins, and the first `need` equal to it. Four slots per store while four more winners
  // fit, then one at a time.
  let ties = need;
  let j = 0;
  let i = 0;
  for (; i < m4 && j + 4 <= k; i += 4) {
    const v = v128.load(s + (<usize>i << 2));
    let take = i32x4.bitmask(f32x4.gt(v, tv));
    let eq = i32x4.bitmask(v128.or(f32x4.eq(v, tv), v128.and(f32x4.ne(v, v), nanTies)));
    if (eq !== 0) {
      const c = <i32>popcnt(eq);
      // Keep the lowest `ties` equal lanes (ties to the lower slot).
      for (let drop = c - max(ties, 0); drop > 0; drop--) eq ^= 1 << (31 - clz(eq));
      take |= eq;
      ties -= c;
    }
    const idx = i32x4.add(i32x4.splat(from + i), i32x4(0, 1, 2, 3));
    v128.store(o + (<usize>j << 2), i8x16.swizzle(idx, v128.load(table + (<usize>take << 4))));
    j += <i32>popcnt(take);
  }
  for (; i < m && j < k; i++) {
    const x = load<f32>(s + (<usize>i << 2));
    if (x > tf || ((x === tf || (x !== x && tf === -Infinity)) && ties-- > 0)) {
      store<i32>(o + (<usize>j << 2), from + i);
      j++;
    }
  }
}

/**
 * core's threshold search over `bins` bins (a multiple of 16) of `copies` histograms 2048 bins apart (summed):
 * the highest bin `b` whose count reaches `need` after the counts above it are taken off `need` (core's
 * `while (hist[b] < need) need -= hist[b--]`), as `b | need << 32`. Sixteen bins at a time, then one by one
 * inside the block that holds it. `need` is at least 1 and at most the counts' total.
 */
function findBin(hist: usize, copies: i32, bins: i32, need: i32): i64 {
  let b = bins;
  for (;;) {
    b -= 16;
    const at = hist + (<usize>b << 2);
    let v = i32x4.splat(0);
    for (let c = 0; c < copies; c++) {
      const a = at + <usize>c * 8192;
      v = i32x4.add(v, i32x4.add(i32x4.add(v128.load(a), v128.load(a, 16)), i32x4.add(v128.load(a, 32), v128.load(a, 48))));
    }
    const sum = i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
    if (sum >= need) break;
    need -= sum;
  }
  let x = b + 15;
  for (;;) {
    let c = 0;
    for (let y = 0; y < copies; y++) c += load<i32>(hist + (<usize>x << 2) + <usize>y * 8192);
    if (c >= need) break;
    need -= c;
    x--;
  }
  return (<i64>need << 32) | <i64>x;
}
