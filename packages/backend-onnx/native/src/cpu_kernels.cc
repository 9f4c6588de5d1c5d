// CPU implementations of the ai.kvfold ops. Accumulations are in double, like the reference backend's
// JavaScript numbers, so results agree with it to float32 rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "kvfold_kernels.h"

namespace kvfold {
namespace {

// Four independent double accumulators: exact enough for the reference's float64 sums, and they break the
// add latency chain (strict IEEE order forbids the compiler from reassociating a single accumulator).
inline double dot(const float* a, const float* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < n; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

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

/** Copy `n` consecutive slots of every field from slot row `src` of `in` to slot row `dst` of `out` (rows = h * slots + slot). */
inline void copy_slots(const LayerIn& in, int64_t src, const LayerOut& out, int64_t dst, int64_t n) {
  const int64_t D = in.D;
  std::memcpy(out.keys + dst * D, in.keys + src * D, static_cast<size_t>(n * D) * sizeof(float));
  std::memcpy(out.values + dst * D, in.values + src * D, static_cast<size_t>(n * D) * sizeof(float));
  std::memcpy(out.positions + dst, in.positions + src, static_cast<size_t>(n) * sizeof(int32_t));
  std::memcpy(out.counts + dst, in.counts + src, static_cast<size_t>(n) * sizeof(int32_t));
  std::memcpy(out.scores + dst, in.scores + src, static_cast<size_t>(n) * sizeof(float));
}

/**
 * Rows `idx[0..n)` of `src` (rows of `D` floats) to rows `0..n` of `dst`: runs of consecutive source rows
 * (kept sets are sorted) move as one memcpy.
 */
inline void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t D, float* dst) {
  for (int64_t j = 0; j < n;) {
    int64_t e = j + 1;
    while (e < n && idx[e] == idx[j] + (e - j)) ++e;
    std::memcpy(dst + j * D, src + static_cast<int64_t>(idx[j]) * D, static_cast<size_t>((e - j) * D) * sizeof(float));
    j = e;
  }
}

/** gather_slots_cpu, the values left out unless `with_values` (mergeIntoNeighbours gathers them block by block). */
void gather_slots(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out, bool with_values) {
  const int64_t H = in.H, L = in.L, D = in.D;
  for (int64_t h = 0; h < H; ++h) {
    const int32_t* idx = index + h * K;
    // Runs of consecutive source slots (kept sets are sorted) move as one memcpy of whole rows, keys and
    // values of a run together; the one-value fields take a plain indexed loop (three memcpy calls per short
    // run cost more than their bytes).
    const int64_t src = h * L, dst = h * K;
    for (int64_t j = 0; j < K;) {
      int64_t e = j + 1;
      while (e < K && idx[e] == idx[j] + (e - j)) ++e;
      const size_t bytes = static_cast<size_t>((e - j) * D) * sizeof(float);
      std::memcpy(out.keys + (dst + j) * D, in.keys + (src + idx[j]) * D, bytes);
      if (with_values) std::memcpy(out.values + (dst + j) * D, in.values + (src + idx[j]) * D, bytes);
      j = e;
    }
    for (int64_t j = 0; j < K; ++j) {
      const int64_t i = src + idx[j];
      out.positions[dst + j] = in.positions[i];
      out.counts[dst + j] = in.counts[i];
      out.scores[dst + j] = in.scores[i];
    }
  }
}

}  // namespace

void adjacent_cosine_cpu(const float* keys, float* out, int64_t H, int64_t L, int64_t D) {
  const int64_t M = L > 0 ? L - 1 : 0;
  std::vector<double> norm(static_cast<size_t>(L));
  for (int64_t h = 0; h < H; ++h) {
    const float* k = keys + h * L * D;
    for (int64_t i = 0; i < L; ++i) norm[i] = std::sqrt(dot(k + i * D, k + i * D, D));
    for (int64_t i = 0; i < M; ++i) {
      const double den = norm[i] * norm[i + 1];
      const double c = den > 0 ? dot(k + i * D, k + (i + 1) * D, D) / den : 0.0;
      out[h * M + i] = static_cast<float>(std::min(1.0, std::max(-1.0, c)));
    }
  }
}

void select_topk_cpu(const float* scores, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from, int64_t to) {
  std::vector<int32_t> idx(static_cast<size_t>(to - from));
  std::vector<float> val(static_cast<size_t>(to - from));
  for (int64_t h = 0; h < H; ++h) {
    const float* row = scores + h * L;
    for (int64_t i = from; i < to; ++i) val[i - from] = std::isnan(row[i]) ? -std::numeric_limits<float>::infinity() : row[i];
    std::iota(idx.begin(), idx.end(), static_cast<int32_t>(from));
    // Higher score first; the lower slot wins a tie, which makes the order total. NaN ranks as -Infinity.
    const float* s = val.data() - from;
    auto better = [s](int32_t a, int32_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
    if (k < static_cast<int64_t>(idx.size())) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), better);
    std::sort(idx.begin(), idx.begin() + k);
    std::copy(idx.begin(), idx.begin() + k, index + h * k);
  }
}

void accumulate_select_cpu(const float* scores, const float* attention, float* acc, int32_t* index, int64_t H, int64_t L, int64_t k,
                           int64_t from, int64_t to) {
  for (int64_t i = 0; i < H * L; ++i) acc[i] = scores[i] + attention[i];
  select_topk_cpu(acc, index, H, L, k, from, to);
}

void gather_slots_cpu(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out) {
  gather_slots(in, index, K, out, true);
}

// The merge kernels in one clone per ISA (AVX-512 / AVX2 / baseline, picked at load time): their float64
// loops are element-wise, so wider vectors give the same bits, and fp-contract=off keeps the compiler from
// fusing multiply-adds (one rounding instead of two), so results stay those of the reference's kernels.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
__attribute__((target_clones("avx512f", "avx2", "default")))
void merge_segments_cpu(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale,
                        const LayerOut& out) {
  const int64_t H = in.H, L = in.L, D = in.D;
  std::vector<int64_t> start(static_cast<size_t>(O)), end(static_cast<size_t>(O));
  std::vector<int64_t> rows(static_cast<size_t>(L));
  std::vector<double> w(static_cast<size_t>(L)), wv(static_cast<size_t>(L)), kacc(static_cast<size_t>(D)), vacc(static_cast<size_t>(D));
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
      for (int64_t i = start[o]; i < end[o]; ++i) {
        if (seg[i] != o) continue;
        const double d2 = dist2(keys + p * D, keys + i * D, D);
        const double g = d2 == 0 ? 1.0 : std::exp(-d2 / two_sigma2);  // the pivot weighs exactly 1
        if (g == 0) continue;
        gsum += g;
        rows[n] = i;
        w[n] = g;
        wv[n] = value_scale == 1 ? g / in.counts[h * L + i] : g;
        ++n;
      }
      std::fill(kacc.begin(), kacc.end(), 0.0);
      std::fill(vacc.begin(), vacc.end(), 0.0);
      for (int64_t m = 0; m < n; ++m) {
        const float* k = keys + rows[m] * D;
        const float* v = values + rows[m] * D;
        for (int64_t d = 0; d < D; ++d) {
          kacc[d] += w[m] * k[d];
          vacc[d] += wv[m] * v[d];
        }
      }
      const double ks = 1 / gsum;
      const double vs = value_scale == 1 ? total / gsum : ks;
      for (int64_t d = 0; d < D; ++d) {
        out.keys[ho * D + d] = static_cast<float>(kacc[d] * ks);
        out.values[ho * D + d] = static_cast<float>(vacc[d] * vs);
      }
      out.positions[ho] = in.positions[h * L + p];
      out.counts[ho] = static_cast<int32_t>(total);
      out.scores[ho] = static_cast<float>(score);
      ++o;
    }
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void merge_into_neighbours_cpu(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out) {
  const int64_t H = in.H, L = in.L, D = in.D;
  // Keys and the one-value fields now; each block of kept values just before its sums are added, so the
  // add reads them from cache instead of a second pass over the output.
  gather_slots(in, keep, K, out, false);
  // Each kept value plus what it receives, summed in double, as the TypeScript reference does: with B the
  // widest window, a window reaching its block's end is a suffix of that block plus a prefix of the next,
  // so a source is added once where it starts (running sum forward) and once where it ends (running sum
  // backward), block by block so the sums stay in cache. Other windows are added to each target.
  std::vector<double> fwd, bwd;
  std::vector<int64_t> order(static_cast<size_t>(S)), first;
  for (int64_t h = 0; h < H; ++h) {
    const int64_t s0 = h * S;
    int64_t B = 0;
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > B) B = target_count[s];
    const float* values = in.values + h * L * D;
    float* outv = out.values + h * K * D;
    const int32_t* kept = keep + h * K;
    if (B == 0) {
      gather_rows(values, kept, K, D, outv);
      continue;
    }
    const int64_t blocks = (K + B - 1) / B;
    first.assign(static_cast<size_t>(blocks + 1), 0);
    fwd.resize(static_cast<size_t>(B * D));
    bwd.resize(static_cast<size_t>(B * D));
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > 0) ++first[target_start[s] / B + 1];
    for (int64_t x = 0; x < blocks; ++x) first[x + 1] += first[x];
    std::vector<int64_t> fill(first.begin(), first.end() - 1);
    for (int64_t s = s0; s < s0 + S; ++s)
      if (gate[s] != 0 && target_count[s] > 0) order[fill[target_start[s] / B]++] = s;
    auto add = [&](double* acc, int64_t s, double f) {
      const float* v = values + static_cast<int64_t>(source[s]) * D;
      for (int64_t d = 0; d < D; ++d) acc[d] += f * v[d];
    };
    for (int64_t x = 0; x < blocks; ++x) {
      const int64_t b0 = x * B, b1 = std::min(K, b0 + B), width = b1 - b0;
      gather_rows(values, kept + b0, width, D, outv + b0 * D);
      std::fill(fwd.begin(), fwd.begin() + width * D, 0.0);
      std::fill(bwd.begin(), bwd.begin() + width * D, 0.0);
      bool touched = false, inside = false;
      if (x > 0)
        for (int64_t q = first[x - 1]; q < first[x]; ++q) {
          const int64_t s = order[q], stop = target_start[s] + target_count[s];
          if (stop <= b0) continue;
          add(bwd.data() + (stop - 1 - b0) * D, s, static_cast<double>(gate[s]) / target_count[s]);
          touched = true;
        }
      for (int64_t q = first[x]; q < first[x + 1]; ++q) {
        const int64_t s = order[q];
        if (target_start[s] + target_count[s] < b1) {
          inside = true;
          continue;
        }
        add(fwd.data() + (target_start[s] - b0) * D, s, static_cast<double>(gate[s]) / target_count[s]);
        touched = true;
      }
      if (!touched && !inside) continue;
      for (int64_t t = 1; t < width; ++t)
        for (int64_t d = 0; d < D; ++d) fwd[t * D + d] += fwd[(t - 1) * D + d];
      for (int64_t t = width - 2; t >= 0; --t)
        for (int64_t d = 0; d < D; ++d) bwd[t * D + d] += bwd[(t + 1) * D + d];
      if (inside)
        for (int64_t q = first[x]; q < first[x + 1]; ++q) {
          const int64_t s = order[q], a = target_start[s], c = target_count[s];
          if (a + c >= b1) continue;
          for (int64_t t = a; t < a + c; ++t) add(fwd.data() + (t - b0) * D, s, static_cast<double>(gate[s]) / c);
        }
      float* o = outv + b0 * D;
      for (int64_t i = 0; i < width * D; ++i) o[i] = static_cast<float>(static_cast<double>(o[i]) + fwd[i] + bwd[i]);
    }
  }
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
