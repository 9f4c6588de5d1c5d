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

void merge_segments_cpu(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale,
                        const LayerOut& out) {
  const int64_t H = in.H, L = in.L, D = in.D;
  std::vector<double> g(static_cast<size_t>(L)), gsum(static_cast<size_t>(O)), csum(static_cast<size_t>(O)), ssum(static_cast<size_t>(O));
  std::vector<double> kacc(static_cast<size_t>(O * D)), vacc(static_cast<size_t>(O * D));
  for (int64_t h = 0; h < H; ++h) {
    const int32_t* seg = segment + h * L;
    const float* keys = in.keys + h * L * D;
    const float* values = in.values + h * L * D;
    std::fill(gsum.begin(), gsum.end(), 0.0);
    std::fill(csum.begin(), csum.end(), 0.0);
    std::fill(ssum.begin(), ssum.end(), 0.0);
    std::fill(kacc.begin(), kacc.end(), 0.0);
    std::fill(vacc.begin(), vacc.end(), 0.0);
    for (int64_t i = 0; i < L; ++i) {
      const int32_t o = seg[i];
      if (o < 0) continue;
      const int64_t p = pivot[h * O + o];
      const double d2 = dist2(keys + p * D, keys + i * D, D);
      const double sg = sigma[h * O + o];
      g[i] = d2 == 0 ? 1.0 : std::exp(-d2 / (2 * sg * sg));  // the pivot weighs exactly 1
      gsum[o] += g[i];
      csum[o] += in.counts[h * L + i];
      ssum[o] += in.scores[h * L + i];
    }
    for (int64_t i = 0; i < L; ++i) {
      const int32_t o = seg[i];
      if (o < 0) continue;
      const double w = g[i] / gsum[o];
      const double wv = value_scale == 1 ? w / in.counts[h * L + i] : w;
      for (int64_t d = 0; d < D; ++d) {
        kacc[o * D + d] += w * keys[i * D + d];
        vacc[o * D + d] += wv * values[i * D + d];
      }
    }
    for (int64_t o = 0; o < O; ++o) {
      const double scale = value_scale == 1 ? csum[o] : 1.0;
      for (int64_t d = 0; d < D; ++d) {
        out.keys[(h * O + o) * D + d] = static_cast<float>(kacc[o * D + d]);
        out.values[(h * O + o) * D + d] = static_cast<float>(scale * vacc[o * D + d]);
      }
      out.positions[h * O + o] = in.positions[h * L + pivot[h * O + o]];
      out.counts[h * O + o] = static_cast<int32_t>(csum[o]);
      out.scores[h * O + o] = static_cast<float>(ssum[o]);
    }
  }
}

void merge_into_neighbours_cpu(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out) {
  const int64_t H = in.H, L = in.L, D = in.D;
  std::vector<double> acc(static_cast<size_t>(K * D));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t j = 0; j < K; ++j) {
      const int64_t src = h * L + keep[h * K + j];
      for (int64_t d = 0; d < D; ++d) {
        out.keys[(h * K + j) * D + d] = in.keys[src * D + d];
        acc[j * D + d] = in.values[src * D + d];
      }
      out.positions[h * K + j] = in.positions[src];
      out.counts[h * K + j] = in.counts[src];
      out.scores[h * K + j] = in.scores[src];
    }
    for (int64_t s = 0; s < S; ++s) {
      const int32_t tc = target_count[h * S + s];
      if (tc <= 0) continue;
      const double coef = static_cast<double>(gate[h * S + s]) / tc;
      const float* v = in.values + (h * L + source[h * S + s]) * D;
      for (int32_t t = 0; t < tc; ++t) {
        const int64_t j = target_start[h * S + s] + t;
        for (int64_t d = 0; d < D; ++d) acc[j * D + d] += coef * v[d];
      }
    }
    for (int64_t i = 0; i < K * D; ++i) out.values[h * K * D + i] = static_cast<float>(acc[i]);
  }
}

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
