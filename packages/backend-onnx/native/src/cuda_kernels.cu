// CUDA implementations of the ai.kvfold ops (same semantics as cpu_kernels.cc, which gpu/check.sh uses as
// the reference). Reductions accumulate in double, like the CPU kernels, so both agree to float rounding.
// Launch shapes favour simplicity over peak speed: one warp per output row for the bandwidth-bound ops,
// one block per head for the selection.
#include <cuda_runtime.h>

#include <cstdint>

#include "kvfold_kernels.h"

namespace kvfold {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / 32;

__device__ inline double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

/** Blocks needed for one warp per item. */
inline unsigned warp_blocks(int64_t items) { return static_cast<unsigned>((items + kWarpsPerBlock - 1) / kWarpsPerBlock); }

inline int status() { return static_cast<int>(cudaGetLastError()); }

// ------------------------------------------------------------------------------ AdjacentCosine

__global__ void adjacent_cosine_k(const float* __restrict__ keys, float* __restrict__ out, int64_t H, int64_t L, int64_t D) {
  const int64_t M = L - 1;
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= H * M) return;  // whole warp leaves together
  const int64_t h = w / M, i = w % M;
  const float* a = keys + (h * L + i) * D;
  const float* b = a + D;
  double dot = 0, na = 0, nb = 0;
  for (int64_t d = lane; d < D; d += 32) {
    const double x = a[d], y = b[d];
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  dot = warp_sum(dot);
  na = warp_sum(na);
  nb = warp_sum(nb);
  if (lane == 0) {
    const double den = sqrt(na) * sqrt(nb);
    const double c = den > 0 ? dot / den : 0.0;
    out[w] = static_cast<float>(fmin(1.0, fmax(-1.0, c)));
  }
}

// ---------------------------------------------------------------------------------- SelectTopK

/** Monotone map float -> uint32 (larger float, larger key); -0 and +0 share a key; NaN ranks as -Infinity. */
__device__ inline uint32_t order_key(float f) {
  if (f == 0.0f) f = 0.0f;
  if (f != f) f = -INFINITY;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/** Exclusive block-wide prefix sum of `v`; `*total` receives the block total. Every thread must call it. */
__device__ int block_exclusive_scan(int v, int* total) {
  __shared__ int warp_sums[32];
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  int x = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(kFull, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) warp_sums[wid] = x;
  __syncthreads();
  if (wid == 0) {
    int s = lane < nw ? warp_sums[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int y = __shfl_up_sync(kFull, s, o);
      if (lane >= o) s += y;
    }
    warp_sums[lane] = s;
  }
  __syncthreads();
  const int before = wid > 0 ? warp_sums[wid - 1] : 0;
  *total = warp_sums[nw - 1];
  __syncthreads();  // warp_sums is reused by the next call
  return before + x - v;
}

/**
 * One block per head: a 4-pass radix select finds the k-th best key T and how many slots equal to T to
 * take (the lowest ones: ties go to the lower slot); an ordered scan then writes the chosen slots ascending.
 */
__global__ void select_topk_k(const float* __restrict__ scores, int32_t* __restrict__ index, int64_t L, int64_t k, int64_t from, int64_t to) {
  const float* s = scores + blockIdx.x * L;
  int32_t* out = index + blockIdx.x * k;
  __shared__ unsigned hist[256];
  __shared__ uint32_t prefix, mask;
  __shared__ long long remaining;
  if (threadIdx.x == 0) {
    prefix = 0;
    mask = 0;
    remaining = k;
  }
  __syncthreads();
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int64_t i = from + threadIdx.x; i < to; i += blockDim.x) {
      const uint32_t u = order_key(s[i]);
      if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      long long above = 0;
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= remaining) {
          remaining -= above;
          prefix |= static_cast<uint32_t>(d) << shift;
          mask |= 255u << shift;
          break;
        }
        above += hist[d];
      }
    }
    __syncthreads();
  }
  const uint32_t T = prefix;
  const long long take_equal = remaining;
  long long eq_carry = 0, sel_carry = 0;
  for (int64_t base = from; base < to; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const bool valid = i < to;
    const uint32_t u = valid ? order_key(s[i]) : 0u;
    const int eq = valid && u == T;
    int eq_total = 0, sel_total = 0;
    const long long rank = eq_carry + block_exclusive_scan(eq, &eq_total);
    const int sel = valid && (u > T || (eq && rank < take_equal));
    const long long pos = sel_carry + block_exclusive_scan(sel, &sel_total);
    if (sel) out[pos] = static_cast<int32_t>(i);
    eq_carry += eq_total;
    sel_carry += sel_total;
  }
}

// ----------------------------------------------------------------------------- LinkSegments

/**
 * One block per head: the join flags in the segment row, an ordered block scan of the run starts numbers the
 * runs, then each run's best key (atomicMax on order_key) and the lowest slot holding it (atomicMin) give its
 * pivot. `best` is scratch of [H, L - C] keys.
 */
__global__ void link_segments_k(const int32_t* __restrict__ links, const float* __restrict__ scores, int32_t* __restrict__ segment,
                                int32_t* __restrict__ pivot, uint32_t* __restrict__ best, int64_t L, int64_t C) {
  const int64_t M = L - C;
  const int32_t* lk = links + blockIdx.x * C;
  const float* sc = scores + blockIdx.x * L;
  int32_t* sg = segment + blockIdx.x * L;
  int32_t* pv = pivot + blockIdx.x * M;
  uint32_t* bk = best + blockIdx.x * M;
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) sg[i] = 0;
  for (int64_t o = threadIdx.x; o < M; o += blockDim.x) {
    bk[o] = 0u;
    pv[o] = 0x7fffffff;
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < C; j += blockDim.x) sg[lk[j] + 1] = 1;
  __syncthreads();
  long long carry = 0;
  for (int64_t base = 0; base < L; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const int fresh = i < L ? (sg[i] ^ 1) : 0;
    int total = 0;
    const long long before = carry + block_exclusive_scan(fresh, &total);
    if (i < L) sg[i] = static_cast<int32_t>(before + fresh - 1);
    carry += total;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) atomicMax(&bk[sg[i]], order_key(sc[i]));
  __syncthreads();
  for (int64_t i = threadIdx.x; i < L; i += blockDim.x) {
    if (order_key(sc[i]) == bk[sg[i]]) atomicMin(&pv[sg[i]], static_cast<int32_t>(i));
  }
}

__global__ void add_k(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) c[i] = a[i] + b[i];
}

// ------------------------------------------------------------------------------- MergeSegments

__global__ void fill_range_k(int32_t* start, int32_t* end, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    start[i] = INT32_MAX;
    end[i] = -1;
  }
}

/** First and last slot of every segment (members are the slots in between whose id matches). */
__global__ void segment_range_k(const int32_t* __restrict__ segment, int32_t* start, int32_t* end, int64_t H, int64_t L, int64_t O) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < H * L; x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t o = segment[x];
    if (o < 0) continue;
    const int64_t h = x / L;
    const int32_t i = static_cast<int32_t>(x % L);
    atomicMin(&start[h * O + o], i);
    atomicMax(&end[h * O + o], i);
  }
}

/** One warp per output slot: Gaussian weights around the pivot, then the weighted sums per dimension. */
__global__ void merge_segments_k(LayerIn in, const int32_t* __restrict__ segment, const int32_t* __restrict__ pivot, const float* __restrict__ sigma,
                                 int64_t O, int value_scale, LayerOut out, const int32_t* __restrict__ start, const int32_t* __restrict__ end,
                                 double* __restrict__ g) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= in.H * O) return;
  const int64_t h = w / O, o = w % O, L = in.L, D = in.D;
  const int32_t* seg = segment + h * L;
  const int64_t p = pivot[w];
  const double sg = sigma[w];
  const float* kp = in.keys + (h * L + p) * D;
  double gsum = 0, csum = 0, ssum = 0;
  for (int64_t i = start[w]; i <= end[w]; ++i) {
    if (seg[i] != o) continue;
    const float* ki = in.keys + (h * L + i) * D;
    double d2 = 0;
    for (int64_t d = lane; d < D; d += 32) {
      const double x = static_cast<double>(kp[d]) - ki[d];
      d2 += x * x;
    }
    d2 = warp_sum(d2);
    const double gi = d2 == 0 ? 1.0 : exp(-d2 / (2 * sg * sg));  // the pivot weighs exactly 1
    if (lane == 0) g[h * L + i] = gi;
    gsum += gi;
    csum += in.counts[h * L + i];
    ssum += in.scores[h * L + i];
  }
  __syncwarp();
  const double vscale = value_scale == 1 ? csum : 1.0;
  for (int64_t d = lane; d < D; d += 32) {
    double ka = 0, va = 0;
    for (int64_t i = start[w]; i <= end[w]; ++i) {
      if (seg[i] != o) continue;
      const double wi = g[h * L + i] / gsum;
      const double wv = value_scale == 1 ? wi / in.counts[h * L + i] : wi;
      ka += wi * in.keys[(h * L + i) * D + d];
      va += wv * in.values[(h * L + i) * D + d];
    }
    out.keys[w * D + d] = static_cast<float>(ka);
    out.values[w * D + d] = static_cast<float>(vscale * va);
  }
  if (lane == 0) {
    out.positions[w] = in.positions[h * L + p];
    out.counts[w] = static_cast<int32_t>(csum);
    out.scores[w] = static_cast<float>(ssum);
  }
}

// ------------------------------------------------------------------------- MergeIntoNeighbours

__global__ void gather_rows_k(LayerIn in, const int32_t* __restrict__ keep, int64_t K, LayerOut out) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= in.H * K) return;
  const int64_t h = w / K, src = h * in.L + keep[w], D = in.D;
  for (int64_t d = lane; d < D; d += 32) {
    out.keys[w * D + d] = in.keys[src * D + d];
    out.values[w * D + d] = in.values[src * D + d];
  }
  if (lane == 0) {
    out.positions[w] = in.positions[src];
    out.counts[w] = in.counts[src];
    out.scores[w] = in.scores[src];
  }
}

/** One warp per source: add gate * v / targetCount to each of its targets (atomics: targets are shared). */
__global__ void spread_k(LayerIn in, const int32_t* __restrict__ source, const int32_t* __restrict__ target_start, const int32_t* __restrict__ target_count,
                         const float* __restrict__ gate, int64_t S, int64_t K, float* __restrict__ values) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (w >= in.H * S) return;
  const int32_t tc = target_count[w];
  if (tc <= 0) return;
  const int64_t h = w / S, D = in.D;
  const double coef = static_cast<double>(gate[w]) / tc;
  const float* v = in.values + (h * in.L + source[w]) * D;
  for (int32_t t = 0; t < tc; ++t) {
    const int64_t j = target_start[w] + t;
    for (int64_t d = lane; d < D; d += 32) atomicAdd(&values[(h * K + j) * D + d], static_cast<float>(coef * v[d]));
  }
}

// ------------------------------------------------------------------------------------- Observe

/** Logit of query `q` against slot `l` of head `h`: every lane returns the same value. */
__device__ inline double logit(const float* __restrict__ q, const float* __restrict__ k, int64_t D, double scale, double bias, int lane) {
  double dot = 0;
  for (int64_t d = lane; d < D; d += 32) dot += static_cast<double>(q[d]) * k[d];
  return warp_sum(dot) * scale + bias;
}

/** One block per (query head, query): softmax max and normaliser over the visible slots (online, per warp). */
__global__ void row_stats_k(LayerIn in, const float* __restrict__ queries, int64_t QH, int64_t N, const int32_t* __restrict__ qpos, double scale,
                            int proportional, double* __restrict__ row_max, double* __restrict__ row_z) {
  const int64_t r = blockIdx.x;  // qh * N + t
  const int64_t qh = r / N, t = r % N, G = QH / in.H, h = qh / G, L = in.L, D = in.D;
  const float* q = queries + r * D;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  double m = -INFINITY, z = 0;
  for (int64_t l = wid; l < L; l += kWarpsPerBlock) {
    if (in.positions[h * L + l] > qpos[t]) continue;  // uniform per warp
    const double bias = proportional ? log(static_cast<double>(in.counts[h * L + l])) : 0.0;
    const double x = logit(q, in.keys + (h * L + l) * D, D, scale, bias, lane);
    if (x > m) {
      z = z * exp(m - x) + 1.0;
      m = x;
    } else {
      z += exp(x - m);
    }
  }
  __shared__ double wm[kWarpsPerBlock], wz[kWarpsPerBlock];
  if (lane == 0) {
    wm[wid] = m;
    wz[wid] = z;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double M = -INFINITY;
    for (int i = 0; i < kWarpsPerBlock; ++i) M = fmax(M, wm[i]);
    double Z = 0;
    if (M != -INFINITY)
      for (int i = 0; i < kWarpsPerBlock; ++i)
        if (wm[i] != -INFINITY) Z += wz[i] * exp(wm[i] - M);
    row_max[r] = M;
    row_z[r] = Z;
  }
}

/** One warp per (query head, slot): sum over queries of the slot's probability, and the last query's. */
__global__ void column_sums_k(LayerIn in, const float* __restrict__ queries, int64_t QH, int64_t N, const int32_t* __restrict__ qpos, double scale,
                              int proportional, const double* __restrict__ row_max, const double* __restrict__ row_z, double* __restrict__ head_sums,
                              double* __restrict__ head_last) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  const int64_t L = in.L, D = in.D;
  if (w >= QH * L) return;
  const int64_t qh = w / L, l = w % L, G = QH / in.H, h = qh / G;
  const int32_t pos = in.positions[h * L + l];
  const double bias = proportional ? log(static_cast<double>(in.counts[h * L + l])) : 0.0;
  const float* k = in.keys + (h * L + l) * D;
  double acc = 0, lastp = 0;
  for (int64_t t = 0; t < N; ++t) {
    const int64_t r = qh * N + t;
    if (pos > qpos[t] || row_max[r] == -INFINITY) continue;
    const double p = exp(logit(queries + r * D, k, D, scale, bias, lane) - row_max[r]) / row_z[r];
    acc += p;
    if (t == N - 1) lastp = p;
  }
  if (lane == 0) {
    head_sums[w] = acc;
    head_last[w] = lastp;
  }
}

__global__ void group_reduce_k(const double* __restrict__ head_sums, const double* __restrict__ head_last, int64_t H, int64_t G, int64_t L, int reduction,
                               float* __restrict__ sums, float* __restrict__ last) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < H * L; x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = x / L, l = x % L;
    double s = 0, y = 0;
    for (int64_t g = 0; g < G; ++g) {
      const double a = head_sums[(h * G + g) * L + l], b = head_last[(h * G + g) * L + l];
      if (reduction == kMax) {
        s = g == 0 ? a : fmax(s, a);
        y = g == 0 ? b : fmax(y, b);
      } else {
        s += a;
        y += b;
      }
    }
    const double div = reduction == kMean ? static_cast<double>(G) : 1.0;
    sums[x] = static_cast<float>(s / div);
    last[x] = static_cast<float>(y / div);
  }
}

inline unsigned grid_for(int64_t n) {
  const int64_t b = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(b < 65535 ? (b < 1 ? 1 : b) : 65535);
}

}  // namespace

int adjacent_cosine_cuda(const float* keys, float* out, int64_t H, int64_t L, int64_t D, void* stream) {
  const int64_t pairs = L > 1 ? H * (L - 1) : 0;
  if (pairs == 0) return 0;
  adjacent_cosine_k<<<warp_blocks(pairs), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(keys, out, H, L, D);
  return status();
}

int select_topk_cuda(const float* scores, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from, int64_t to, void* stream) {
  if (H == 0 || k == 0) return 0;
  select_topk_k<<<static_cast<unsigned>(H), 1024, 0, static_cast<cudaStream_t>(stream)>>>(scores, index, L, k, from, to);
  return status();
}

int accumulate_select_cuda(const float* scores, const float* attention, float* acc, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from,
                           int64_t to, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (H * L > 0) add_k<<<grid_for(H * L), kBlock, 0, s>>>(scores, attention, acc, H * L);
  const int e = status();
  if (e) return e;
  return select_topk_cuda(acc, index, H, L, k, from, to, stream);
}

int link_segments_cuda(const int32_t* links, const float* scores, int32_t* segment, int32_t* pivot, int64_t H, int64_t L, int64_t C, void* stream) {
  if (H * L == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  uint32_t* best = nullptr;
  const cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&best), sizeof(uint32_t) * H * (L - C), s);
  if (e) return static_cast<int>(e);
  link_segments_k<<<static_cast<unsigned>(H), 1024, 0, s>>>(links, scores, segment, pivot, best, L, C);
  const int rc = status();
  cudaFreeAsync(best, s);
  return rc;
}

int merge_segments_cuda(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale, const LayerOut& out,
                        void* stream) {
  if (in.H * O == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  int32_t* range = nullptr;
  double* g = nullptr;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&range), sizeof(int32_t) * 2 * in.H * O, s);
  if (e) return static_cast<int>(e);
  e = cudaMallocAsync(reinterpret_cast<void**>(&g), sizeof(double) * (in.H * in.L > 0 ? in.H * in.L : 1), s);
  if (e) {
    cudaFreeAsync(range, s);
    return static_cast<int>(e);
  }
  int32_t* start = range;
  int32_t* end = range + in.H * O;
  fill_range_k<<<grid_for(in.H * O), kBlock, 0, s>>>(start, end, in.H * O);
  if (in.H * in.L > 0) segment_range_k<<<grid_for(in.H * in.L), kBlock, 0, s>>>(segment, start, end, in.H, in.L, O);
  merge_segments_k<<<warp_blocks(in.H * O), kBlock, 0, s>>>(in, segment, pivot, sigma, O, value_scale, out, start, end, g);
  const int rc = status();
  cudaFreeAsync(g, s);
  cudaFreeAsync(range, s);
  return rc;
}

int gather_slots_cuda(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out, void* stream) {
  if (in.H * K > 0) gather_rows_k<<<warp_blocks(in.H * K), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(in, index, K, out);
  return status();
}

int merge_into_neighbours_cuda(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (in.H * K > 0) gather_rows_k<<<warp_blocks(in.H * K), kBlock, 0, s>>>(in, keep, K, out);
  if (in.H * S > 0 && in.H * K > 0) spread_k<<<warp_blocks(in.H * S), kBlock, 0, s>>>(in, source, target_start, target_count, gate, S, K, out.values);
  return status();
}

int observe_cuda(const LayerIn& in, const float* queries, int64_t QH, int64_t N, const int32_t* query_positions, float scale, int reduction, int proportional,
                 float* sums, float* last, void* stream) {
  if (in.H * in.L == 0 || N == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  double* ws = nullptr;
  const int64_t rows = QH * N, cols = QH * in.L;
  cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&ws), sizeof(double) * (2 * rows + 2 * cols), s);
  if (e) return static_cast<int>(e);
  double* row_max = ws;
  double* row_z = ws + rows;
  double* head_sums = ws + 2 * rows;
  double* head_last = head_sums + cols;
  row_stats_k<<<static_cast<unsigned>(rows), kBlock, 0, s>>>(in, queries, QH, N, query_positions, scale, proportional, row_max, row_z);
  column_sums_k<<<warp_blocks(cols), kBlock, 0, s>>>(in, queries, QH, N, query_positions, scale, proportional, row_max, row_z, head_sums, head_last);
  group_reduce_k<<<grid_for(in.H * in.L), kBlock, 0, s>>>(head_sums, head_last, in.H, QH / in.H, in.L, reduction, sums, last);
  const int rc = status();
  cudaFreeAsync(ws, s);
  return rc;
}

}  // namespace kvfold
