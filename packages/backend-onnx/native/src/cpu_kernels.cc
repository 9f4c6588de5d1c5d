// CPU implementations of the ai.kvfold ops. Accumulations are in double, like the reference backend's
// JavaScript numbers, so results agree with it to float32 rounding; adjacentCosine sums the reference's
// float32 lanes, bit for bit.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "kvfold_kernels.h"

namespace kvfold {
namespace {

// Query-key products, observe's only compute-bound loop, as a small GEMM micro-kernel: keys transposed in
// blocks of 16 slots ([L/16][D][16]) so 16 consecutive slots share each query element (no horizontal sums), float products summed over
// 16 dimensions at a time, then added in double (float rounding stays ~1e-7 relative). One clone per ISA,
// picked at load time; the inner loop is element-wise, so no -ffast-math is needed to vectorise it.
typedef float F16 __attribute__((vector_size(64)));  // GCC vector extension: 16 floats, split per ISA

__attribute__((target_clones("avx512f", "avx2", "default"))) void row_logits(const float* q, const float* kt, int64_t Lp, int64_t D, double* out) {
  for (int64_t l0 = 0; l0 < Lp; l0 += 16) {
    double accd[16] = {0};
    for (int64_t d0 = 0; d0 < D; d0 += 16) {
      F16 acc = {};
      const int64_t d1 = std::min(D, d0 + 16);
      for (int64_t d = d0; d < d1; ++d) {
        F16 k;
        std::memcpy(&k, kt + (l0 * D) + d * 16, sizeof k);
        acc += q[d] * k;
      }
      for (int j = 0; j < 16; ++j) accd[j] += acc[j];
    }
    for (int j = 0; j < 16; ++j) out[l0 + j] = accd[j];
  }
}

inline double dist2(const float* a, const float* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const double x0 = static_cast<double>(a[i]) - b[i], x1 = static_cast<double>(a[i + 1]) - b[i + 1];
    const double x2 = static_cast<double>(a[i + 2]) - b[i + 2], x3 = static_cast<double>(a[i + 3]) - b[i + 3];
    s0 += x0 * x0;
    s1 += x1 * x1;
    s2 += x2 * x2;
    s3 += x3 * x3;
  }
  for (; i < n; ++i) {
    const double x = static_cast<double>(a[i]) - b[i];
    s0 += x * x;
  }
  return (s0 + s1) + (s2 + s3);
}

typedef float F8 __attribute__((vector_size(32)));  // eight float32 lanes: one AVX register, two SSE ones

/**
 * A squared distance summed in eight float32 lanes (the merge kernels' clones vectorise it), checked as the
 * reference's wasm kernel checks its float32 lanes: below 2^-100 (float32 squares may have underflowed,
 * turning a tiny distance into 0 and a vanishing weight into 1) or not finite, it is recomputed in double.
 */
inline double dist2_lanes(const float* a, const float* b, int64_t D) {
  F8 acc = {};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    F8 x, y;
    std::memcpy(&x, a + d, sizeof x);
    std::memcpy(&y, b + d, sizeof y);
    const F8 t = x - y;
    acc += t * t;
  }
  double s = 0;
  for (; d < D; ++d) {
    const float t = a[d] - b[d];
    s += static_cast<double>(t * t);
  }
  for (int j = 0; j < 8; ++j) s += acc[j];
  // The pivot's own distance is exactly 0 in both precisions.
  return (s >= 0x1p-100 && s < std::numeric_limits<double>::infinity()) || (a == b && s == 0) ? s : dist2(a, b, D);
}

/**
 * `n` floats from `src` to `dst` with non-temporal stores (16 bytes at a time from the first 16-byte boundary
 * of `dst`; consecutive rows fill whole lines in the write-combining buffers), ordinary stores where the
 * target has no SSE2. The kernel calls finish_stream before returning.
 */
inline void stream_floats(float* dst, const float* src, int64_t n) {
#if defined(__SSE2__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
#endif
}

/** `n` floats of output rows: streamed when the output streams (LayerOut::stream), copied otherwise. */
inline void put_rows(const LayerOut& out, float* dst, const float* src, int64_t n) {
  if (out.stream) stream_floats(dst, src, n);
  else std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

/** Orders a kernel's non-temporal stores before anything after it (they are weakly ordered otherwise). */
inline void finish_stream(const LayerOut& out) {
#if defined(__SSE2__)
  if (out.stream) _mm_sfence();
#else
  (void)out;
#endif
}

/** Copy `n` consecutive slots of every field from slot row `src` of `in` to slot row `dst` of `out` (rows = h * slots + slot). */
inline void copy_slots(const LayerIn& in, int64_t src, const LayerOut& out, int64_t dst, int64_t n) {
  const int64_t D = in.D;
  put_rows(out, out.keys + dst * D, in.keys + src * D, n * D);
  put_rows(out, out.values + dst * D, in.values + src * D, n * D);
  std::memcpy(out.positions + dst, in.positions + src, static_cast<size_t>(n) * sizeof(int32_t));
  std::memcpy(out.counts + dst, in.counts + src, static_cast<size_t>(n) * sizeof(int32_t));
  std::memcpy(out.scores + dst, in.scores + src, static_cast<size_t>(n) * sizeof(float));
}

/** Slot `i` (row of `in`) to slot `j` (row of `out`): key, scalars and value together. */
inline void copy_slot(const LayerIn& in, int64_t i, const LayerOut& out, int64_t j) {
  const int64_t D = in.D;
  put_rows(out, out.keys + j * D, in.keys + i * D, D);
  out.positions[j] = in.positions[i];
  out.counts[j] = in.counts[i];
  out.scores[j] = in.scores[i];
  put_rows(out, out.values + j * D, in.values + i * D, D);
}

/**
 * gather_slots_cpu for output slots `[j0, j1)` of head `h` (`K` per head): slot by slot, each slot's key
 * and value rows side by side. The two streams of rows then advance together, which measured faster than
 * one memcpy of a run's keys and then one of its values (as in the wasm kernels' gather).
 */
void gather_slots(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out, int64_t h, int64_t j0, int64_t j1) {
  const int64_t src = h * in.L, dst = h * K;
  const int32_t* idx = index + h * K;
  for (int64_t j = j0; j < j1; ++j) copy_slot(in, src + idx[j], out, dst + j);
}

}  // namespace

namespace {

typedef float F4 __attribute__((vector_size(16)));  // GCC vector extension: four float32 lanes

/** Core's ADJACENT_COSINE_LANE_RANGE: squared norms in [2^-60, 2^100] take the float32 lane sums. */
constexpr double kLaneLo = 0x1p-60, kLaneHi = 0x1p100;

inline bool in_lanes(double n) { return n >= kLaneLo && n <= kLaneHi; }

/** Core's clampedCosine (a NaN stays NaN, as in the TypeScript). */
inline float clamped_cosine(double dot, double na, double nb) {
  const double den = std::sqrt(na) * std::sqrt(nb);
  const double c = den > 0 ? dot / den : 0.0;
  return static_cast<float>(c > 1 ? 1.0 : c < -1 ? -1.0 : c);
}

/**
 * Core's laneSums: a·b and b·b in four float32 lanes (element d in lane d mod 4, in index order), each
 * lane pair summed in double. Element-wise vector adds, so the lanes keep the oracle's order exactly
 * (the build passes -ffp-contract=off: no fused multiply-add).
 */
inline void lane_sums(const float* a, const float* b, int64_t D, double& dot, double& sq) {
  F4 p = {}, q = {};
  int64_t d = 0;
  for (; d + 4 <= D; d += 4) {
    F4 x, y;
    std::memcpy(&x, a + d, sizeof x);
    std::memcpy(&y, b + d, sizeof y);
    p += x * y;
    q += y * y;
  }
  for (int j = 0; d + j < D; ++j) {
    const float y = b[d + j];
    p[j] += a[d + j] * y;
    q[j] += y * y;
  }
  dot = (static_cast<double>(p[0]) + p[1]) + (static_cast<double>(p[2]) + p[3]);
  sq = (static_cast<double>(q[0]) + q[1]) + (static_cast<double>(q[2]) + q[3]);
}

/** Core's cosine64: double sums, even and odd elements in two accumulators each. */
inline float cosine64(const float* a, const float* b, int64_t D) {
  double dot0 = 0, dot1 = 0, na0 = 0, na1 = 0, nb0 = 0, nb1 = 0;
  int64_t d = 0;
  for (; d + 1 < D; d += 2) {
    const double x0 = a[d], x1 = a[d + 1], y0 = b[d], y1 = b[d + 1];
    dot0 += x0 * y0;
    dot1 += x1 * y1;
    na0 += x0 * x0;
    na1 += x1 * x1;
    nb0 += y0 * y0;
    nb1 += y1 * y1;
  }
  if (d < D) {
    const double x = a[d], y = b[d];
    dot0 += x * y;
    na0 += x * x;
    nb0 += y * y;
  }
  return clamped_cosine(dot0 + dot1, na0 + na1, nb0 + nb1);
}

}  // namespace

// Core's adjacentCosine bit for bit: float32 lane sums (double outside the lane range), one neighbour pair
// at a time in address order, the right row's squared norm carried to the next pair.
void adjacent_cosine_cpu(const float* keys, float* out, int64_t H, int64_t L, int64_t D) {
  const int64_t M = L > 0 ? L - 1 : 0;
  for (int64_t h = 0; h < H && L > 0; ++h) {
    const float* k = keys + h * L * D;
    double dot, n0, n1;
    lane_sums(k, k, D, dot, n0);
    for (int64_t i = 0; i < M; ++i) {
      const float* a = k + i * D;
      lane_sums(a, a + D, D, dot, n1);
      out[h * M + i] = in_lanes(n0) && in_lanes(n1) ? clamped_cosine(dot, n0, n1) : cosine64(a, a + D, D);
      n0 = n1;
    }
  }
}

namespace {

/**
 * A float32 as a uint32 rank key whose unsigned order is the ranking's: NaN as -Infinity (lowest), -0 as
 * 0 (equal scores tie), negative values below positive ones (core's topK rankKey).
 */
inline uint32_t rank_key(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  if ((b & 0x7fffffffu) > 0x7f800000u) b = 0xff800000u;
  else if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}

/**
 * Digit `b` of `hist` holding the `need`-th best key counting down from the top bin; `need` becomes the
 * winners still to place inside that bin.
 */
inline uint32_t threshold_bin(const int32_t* hist, uint32_t top, int64_t& need) {
  uint32_t b = top;
  while (hist[b] < need) need -= hist[b--];
  return b;
}

}  // namespace

// Core's topK radix selection, O(m) per head instead of nth_element + sort: order-preserving uint32 keys,
// the k-th best key found digit by digit (11, 11 and 10 bits; the two lower digits counted over the keys of
// the threshold's top bin only, compacted after the first pass), then one pass in slot order keeps every
// slot above the threshold and the first `need` equal to it (ties to the lower slot), already ascending.
// Written for the CPU the way the wasm kernel is: four histograms for the first digit (scores of a narrow
// range share a bin, and one histogram serialises every increment through memory), and branch-free
// compaction in the candidate and output passes (a random half of the slots wins, which mispredicts every
// other slot when branched on): 5-6 ms became ~2 ms per call at 32 x 16k on one thread.
void select_topk_cpu(const float* scores, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from, int64_t to) {
  const int64_t m = to - from;
  // Per thread, grown once: every head of every call on this pool thread reuses them (no zeroing).
  thread_local std::vector<uint32_t> key, cand;
  if (key.size() < static_cast<size_t>(m)) {
    key.resize(static_cast<size_t>(m));
    cand.resize(static_cast<size_t>(m));
  }
  int32_t hist[4][2048];
  for (int64_t h = 0; h < H; ++h) {
    const float* row = scores + h * L + from;
    int32_t* out = index + h * k;
    if (k == 0) continue;
    if (k == m) {
      for (int64_t j = 0; j < k; ++j) out[j] = static_cast<int32_t>(from + j);
      continue;
    }
    std::memset(hist, 0, sizeof hist);
    const int64_t m4 = m & ~int64_t{3};
    int64_t i = 0;
    for (; i < m4; i += 4) {
      for (int c = 0; c < 4; ++c) {
        const uint32_t x = rank_key(row[i + c]);
        key[i + c] = x;
        ++hist[c][x >> 21];
      }
    }
    for (; i < m; ++i) {
      const uint32_t x = rank_key(row[i]);
      key[i] = x;
      ++hist[0][x >> 21];
    }
    for (int b = 0; b < 2048; ++b) hist[0][b] += hist[1][b] + hist[2][b] + hist[3][b];
    int64_t need = k;
    const uint32_t top = threshold_bin(hist[0], 2047, need);
    int64_t c = 0;
    for (i = 0; i < m; ++i) {
      cand[c] = key[i];
      c += (key[i] >> 21) == top;
    }
    uint32_t prefix = top << 21;
    std::fill(hist[0], hist[0] + 2048, 0);
    for (i = 0; i < c; ++i) ++hist[0][(cand[i] >> 10) & 2047];
    const uint32_t mid = threshold_bin(hist[0], 2047, need);
    prefix |= mid << 10;
    std::fill(hist[0], hist[0] + 1024, 0);
    for (i = 0; i < c; ++i)
      if ((cand[i] >> 10) == (prefix >> 10)) ++hist[0][cand[i] & 1023];
    prefix |= threshold_bin(hist[0], 1023, need);
    // Every slot is written at out[j] while j < k and kept by advancing j: no branch on the key.
    int64_t ties = need, j = 0;
    for (i = 0; i < m && j < k; ++i) {
      const uint32_t x = key[i];
      const int64_t eq = x == prefix;
      const int64_t tie = eq & (ties > 0);
      ties -= tie;
      out[j] = static_cast<int32_t>(from + i);
      j += (x > prefix) | tie;
    }
  }
}

void accumulate_select_cpu(const float* scores, const float* attention, float* acc, int32_t* index, int64_t H, int64_t L, int64_t k,
                           int64_t from, int64_t to) {
  for (int64_t i = 0; i < H * L; ++i) acc[i] = scores[i] + attention[i];
  select_topk_cpu(acc, index, H, L, k, from, to);
}

namespace {

/**
 * The size of the largest cache the kernel's thread shares (the highest level listed for cpu0 in Linux's
 * sysfs), 32 MiB where it is not listed. Not sysconf's LEVEL3_CACHE_SIZE: on AMD EPYC virtual machines
 * glibc reports the whole package's L3 there (320 MiB on the machine this was written on, whose cores
 * each see 32 MiB).
 */
int64_t last_level_cache_bytes() {
  int64_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_file(dir + "level"), size_file(dir + "size");
    int level = 0;
    std::string size;
    if (!(level_file >> level) || !(size_file >> size) || size.empty()) continue;
    // "32768K" (sysfs sizes are in K; M accepted too).
    char* end = nullptr;
    const long long n = std::strtoll(size.c_str(), &end, 10);
    const int64_t bytes = n * (*end == 'M' ? (int64_t{1} << 20) : *end == 'K' ? 1024 : 1);
    if (n > 0 && level > best_level) {
      best_level = level;
      best = bytes;
    }
  }
  return best > 0 ? best : int64_t{32} << 20;
}

std::atomic<int64_t>& stream_min() {
  static std::atomic<int64_t> v{last_level_cache_bytes()};
  return v;
}

}  // namespace

bool streams_output(int64_t bytes) { return bytes >= stream_min().load(std::memory_order_relaxed); }

int64_t streaming_min_bytes(int64_t bytes) {
  return bytes >= 0 ? stream_min().exchange(bytes, std::memory_order_relaxed) : stream_min().load(std::memory_order_relaxed);
}

void link_segments_cpu(const int32_t* links, const float* scores, int32_t* segment, int32_t* pivot, int64_t H, int64_t L, int64_t C) {
  const int64_t M = L - C;
  for (int64_t h = 0; h < H; ++h) {
    const int32_t* lk = links + h * C;
    const float* sc = scores + h * L;
    int32_t* sg = segment + h * L;
    int32_t* pv = pivot + h * M;
    // The segment row first holds the join flags (independent stores); the walk then has no data-dependent
    // branch (run boundaries fall wherever the links do): the running best moves by selects, and the run's
    // pivot entry is rewritten at every slot so that it holds the best once the run ends.
    std::fill(sg, sg + L, 0);
    for (int64_t j = 0; j < C; ++j) sg[lk[j] + 1] = 1;
    int32_t id = -1, p = 0;
    float best = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < L; ++i) {
      const int32_t fresh = sg[i] ^ 1;
      const float raw = sc[i];
      const float v = raw == raw ? raw : -std::numeric_limits<float>::infinity();
      id += fresh;
      const bool better = fresh != 0 || v > best;
      best = better ? v : best;
      p = better ? static_cast<int32_t>(i) : p;
      sg[i] = id;
      pv[id] = p;
    }
  }
}

void gather_slots_cpu(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out) {
  for (int64_t h = 0; h < in.H; ++h) gather_slots(in, index, K, out, h, 0, K);
  finish_stream(out);
}

// The merge kernels in one clone per ISA (AVX-512 / AVX2 / baseline, picked at load time): their loops are
// element-wise (and mergeSegments's distance lanes are eight wide in every clone), so wider vectors give the
// same bits, and fp-contract=off keeps the compiler from fusing multiply-adds (one rounding instead of two).
// Both merges sum in float32 like the reference's wasm kernels, within the project's 1e-5 of the reference's
// double sums.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

namespace {

// The merges' sums are float32 (Acc), like the reference's wasm kernels': the outputs are float32, and
// float sums within the project's 1e-5 of the reference's double ones (the parity tests measure it) take half
// the vector work of double ones and half the scratch.
using Acc = float;

/** `acc[0 .. D) = f * v[0 .. D)`: a sum's first term, stored so the row is never cleared. */
inline void store_scaled(Acc* acc, const float* v, Acc f, int64_t D) {
  for (int64_t d = 0; d < D; ++d) acc[d] = f * v[d];
}

/** `acc[0 .. D) += f * v[0 .. D)`. */
inline void add_scaled(Acc* acc, const float* v, Acc f, int64_t D) {
  for (int64_t d = 0; d < D; ++d) acc[d] += f * v[d];
}

/** `out = sum_m (weight[m] * scale) * src[row[m]]` over `n >= 1` rows of D, member by member in address order. */
inline void weighted_rows(Acc* out, const float* src, const int64_t* row, const double* weight, double scale, int64_t n, int64_t D) {
  store_scaled(out, src + row[0] * D, static_cast<Acc>(weight[0] * scale), D);
  for (int64_t m = 1; m < n; ++m) add_scaled(out, src + row[m] * D, static_cast<Acc>(weight[m] * scale), D);
}

}  // namespace

__attribute__((target_clones("avx512f", "avx2", "default")))
void merge_segments_cpu(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale,
                        const LayerOut& out) {
  const int64_t H = in.H, L = in.L, D = in.D;
  std::vector<int64_t> start(static_cast<size_t>(O)), end(static_cast<size_t>(O));
  std::vector<int64_t> rows(static_cast<size_t>(L));
  std::vector<double> w(static_cast<size_t>(L)), wv(static_cast<size_t>(L));
  // A streamed output's merged row is summed here (in L1) and then streamed out in one pass.
  std::vector<Acc> row(out.stream ? static_cast<size_t>(D) : 0);
  for (int64_t h = 0; h < H; ++h) {
    const int32_t* seg = segment + h * L;
    const float* keys = in.keys + h * L * D;
    const float* values = in.values + h * L * D;
    // Segment ids are non-decreasing over the kept slots; a segment may skip dropped (-1) slots, so its
    // span runs from its first to its last member.
    for (int64_t i = 0, prev = -1; i < L; ++i) {
      const int32_t o = seg[i];
      if (o < 0) continue;
      if (o != prev) start[o] = i;
      prev = o;
      end[o] = i + 1;
    }
    for (int64_t o = 0; o < O;) {
      const int64_t ho = h * O + o;
      if (end[o] - start[o] == 1) {
        // A run of one-slot segments is the input rows unchanged (weight 1; in count mode the count times
        // the value over the same count rounds back to the value): one memcpy for the whole run.
        int64_t n = 1;
        while (o + n < O && end[o + n] - start[o + n] == 1 && start[o + n] == start[o] + n) ++n;
        copy_slots(in, h * L + start[o], out, ho, n);
        o += n;
        continue;
      }
      const int64_t p = pivot[ho];
      const double sg = sigma[ho];
      const double two_sigma2 = 2 * sg * sg;
      double total = 0, score = 0, gsum = 0;
      int64_t n = 0;
      for (int64_t i = start[o]; i < end[o]; ++i) {
        if (seg[i] != o) continue;
        total += in.counts[h * L + i];
        score += in.scores[h * L + i];
      }
      // Members one at a time in address order (the wasm kernel's measured order): distances first, then
      // the key rows (in L1 by then) and the value rows, each into its output row, in float32 lanes with
      // weights already divided by their sum (within the project's 1e-5 of the reference, like the wasm kernel).
      for (int64_t i = start[o]; i < end[o]; ++i) {
        if (seg[i] != o) continue;
        const double d2 = dist2_lanes(keys + p * D, keys + i * D, D);
        const double g = d2 == 0 ? 1.0 : std::exp(-d2 / two_sigma2);  // the pivot weighs exactly 1
        if (g == 0) continue;
        gsum += g;
        rows[n] = i;
        w[n] = g;
        wv[n] = value_scale == 1 ? g / in.counts[h * L + i] : g;
        ++n;
      }
      const double ks = 1 / gsum;
      const double vs = value_scale == 1 ? total / gsum : ks;
      // Keys first: their rows are in L1 by now.
      // Straight into the output row, or into `row` and then streamed.
      Acc* k_row = out.stream ? row.data() : out.keys + ho * D;
      weighted_rows(k_row, keys, rows.data(), w.data(), ks, n, D);
      if (out.stream) stream_floats(out.keys + ho * D, k_row, D);
      Acc* v_row = out.stream ? row.data() : out.values + ho * D;
      weighted_rows(v_row, values, rows.data(), wv.data(), vs, n, D);
      if (out.stream) stream_floats(out.values + ho * D, v_row, D);
      out.positions[ho] = in.positions[h * L + p];
      out.counts[ho] = static_cast<int32_t>(total);
      out.scores[ho] = static_cast<float>(score);
      ++o;
    }
  }
  finish_stream(out);
}

namespace {

/** Head `h` of a layer as a one-head layer (slots `[h * L, (h + 1) * L)`). */
inline LayerIn one_head(const LayerIn& in, int64_t h) {
  const int64_t r = h * in.L;
  return LayerIn{in.keys + r * in.D, in.values + r * in.D, in.positions + r, in.counts + r, in.scores + r, 1, in.L, in.D};
}

/** Output slots `[h * K, (h + 1) * K)` of a layer. */
inline LayerOut one_head(const LayerOut& out, int64_t h, int64_t K, int64_t D) {
  const int64_t r = h * K;
  return LayerOut{out.keys + r * D, out.values + r * D, out.positions + r, out.counts + r, out.scores + r, out.stream};
}

/** The plan arrays of one head's merge_into_neighbours_cpu call, with its block width and block order. */
struct NeighbourPlan {
  const int32_t* source;
  const int32_t* start;
  const int32_t* count;
  const float* gate;
  const int64_t* order;  // sources by the block their window starts in (counting sort, stable)
  const int64_t* first;  // order[first[x] .. first[x + 1]): block x's sources
  /** A source's gated share of each of its targets: computed in double as the reference does, then rounded. */
  Acc share(int64_t s) const { return static_cast<Acc>(static_cast<double>(gate[s]) / count[s]); }
};

/**
 * Block `x` (output slots `[b0, b1)` of head `h`) the old way, on cleared float blocks `fwd` and `bwd`
 * (`B x D` each): for blocks with a window inside them or windows out of order, whose terms go to every
 * target after the running sums.
 */
void merge_block_general(const LayerIn& in, const int32_t* keep, int64_t K, const NeighbourPlan& p, const LayerOut& out, int64_t x,
                         int64_t b0, int64_t b1, Acc* fwd, Acc* bwd) {
  const int64_t D = in.D, width = b1 - b0;
  const float* values = in.values;
  gather_slots(in, keep, K, out, 0, b0, b1);
  std::fill(fwd, fwd + width * D, Acc{0});
  std::fill(bwd, bwd + width * D, Acc{0});
  if (x > 0)
    for (int64_t q = p.first[x - 1]; q < p.first[x]; ++q) {
      const int64_t s = p.order[q], stop = p.start[s] + p.count[s];
      if (stop <= b0) continue;
      add_scaled(bwd + (stop - 1 - b0) * D, values + static_cast<int64_t>(p.source[s]) * D, p.share(s), D);
    }
  for (int64_t q = p.first[x]; q < p.first[x + 1]; ++q) {
    const int64_t s = p.order[q];
    if (p.start[s] + p.count[s] < b1) continue;
    add_scaled(fwd + (p.start[s] - b0) * D, values + static_cast<int64_t>(p.source[s]) * D, p.share(s), D);
  }
  for (int64_t t = 1; t < width; ++t)
    for (int64_t d = 0; d < D; ++d) fwd[t * D + d] += fwd[(t - 1) * D + d];
  for (int64_t t = width - 2; t >= 0; --t)
    for (int64_t d = 0; d < D; ++d) bwd[t * D + d] += bwd[(t + 1) * D + d];
  for (int64_t q = p.first[x]; q < p.first[x + 1]; ++q) {
    const int64_t s = p.order[q], a = p.start[s], c = p.count[s];
    if (a + c >= b1) continue;
    for (int64_t t = a; t < a + c; ++t) add_scaled(fwd + (t - b0) * D, values + static_cast<int64_t>(p.source[s]) * D, p.share(s), D);
  }
  float* o = out.values + b0 * D;
  for (int64_t i = 0; i < width * D; ++i) o[i] = (o[i] + fwd[i]) + bwd[i];
}

}  // namespace

/**
 * Each kept value plus what it receives, summed in float32 like the reference's wasm kernel (within 1e-5 of
 * the TypeScript reference's double sums). With B the
 * widest window, a window reaching its block's end is a suffix of that block plus a prefix of the next, so
 * a source is added once where it starts (running sum forward) and once at the row it ends at (running sum
 * backward). Per block, one ascending sweep writes each slot's key, scalars and merged value
 * `(v + forward) + backward` together (keys and values read side by side, and CaM's sources, just before
 * the slot their window starts at, read in the same pass), without clearing B x D block sums: a row's first
 * term is stored, rows with no term are skipped (the forward sum stays in one row; each row notes the row
 * holding its backward sum). Adding zero is exact, so the sums are those of cleared blocks in the same
 * order. Blocks with a window inside them or windows out of order take merge_block_general; blocks no
 * window reaches are a plain gather.
 */
__attribute__((target_clones("avx512f", "avx2", "default")))
void merge_into_neighbours_cpu(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out) {
  const int64_t H = in.H, D = in.D;
  std::vector<Acc> sum(static_cast<size_t>(2 * D)), back, fwd_general, bwd_general;
  // A streamed output's merged value row is summed here (in L1) and then streamed out.
  std::vector<float> row(out.stream ? static_cast<size_t>(D) : 0);
  std::vector<int64_t> order(static_cast<size_t>(S)), first, fill, backref;
  std::vector<char> ends;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t s0 = h * S;
    int64_t B = 0;
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > B) B = target_count[s];
    if (B == 0) {
      gather_slots(in, keep, K, out, h, 0, K);
      continue;
    }
    const int64_t blocks = (K + B - 1) / B;
    first.assign(static_cast<size_t>(blocks + 1), 0);
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > 0) ++first[target_start[s] / B + 1];
    for (int64_t x = 0; x < blocks; ++x) first[x + 1] += first[x];
    fill.assign(first.begin(), first.end() - 1);
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > 0) order[fill[target_start[s] / B]++] = s - s0;
    back.resize(static_cast<size_t>(B * D));
    backref.resize(static_cast<size_t>(B));
    ends.resize(static_cast<size_t>(B));
    const NeighbourPlan p{source + s0, target_start + s0, target_count + s0, gate + s0, order.data(), first.data()};
    // This head's rows, so row indices below are per head.
    const LayerIn hin = one_head(in, h);
    const LayerOut hout = one_head(out, h, K, D);
    const int32_t* kept = keep + h * K;
    const float* values = hin.values;
    for (int64_t x = 0; x < blocks; ++x) {
      const int64_t b0 = x * B, b1 = std::min(K, b0 + B), n = b1 - b0;
      const int64_t prev0 = x > 0 ? first[x - 1] : 0, here0 = first[x], here1 = first[x + 1];
      // The sweep takes this block's windows in the order they start, each reaching the block's end.
      bool general = false;
      for (int64_t q = here0, at = b0; q < here1; ++q) {
        const int64_t s = order[q], a = p.start[s];
        if (a + p.count[s] < b1 || a < at) general = true;
        at = a;
      }
      if (general) {
        if (fwd_general.empty()) {
          fwd_general.resize(static_cast<size_t>(B * D));
          bwd_general.resize(static_cast<size_t>(B * D));
        }
        // Ordinary stores: this path adds into the rows it has just gathered.
        LayerOut cached = hout;
        cached.stream = false;
        merge_block_general(hin, kept, K, p, cached, x, b0, b1, fwd_general.data(), bwd_general.data());
        continue;
      }
      // Backward terms: windows that started in the previous block and end in this one, at the row they end at.
      bool any_back = false;
      std::fill(ends.begin(), ends.begin() + n, 0);
      for (int64_t q = prev0; q < here0; ++q) {
        const int64_t s = order[q], stop = p.start[s] + p.count[s];
        if (stop <= b0) continue;
        const int64_t r = stop - 1 - b0;
        const float* v = values + static_cast<int64_t>(p.source[s]) * D;
        if (ends[r]) add_scaled(back.data() + r * D, v, p.share(s), D);
        else store_scaled(back.data() + r * D, v, p.share(s), D);
        ends[r] = 1;
        any_back = true;
      }
      if (!any_back && here0 == here1) {  // no window reaches this block
        gather_slots(hin, kept, K, hout, 0, b0, b1);
        continue;
      }
      // The backward running sum over the rows with terms, descending; each row notes the row holding its sum.
      for (int64_t t = n - 1, last = -1; t >= 0; --t) {
        if (ends[t]) {
          if (last >= 0)
            for (int64_t d = 0; d < D; ++d) back[t * D + d] += back[last * D + d];
          last = t;
        }
        backref[t] = last;
      }
      // The ascending sweep: terms of the windows starting at a row, the forward sum, the row's output.
      Acc* fsum = sum.data();
      Acc* terms = sum.data() + D;
      bool started = false;
      int64_t q = here0;
      for (int64_t t = 0; t < n; ++t) {
        if (q < here1 && p.start[order[q]] == b0 + t) {
          Acc* dst = started ? terms : fsum;
          store_scaled(dst, values + static_cast<int64_t>(p.source[order[q]]) * D, p.share(order[q]), D);
          for (++q; q < here1 && p.start[order[q]] == b0 + t; ++q)
            add_scaled(dst, values + static_cast<int64_t>(p.source[order[q]]) * D, p.share(order[q]), D);
          // forward[t] = terms(t) + forward[t - 1] (the old kernel's order of operands).
          if (started)
            for (int64_t d = 0; d < D; ++d) fsum[d] = terms[d] + fsum[d];
          started = true;
        }
        const int64_t j = b0 + t, i = kept[j];
        put_rows(hout, hout.keys + j * D, hin.keys + i * D, D);
        hout.positions[j] = hin.positions[i];
        hout.counts[j] = hin.counts[i];
        hout.scores[j] = hin.scores[i];
        const float* v = values + i * D;
        float* o = out.stream ? row.data() : hout.values + j * D;
        const int64_t b = backref[t];
        if (started && b >= 0) {
          const Acc* bk = back.data() + b * D;
          for (int64_t d = 0; d < D; ++d) o[d] = (v[d] + fsum[d]) + bk[d];
        } else if (started) {
          for (int64_t d = 0; d < D; ++d) o[d] = v[d] + fsum[d];
        } else if (b >= 0) {
          const Acc* bk = back.data() + b * D;
          for (int64_t d = 0; d < D; ++d) o[d] = v[d] + bk[d];
        } else {
          std::memcpy(o, v, static_cast<size_t>(D) * sizeof(float));
        }
        if (out.stream) stream_floats(hout.values + j * D, o, D);
      }
    }
  }
  finish_stream(out);
}

#pragma GCC pop_options

void observe_cpu(const LayerIn& in, const float* queries, int64_t QH, int64_t N, const int32_t* query_positions, float scale, int reduction,
                 int proportional, float* sums, float* last) {
  const int64_t H = in.H, L = in.L, D = in.D, G = QH / H;
  std::vector<double> logit(static_cast<size_t>(L)), hs(static_cast<size_t>(L)), hl(static_cast<size_t>(L));
  std::vector<double> rs(static_cast<size_t>(H * L)), rl(static_cast<size_t>(H * L));
  std::vector<double> bias(static_cast<size_t>(L));
  const int64_t Lp = (L + 15) / 16 * 16;
  std::vector<float> kt(static_cast<size_t>(D * Lp));
  std::vector<double> dots(static_cast<size_t>(Lp));
  for (int64_t h = 0; h < H; ++h) {
    const float* keys = in.keys + h * L * D;
    const int32_t* pos = in.positions + h * L;
    std::fill(kt.begin(), kt.end(), 0.0f);
    // Blocked transpose: block b holds slots 16b..16b+15 as [D][16], read sequentially by row_logits.
    for (int64_t l = 0; l < L; ++l)
      for (int64_t d = 0; d < D; ++d) kt[(l / 16) * 16 * D + d * 16 + l % 16] = keys[l * D + d];
    for (int64_t l = 0; l < L; ++l) bias[l] = proportional ? std::log(static_cast<double>(in.counts[h * L + l])) : 0.0;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t qh = h * G + g;
      std::fill(hs.begin(), hs.end(), 0.0);
      std::fill(hl.begin(), hl.end(), 0.0);
      for (int64_t t = 0; t < N; ++t) {
        const float* q = queries + (qh * N + t) * D;
        const int32_t qp = query_positions[t];
        double mx = -std::numeric_limits<double>::infinity();
        row_logits(q, kt.data(), Lp, D, dots.data());
        for (int64_t l = 0; l < L; ++l) {
          if (pos[l] > qp) continue;
          logit[l] = dots[l] * scale + bias[l];
          mx = std::max(mx, logit[l]);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;  // sees no slot: contributes zeros
        double z = 0;
        for (int64_t l = 0; l < L; ++l) {
          if (pos[l] > qp) continue;
          logit[l] = std::exp(static_cast<float>(logit[l] - mx));  // float exp: ~1e-7 relative, 3x faster
          z += logit[l];
        }
        for (int64_t l = 0; l < L; ++l) {
          if (pos[l] > qp) continue;
          const double p = logit[l] / z;
          hs[l] += p;
          if (t == N - 1) hl[l] = p;
        }
      }
      for (int64_t l = 0; l < L; ++l) {
        double& s = rs[h * L + l];
        double& x = rl[h * L + l];
        if (reduction == kMax) {
          s = g == 0 ? hs[l] : std::max(s, hs[l]);
          x = g == 0 ? hl[l] : std::max(x, hl[l]);
        } else {
          s = g == 0 ? hs[l] : s + hs[l];
          x = g == 0 ? hl[l] : x + hl[l];
        }
      }
    }
  }
  const double div = reduction == kMean ? static_cast<double>(G) : 1.0;
  for (int64_t i = 0; i < H * L; ++i) {
    sums[i] = static_cast<float>(rs[i] / div);
    last[i] = static_cast<float>(rl[i] / div);
  }
}

}  // namespace kvfold
