// WebAssembly SIMD versions of the reference backend's hot loops (AssemblyScript; built by
// `pnpm run build:wasm` into ../wasm/kernels.wasm, which is committed and checked by test/wasm.test.ts).
//
// Every function here computes exactly what core's TypeScript kernel of the same name computes
// (packages/core/src/kernels), bit for bit: the same float64 operations in the same order. The oracle's
// sums over headDim keep two accumulators (even and odd elements); an f64x2 lane pair is exactly that, so
// lane 0 adds the even elements and lane 1 the odd ones in the oracle's order. Element-wise sums (merged
// rows, CaM's block sums) are the oracle's expressions on two elements at a time. No fused multiply-add,
// no reassociation: adjacentCosine's values, and so KVMerger's segment decisions, are the oracle's.
// Independent dependency chains (two neighbour pairs, two run members) are interleaved for throughput,
// each chain keeping its own order.
//
// Pointers are byte offsets into the imported (shared) memory where the backend's tensors live.

@external("env", "exp")
declare function jsExp(x: f64): f64;

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

/** Two float64x2 rounded to one float32x4 (a's lanes first). */
// @ts-ignore: decorator
@inline function demote2(a: v128, b: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(a), f32x4.demote_f64x2_zero(b), 0, 1, 4, 5);
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

// @ts-ignore: decorator
@inline function cosine(dot: v128, n0: f64, n1: f64): f32 {
  const den = Math.sqrt(n0) * Math.sqrt(n1);
  let c = den > 0 ? sum2(dot) / den : 0.0;
  if (c > 1) c = 1;
  else if (c < -1) c = -1;
  return <f32>c;
}

/** core's adjacentCosine: keys float32 [H, L, D] at `k`, out float32 [H, L - 1] at `out`. */
export function adjacentCosine(k: usize, out: usize, H: i32, L: i32, D: i32): void {
  if (L === 0) return;
  const M = L - 1;
  const row = <usize>D << 2;
  const D4 = D & ~3;
  for (let h = 0; h < H; h++) {
    const base = k + <usize>h * <usize>L * row;
    const o = out + ((<usize>h * <usize>M) << 2);
    let n0: f64 = 0;
    for (let d = 0; d < D; d++) {
      const x = f(base + (<usize>d << 2));
      n0 += x * x;
    }
    let i = 0;
    // Four neighbour pairs (a, b), (b, c), (c, d), (d, e) at a time: eight independent accumulator chains
    // (each sum is a chain of D / 2 float64 adds in the oracle's order, so its latency is what limits).
    for (; i + 3 < M; i += 4) {
      const a = base + <usize>i * row;
      const b = a + row;
      const c = b + row;
      const e4 = c + row;
      const g = e4 + row;
      let dotA = f64x2.splat(0), sqA = f64x2.splat(0), dotB = f64x2.splat(0), sqB = f64x2.splat(0);
      let dotC = f64x2.splat(0), sqC = f64x2.splat(0), dotD = f64x2.splat(0), sqD = f64x2.splat(0);
      for (let d = 0; d < D4; d += 4) {
        const off = <usize>d << 2;
        const va = v128.load(a + off);
        const vb = v128.load(b + off);
        const vc = v128.load(c + off);
        const vd = v128.load(e4 + off);
        const ve = v128.load(g + off);
        const al = lo(va), ah = hi(va), bl = lo(vb), bh = hi(vb), cl = lo(vc), ch = hi(vc);
        const dl = lo(vd), dh = hi(vd), el = lo(ve), eh = hi(ve);
        dotA = f64x2.add(f64x2.add(dotA, f64x2.mul(al, bl)), f64x2.mul(ah, bh));
        sqA = f64x2.add(f64x2.add(sqA, f64x2.mul(bl, bl)), f64x2.mul(bh, bh));
        dotB = f64x2.add(f64x2.add(dotB, f64x2.mul(bl, cl)), f64x2.mul(bh, ch));
        sqB = f64x2.add(f64x2.add(sqB, f64x2.mul(cl, cl)), f64x2.mul(ch, ch));
        dotC = f64x2.add(f64x2.add(dotC, f64x2.mul(cl, dl)), f64x2.mul(ch, dh));
        sqC = f64x2.add(f64x2.add(sqC, f64x2.mul(dl, dl)), f64x2.mul(dh, dh));
        dotD = f64x2.add(f64x2.add(dotD, f64x2.mul(dl, el)), f64x2.mul(dh, eh));
        sqD = f64x2.add(f64x2.add(sqD, f64x2.mul(el, el)), f64x2.mul(eh, eh));
      }
      if (D4 < D) {
        dotA = tailDot(dotA, a, b, D4, D);
        sqA = tailDot(sqA, b, b, D4, D);
        dotB = tailDot(dotB, b, c, D4, D);
        sqB = tailDot(sqB, c, c, D4, D);
        dotC = tailDot(dotC, c, e4, D4, D);
        sqC = tailDot(sqC, e4, e4, D4, D);
        dotD = tailDot(dotD, e4, g, D4, D);
        sqD = tailDot(sqD, g, g, D4, D);
      }
      const n1 = sum2(sqA);
      const n2 = sum2(sqB);
      const n3 = sum2(sqC);
      const n4 = sum2(sqD);
      store<f32>(o + (<usize>i << 2), cosine(dotA, n0, n1));
      store<f32>(o + (<usize>(i + 1) << 2), cosine(dotB, n1, n2));
      store<f32>(o + (<usize>(i + 2) << 2), cosine(dotC, n2, n3));
      store<f32>(o + (<usize>(i + 3) << 2), cosine(dotD, n3, n4));
      n0 = n4;
    }
    for (; i < M; i++) {
      const a = base + <usize>i * row;
      const b = a + row;
      let dot = f64x2.splat(0);
      let sq = f64x2.splat(0);
      for (let d = 0; d < D4; d += 4) {
        const off = <usize>d << 2;
        const va = v128.load(a + off);
        const vb = v128.load(b + off);
        const al = lo(va), ah = hi(va), bl = lo(vb), bh = hi(vb);
        dot = f64x2.add(f64x2.add(dot, f64x2.mul(al, bl)), f64x2.mul(ah, bh));
        sq = f64x2.add(f64x2.add(sq, f64x2.mul(bl, bl)), f64x2.mul(bh, bh));
      }
      if (D4 < D) {
        dot = tailDot(dot, a, b, D4, D);
        sq = tailDot(sq, b, b, D4, D);
      }
      const n1 = sum2(sq);
      store<f32>(o + (<usize>i << 2), cosine(dot, n0, n1));
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
  memory.copy(ok + dst * row, lk + src * row, n * row);
  memory.copy(ov + dst * row, lv + src * row, n * row);
  memory.copy(op + (dst << 2), lp + (src << 2), n << 2);
  memory.copy(oc + (dst << 2), lc + (src << 2), n << 2);
  memory.copy(os + (dst << 2), ls + (src << 2), n << 2);
}

/**
 * core's gather: the layer (keys, values [H, L, D]; positions, counts, scores [H, L]) at int32 `idx`
 * [H, k] into the output layer of k slots per head. Runs of consecutive source slots move as one copy.
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

/** Squared distance of rows x and y (two lanes: even and odd elements, as the oracle's two accumulators). */
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
  // Run bounds (the oracle's runBounds).
  memory.fill(start, 0, (<usize>H * <usize>M) << 2);
  memory.fill(end, 0, (<usize>H * <usize>M) << 2);
  for (let h = 0; h < H; h++) {
    let prev = -1;
    for (let i = 0; i < L; i++) {
      const s = load<i32>(seg + ((<usize>h * <usize>L + <usize>i) << 2));
      if (s === -1) continue;
      const at = (<usize>h * <usize>M + <usize>s) << 2;
      if (s !== prev) {
        prev = s;
        store<i32>(start + at, i);
      }
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
      let total: i32 = 0;
      let score: f64 = 0;
      for (let i = st; i < en; i++) {
        const r = (rowBase + <usize>i) << 2;
        if (load<i32>(seg + r) !== o) continue;
        total += load<i32>(lc + r);
        score += <f64>load<f32>(ls + r);
      }
      const p = rowBase + <usize>load<i32>(piv + (ho << 2));
      mergeRun(lk, lv, lc, seg, rowBase, o, st, en, p, <f64>load<f32>(sig + (ho << 2)), byCount ? total : 0, ok + ho * row, ov + ho * row, D, rows, weights, valueWeights);
      store<i32>(op + (ho << 2), load<i32>(lp + (p << 2)));
      store<i32>(oc + (ho << 2), total);
      store<f32>(os + (ho << 2), <f32>score);
      o++;
    }
  }
}

/** The oracle's mergeRun: Gaussian weights of the run's members around pivot row `p`, then the weighted rows. */
function mergeRun(lk: usize, lv: usize, lc: usize, seg: usize, rowBase: usize, o: i32, st: i32, en: i32, p: usize, sigma: f64, total: i32, outK: usize, outV: usize, D: i32, rows: usize, weights: usize, valueWeights: usize): void {
  const row = <usize>D << 2;
  const D4 = D & ~3;
  const pk = lk + p * row;
  const twoSigma2 = 2 * sigma * sigma;
  // Members first, then their squared distances two at a time (independent chains), then the weights
  // in member order, as the oracle adds them.
  let m = 0;
  for (let i = st; i < en; i++) {
    const r = rowBase + <usize>i;
    if (load<i32>(seg + (r << 2)) !== o) continue;
    store<i32>(rows + (<usize>m << 2), <i32>r);
    m++;
  }
  let q = 0;
  for (; q + 3 < m; q += 4) {
    const x = lk + <usize>load<i32>(rows + (<usize>q << 2)) * row;
    const y = lk + <usize>load<i32>(rows + (<usize>(q + 1) << 2)) * row;
    const z = lk + <usize>load<i32>(rows + (<usize>(q + 2) << 2)) * row;
    const u = lk + <usize>load<i32>(rows + (<usize>(q + 3) << 2)) * row;
    let a = f64x2.splat(0), b = f64x2.splat(0), c = f64x2.splat(0), e = f64x2.splat(0);
    for (let d = 0; d < D4; d += 4) {
      const off = <usize>d << 2;
      const vp = v128.load(pk + off);
      const pl = lo(vp), ph = hi(vp);
      const vx = v128.load(x + off), vy = v128.load(y + off), vz = v128.load(z + off), vu = v128.load(u + off);
      const xl = f64x2.sub(pl, lo(vx)), xh = f64x2.sub(ph, hi(vx));
      const yl = f64x2.sub(pl, lo(vy)), yh = f64x2.sub(ph, hi(vy));
      const zl = f64x2.sub(pl, lo(vz)), zh = f64x2.sub(ph, hi(vz));
      const ul = f64x2.sub(pl, lo(vu)), uh = f64x2.sub(ph, hi(vu));
      a = f64x2.add(f64x2.add(a, f64x2.mul(xl, xl)), f64x2.mul(xh, xh));
      b = f64x2.add(f64x2.add(b, f64x2.mul(yl, yl)), f64x2.mul(yh, yh));
      c = f64x2.add(f64x2.add(c, f64x2.mul(zl, zl)), f64x2.mul(zh, zh));
      e = f64x2.add(f64x2.add(e, f64x2.mul(ul, ul)), f64x2.mul(uh, uh));
    }
    if (D4 < D) {
      a = tailDist(a, pk, x, D4, D);
      b = tailDist(b, pk, y, D4, D);
      c = tailDist(c, pk, z, D4, D);
      e = tailDist(e, pk, u, D4, D);
    }
    store<f64>(weights + (<usize>q << 3), sum2(a));
    store<f64>(weights + (<usize>(q + 1) << 3), sum2(b));
    store<f64>(weights + (<usize>(q + 2) << 3), sum2(c));
    store<f64>(weights + (<usize>(q + 3) << 3), sum2(e));
  }
  for (; q + 1 < m; q += 2) {
    const x = lk + <usize>load<i32>(rows + (<usize>q << 2)) * row;
    const y = lk + <usize>load<i32>(rows + (<usize>(q + 1) << 2)) * row;
    let a = f64x2.splat(0);
    let b = f64x2.splat(0);
    for (let d = 0; d < D4; d += 4) {
      const off = <usize>d << 2;
      const vp = v128.load(pk + off);
      const vx = v128.load(x + off);
      const vy = v128.load(y + off);
      const pl = lo(vp), ph = hi(vp);
      const xl = f64x2.sub(pl, lo(vx)), xh = f64x2.sub(ph, hi(vx));
      const yl = f64x2.sub(pl, lo(vy)), yh = f64x2.sub(ph, hi(vy));
      a = f64x2.add(f64x2.add(a, f64x2.mul(xl, xl)), f64x2.mul(xh, xh));
      b = f64x2.add(f64x2.add(b, f64x2.mul(yl, yl)), f64x2.mul(yh, yh));
    }
    if (D4 < D) {
      a = tailDist(a, pk, x, D4, D);
      b = tailDist(b, pk, y, D4, D);
    }
    store<f64>(weights + (<usize>q << 3), sum2(a));
    store<f64>(weights + (<usize>(q + 1) << 3), sum2(b));
  }
  if (q < m) store<f64>(weights + (<usize>q << 3), distance(pk, lk + <usize>load<i32>(rows + (<usize>q << 2)) * row, D, D4));
  let n = 0;
  let sumG: f64 = 0;
  for (let j = 0; j < m; j++) {
    const d2 = load<f64>(weights + (<usize>j << 3));
    // d2 = 0 short-circuits so the pivot weighs exactly 1 even when 2 sigma^2 underflows to 0.
    const g = d2 === 0 ? 1.0 : jsExp(-d2 / twoSigma2);
    if (g === 0) continue;
    const r = load<i32>(rows + (<usize>j << 2));
    sumG += g;
    store<i32>(rows + (<usize>n << 2), <i32>(<usize>r * row));
    store<f64>(weights + (<usize>n << 3), g);
    store<f64>(valueWeights + (<usize>n << 3), total > 0 ? g / <f64>load<i32>(lc + (<usize>r << 2)) : g);
    n++;
  }
  const kScale = 1 / sumG;
  const vScale = total > 0 ? <f64>total / sumG : kScale;
  if (n === 2) {
    const r0 = <usize>load<i32>(rows);
    const r1 = <usize>load<i32>(rows, 4);
    const w0 = f64x2.splat(load<f64>(weights)), w1 = f64x2.splat(load<f64>(weights, 8));
    const v0 = f64x2.splat(load<f64>(valueWeights)), v1 = f64x2.splat(load<f64>(valueWeights, 8));
    const ks = f64x2.splat(kScale), vs = f64x2.splat(vScale);
    for (let d = 0; d < D4; d += 4) {
      const off = <usize>d << 2;
      const k0 = v128.load(lk + r0 + off), k1 = v128.load(lk + r1 + off);
      const x0 = v128.load(lv + r0 + off), x1 = v128.load(lv + r1 + off);
      const kl = f64x2.mul(f64x2.add(f64x2.mul(w0, lo(k0)), f64x2.mul(w1, lo(k1))), ks);
      const kh = f64x2.mul(f64x2.add(f64x2.mul(w0, hi(k0)), f64x2.mul(w1, hi(k1))), ks);
      v128.store(outK + off, demote2(kl, kh));
      const vl = f64x2.mul(f64x2.add(f64x2.mul(v0, lo(x0)), f64x2.mul(v1, lo(x1))), vs);
      const vh = f64x2.mul(f64x2.add(f64x2.mul(v0, hi(x0)), f64x2.mul(v1, hi(x1))), vs);
      v128.store(outV + off, demote2(vl, vh));
    }
    const sw0 = load<f64>(weights), sw1 = load<f64>(weights, 8);
    const sv0 = load<f64>(valueWeights), sv1 = load<f64>(valueWeights, 8);
    for (let d = D4; d < D; d++) {
      const off = <usize>d << 2;
      store<f32>(outK + off, <f32>((sw0 * f(lk + r0 + off) + sw1 * f(lk + r1 + off)) * kScale));
      store<f32>(outV + off, <f32>((sv0 * f(lv + r0 + off) + sv1 * f(lv + r1 + off)) * vScale));
    }
    return;
  }
  if (n === 3) {
    const r0 = <usize>load<i32>(rows);
    const r1 = <usize>load<i32>(rows, 4);
    const r2 = <usize>load<i32>(rows, 8);
    const w0 = f64x2.splat(load<f64>(weights)), w1 = f64x2.splat(load<f64>(weights, 8)), w2 = f64x2.splat(load<f64>(weights, 16));
    const v0 = f64x2.splat(load<f64>(valueWeights)), v1 = f64x2.splat(load<f64>(valueWeights, 8)), v2 = f64x2.splat(load<f64>(valueWeights, 16));
    const ks = f64x2.splat(kScale), vs = f64x2.splat(vScale);
    for (let d = 0; d < D4; d += 4) {
      const off = <usize>d << 2;
      const k0 = v128.load(lk + r0 + off), k1 = v128.load(lk + r1 + off), k2 = v128.load(lk + r2 + off);
      const x0 = v128.load(lv + r0 + off), x1 = v128.load(lv + r1 + off), x2 = v128.load(lv + r2 + off);
      const kl = f64x2.mul(f64x2.add(f64x2.add(f64x2.mul(w0, lo(k0)), f64x2.mul(w1, lo(k1))), f64x2.mul(w2, lo(k2))), ks);
      const kh = f64x2.mul(f64x2.add(f64x2.add(f64x2.mul(w0, hi(k0)), f64x2.mul(w1, hi(k1))), f64x2.mul(w2, hi(k2))), ks);
      v128.store(outK + off, demote2(kl, kh));
      const vl = f64x2.mul(f64x2.add(f64x2.add(f64x2.mul(v0, lo(x0)), f64x2.mul(v1, lo(x1))), f64x2.mul(v2, lo(x2))), vs);
      const vh = f64x2.mul(f64x2.add(f64x2.add(f64x2.mul(v0, hi(x0)), f64x2.mul(v1, hi(x1))), f64x2.mul(v2, hi(x2))), vs);
      v128.store(outV + off, demote2(vl, vh));
    }
    const sw0 = load<f64>(weights), sw1 = load<f64>(weights, 8), sw2 = load<f64>(weights, 16);
    const sv0 = load<f64>(valueWeights), sv1 = load<f64>(valueWeights, 8), sv2 = load<f64>(valueWeights, 16);
    for (let d = D4; d < D; d++) {
      const off = <usize>d << 2;
      store<f32>(outK + off, <f32>((sw0 * f(lk + r0 + off) + sw1 * f(lk + r1 + off) + sw2 * f(lk + r2 + off)) * kScale));
      store<f32>(outV + off, <f32>((sv0 * f(lv + r0 + off) + sv1 * f(lv + r1 + off) + sv2 * f(lv + r2 + off)) * vScale));
    }
    return;
  }
  const ks = f64x2.splat(kScale), vs = f64x2.splat(vScale);
  for (let d = 0; d < D4; d += 4) {
    const off = <usize>d << 2;
    let kl = f64x2.splat(0), kh = f64x2.splat(0), vl = f64x2.splat(0), vh = f64x2.splat(0);
    for (let j = 0; j < n; j++) {
      const r = <usize>load<i32>(rows + (<usize>j << 2));
      const w = f64x2.splat(load<f64>(weights + (<usize>j << 3)));
      const v = f64x2.splat(load<f64>(valueWeights + (<usize>j << 3)));
      const k4 = v128.load(lk + r + off);
      const x4 = v128.load(lv + r + off);
      kl = f64x2.add(kl, f64x2.mul(w, lo(k4)));
      kh = f64x2.add(kh, f64x2.mul(w, hi(k4)));
      vl = f64x2.add(vl, f64x2.mul(v, lo(x4)));
      vh = f64x2.add(vh, f64x2.mul(v, hi(x4)));
    }
    v128.store(outK + off, demote2(f64x2.mul(kl, ks), f64x2.mul(kh, ks)));
    v128.store(outV + off, demote2(f64x2.mul(vl, vs), f64x2.mul(vh, vs)));
  }
  for (let d = D4; d < D; d++) {
    const off = <usize>d << 2;
    let k: f64 = 0;
    let v: f64 = 0;
    for (let j = 0; j < n; j++) {
      const r = <usize>load<i32>(rows + (<usize>j << 2));
      k += load<f64>(weights + (<usize>j << 3)) * f(lk + r + off);
      v += load<f64>(valueWeights + (<usize>j << 3)) * f(lv + r + off);
    }
    store<f32>(outK + off, <f32>(k * kScale));
    store<f32>(outV + off, <f32>(v * vScale));
  }
}

/** `acc[0 .. D) += s * x[0 .. D)` (float64 acc, float32 x). */
function addScaled(acc: usize, x: usize, s: f64, D: i32): void {
  const D4 = D & ~3;
  const sv = f64x2.splat(s);
  for (let d = 0; d < D4; d += 4) {
    const v = v128.load(x + (<usize>d << 2));
    const a = acc + (<usize>d << 3);
    v128.store(a, f64x2.add(v128.load(a), f64x2.mul(sv, lo(v))));
    v128.store(a, f64x2.add(v128.load(a, 16), f64x2.mul(sv, hi(v))), 16);
  }
  for (let d = D4; d < D; d++) {
    const a = acc + (<usize>d << 3);
    store<f64>(a, load<f64>(a) + s * f(x + (<usize>d << 2)));
  }
}

/** `acc[0 .. n) += y[0 .. n)` (float64). */
function addRow(acc: usize, y: usize, n: i32): void {
  const n2 = n & ~1;
  for (let i = 0; i < n2; i += 2) {
    const o = <usize>i << 3;
    v128.store(acc + o, f64x2.add(v128.load(acc + o), v128.load(y + o)));
  }
  if (n2 < n) {
    const o = <usize>n2 << 3;
    store<f64>(acc + o, load<f64>(acc + o) + load<f64>(y + o));
  }
}

/**
 * core's mergeIntoNeighbours (CaM) after validation: gather the kept slots (`keep` int32 [H, K]) into the
 * output layer, then add each source's gated value to its window of kept neighbours with the oracle's
 * block sums. Plan: `source`, `tStart`, `tCount` int32 [H, S], `gate` float32 [H, S]. Scratch: `order`
 * int32 [S], `firstOf` and `fill` int32 [K + 1], `forward` and `backward` float64 [K * D].
 */
export function mergeIntoNeighbours(lk: usize, lv: usize, lp: usize, lc: usize, ls: usize, keep: usize, source: usize, tStart: usize, tCount: usize, gate: usize, H: i32, L: i32, D: i32, K: i32, S: i32, ok: usize, ov: usize, op: usize, oc: usize, os: usize, order: usize, firstOf: usize, fill: usize, forward: usize, backward: usize): void {
  gather(lk, lv, lp, lc, ls, keep, H, L, D, K, ok, ov, op, oc, os);
  const row = <usize>D << 2;
  for (let h = 0; h < H; h++) {
    const s0 = h * S;
    let B = 0;
    for (let s = s0; s < s0 + S; s++) {
      const c = load<i32>(tCount + (<usize>s << 2));
      if (load<f32>(gate + (<usize>s << 2)) !== 0 && c > B) B = c;
    }
    if (B === 0) continue;
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
    for (let x = 0; x < blocks; x++) {
      const b0 = x * B;
      const b1 = min(K, b0 + B);
      const width = (b1 - b0) * D;
      memory.fill(forward, 0, <usize>width << 3);
      memory.fill(backward, 0, <usize>width << 3);
      let touched = false;
      if (x > 0) {
        for (let q = load<i32>(firstOf + (<usize>(x - 1) << 2)); q < load<i32>(firstOf + (<usize>x << 2)); q++) {
          const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
          const c = load<i32>(tCount + s);
          const end = load<i32>(tStart + s) + c;
          if (end <= b0) continue;
          const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
          addScaled(backward + ((<usize>(end - 1 - b0) * <usize>D) << 3), src, <f64>load<f32>(gate + s) / <f64>c, D);
          touched = true;
        }
      }
      let inside = false;
      for (let q = load<i32>(firstOf + (<usize>x << 2)); q < load<i32>(firstOf + (<usize>(x + 1) << 2)); q++) {
        const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
        const c = load<i32>(tCount + s);
        const a = load<i32>(tStart + s);
        if (a + c < b1) {
          inside = true;
          continue;
        }
        const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
        addScaled(forward + ((<usize>(a - b0) * <usize>D) << 3), src, <f64>load<f32>(gate + s) / <f64>c, D);
        touched = true;
      }
      if (!touched && !inside) continue;
      const rowBytes = <usize>D << 3;
      for (let t = 1; t < b1 - b0; t++) addRow(forward + <usize>t * rowBytes, forward + <usize>(t - 1) * rowBytes, D);
      for (let t = b1 - b0 - 2; t >= 0; t--) addRow(backward + <usize>t * rowBytes, backward + <usize>(t + 1) * rowBytes, D);
      if (inside) {
        for (let q = load<i32>(firstOf + (<usize>x << 2)); q < load<i32>(firstOf + (<usize>(x + 1) << 2)); q++) {
          const s = <usize>load<i32>(order + (<usize>q << 2)) << 2;
          const a = load<i32>(tStart + s);
          const c = load<i32>(tCount + s);
          if (a + c >= b1) continue;
          const src = lv + (<usize>h * <usize>L + <usize>load<i32>(source + s)) * row;
          const g = <f64>load<f32>(gate + s) / <f64>c;
          for (let t = a; t < a + c; t++) addScaled(forward + ((<usize>(t - b0) * <usize>D) << 3), src, g, D);
        }
      }
      // outV = (outV + forward) + backward, rounded to float32 once.
      const at = ov + ((<usize>(h * K + b0) * <usize>D) << 2);
      const w4 = width & ~3;
      for (let i = 0; i < w4; i += 4) {
        const v = v128.load(at + (<usize>i << 2));
        const fo = forward + (<usize>i << 3);
        const ba = backward + (<usize>i << 3);
        const l = f64x2.add(f64x2.add(lo(v), v128.load(fo)), v128.load(ba));
        const h2 = f64x2.add(f64x2.add(hi(v), v128.load(fo, 16)), v128.load(ba, 16));
        v128.store(at + (<usize>i << 2), demote2(l, h2));
      }
      for (let i = w4; i < width; i++) {
        const p = at + (<usize>i << 2);
        store<f32>(p, <f32>(<f64>load<f32>(p) + load<f64>(forward + (<usize>i << 3)) + load<f64>(backward + (<usize>i << 3))));
      }
    }
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
    for (let i = 0; i < L; i++) {
      const s = load<i32>(seg + ((base + <usize>i) << 2));
      if (s === -1) continue;
      if (s !== prev) {
        if (s !== prev + 1 || s >= M) return 0;
        prev = s;
      }
      if (byCount && load<i32>(counts + ((base + <usize>i) << 2)) < 1) return 0;
    }
    if (prev !== M - 1) return 0;
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
