// Standalone check of the ai.kvfold CUDA kernels (no ORT, no Node): every op on random inputs against the
// CPU kernels (native/src/cpu_kernels.cc, themselves tested against the TypeScript reference through ORT),
// then throughput against the card's device-to-device copy bandwidth measured in the same run.
// Built and run by gpu/check.sh. Exit code 0 = every check passed, 1 = a mismatch, 2 = a CUDA error.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kvfold_kernels.h"

using namespace kvfold;

namespace {

constexpr double kTol = 1e-5;  // |gpu - cpu| <= kTol * max(1, |cpu|), float32 outputs
int g_failures = 0;
std::mt19937_64 g_rng(20240711);

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}
void launch_ok(int rc, const char* what) { cuda_ok(static_cast<cudaError_t>(rc), what); }

double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g_rng); }
int64_t randint(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g_rng); }

std::vector<float> rand_f32(size_t n, double lo = -2, double hi = 2) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(uniform(lo, hi));
  return v;
}

/** A device copy of a host vector, freed at scope end. */
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { cuda_ok(cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)), "cudaMalloc"); }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    if (n) cuda_ok(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> get() const {
    std::vector<T> h(n);
    if (n) cuda_ok(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

void compare(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& cpu) {
  double worst = 0;
  size_t at = 0;
  bool bad = gpu.size() != cpu.size();
  for (size_t i = 0; !bad && i < cpu.size(); ++i) {
    const double e = std::fabs(static_cast<double>(gpu[i]) - cpu[i]) / std::max(1.0, std::fabs(static_cast<double>(cpu[i])));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  bad = bad || !(worst <= kTol);
  std::printf("  %-4s %-58s max rel err %.2e%s\n", bad ? "FAIL" : "ok", what.c_str(), worst,
              bad && at < cpu.size() ? (" at " + std::to_string(at) + ": gpu " + std::to_string(gpu[at]) + " cpu " + std::to_string(cpu[at])).c_str() : "");
  if (bad) ++g_failures;
}

void compare(const std::string& what, const std::vector<int32_t>& gpu, const std::vector<int32_t>& cpu) {
  size_t diff = gpu.size() == cpu.size() ? 0 : 1;
  for (size_t i = 0; i < std::min(gpu.size(), cpu.size()); ++i) diff += gpu[i] != cpu[i];
  std::printf("  %-4s %-58s %zu mismatches\n", diff ? "FAIL" : "ok", what.c_str(), diff);
  if (diff) ++g_failures;
}

/** A random layer on the host. */
struct HostLayer {
  int64_t H, L, D;
  std::vector<float> keys, values, scores;
  std::vector<int32_t> positions, counts;
  HostLayer(int64_t h, int64_t l, int64_t d, bool ties = false) : H(h), L(l), D(d) {
    keys = rand_f32(H * L * D);
    values = rand_f32(H * L * D);
    scores.resize(H * L);
    for (auto& s : scores) s = ties ? static_cast<float>(randint(0, 3)) / 4 : static_cast<float>(uniform(0, 1));
    positions.resize(H * L);
    counts.resize(H * L);
    for (int64_t x = 0; x < H; ++x) {
      int32_t p = static_cast<int32_t>(randint(0, 2));
      for (int64_t i = 0; i < L; ++i) {
        positions[x * L + i] = p;
        p += static_cast<int32_t>(randint(1, 3));
      }
    }
    for (auto& c : counts) c = static_cast<int32_t>(randint(1, 3));
  }
  LayerIn view() const { return {keys.data(), values.data(), positions.data(), counts.data(), scores.data(), H, L, D}; }
};

/** The same layer on the device. */
struct DevLayer {
  Dev<float> keys, values, scores;
  Dev<int32_t> positions, counts;
  int64_t H, L, D;
  explicit DevLayer(const HostLayer& h)
      : keys(h.keys), values(h.values), scores(h.scores), positions(h.positions), counts(h.counts), H(h.H), L(h.L), D(h.D) {}
  LayerIn view() const { return {keys.p, values.p, positions.p, counts.p, scores.p, H, L, D}; }
};

/** Output buffers of a layer with `slots` slots per head, host and device. */
struct Outs {
  int64_t H, S, D;
  std::vector<float> k, v, s;
  std::vector<int32_t> p, c;
  Dev<float> dk, dv, ds;
  Dev<int32_t> dp, dc;
  Outs(int64_t h, int64_t slots, int64_t d)
      : H(h), S(slots), D(d), k(h * slots * d), v(h * slots * d), s(h * slots), p(h * slots), c(h * slots), dk(h * slots * d), dv(h * slots * d),
        ds(h * slots), dp(h * slots), dc(h * slots) {}
  LayerOut host() { return {k.data(), v.data(), p.data(), c.data(), s.data()}; }
  LayerOut dev() { return {dk.p, dv.p, dp.p, dc.p, ds.p}; }
  void check(const std::string& what) {
    compare(what + " keys", dk.get(), k);
    compare(what + " values", dv.get(), v);
    compare(what + " positions", dp.get(), p);
    compare(what + " counts", dc.get(), c);
    compare(what + " scores", ds.get(), s);
  }
};

std::string dims(std::initializer_list<int64_t> d) {
  std::string s = "[";
  for (auto x : d) s += (s.size() > 1 ? "," : "") + std::to_string(x);
  return s + "]";
}

// ------------------------------------------------------------------------------------- correctness

void check_adjacent_cosine(int64_t H, int64_t L, int64_t D) {
  HostLayer l(H, L, D);
  for (int64_t i = 0; i < H * L; ++i) {  // zero keys and parallel keys: the edge cases of the formula
    const double r = uniform(0, 1);
    if (r < 0.1) std::fill(l.keys.begin() + i * D, l.keys.begin() + (i + 1) * D, 0.0f);
    else if (r < 0.2 && i > 0) for (int64_t d = 0; d < D; ++d) l.keys[i * D + d] = 3 * l.keys[(i - 1) * D + d];
  }
  const int64_t M = L > 0 ? L - 1 : 0;
  std::vector<float> cpu(H * M);
  adjacent_cosine_cpu(l.keys.data(), cpu.data(), H, L, D);
  Dev<float> k(l.keys), out(H * M);
  launch_ok(adjacent_cosine_cuda(k.p, out.p, H, L, D, nullptr), "adjacent_cosine_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  compare("AdjacentCosine " + dims({H, L, D}), out.get(), cpu);
}

void check_select(int64_t H, int64_t L, bool ties, int64_t k, int64_t from, int64_t to) {
  HostLayer l(H, L, 1, ties);
  if (!ties && L > 3) l.scores[1] = NAN;  // NaN ranks as -Infinity on both
  std::vector<float> att = rand_f32(H * L, 0, 1);
  std::vector<int32_t> cpu(H * k);
  select_topk_cpu(l.scores.data(), cpu.data(), H, L, k, from, to);
  Dev<float> s(l.scores), a(att), acc(H * L);
  Dev<int32_t> idx(H * k);
  launch_ok(select_topk_cuda(s.p, idx.p, H, L, k, from, to, nullptr), "select_topk_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  const std::string tag = dims({H, L}) + " k=" + std::to_string(k) + " [" + std::to_string(from) + "," + std::to_string(to) + ")" + (ties ? " ties" : "");
  compare("SelectTopK " + tag, idx.get(), cpu);
  std::vector<float> cacc(H * L);
  accumulate_select_cpu(l.scores.data(), att.data(), cacc.data(), cpu.data(), H, L, k, from, to);
  launch_ok(accumulate_select_cuda(s.p, a.p, acc.p, idx.p, H, L, k, from, to, nullptr), "accumulate_select_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  compare("AccumulateSelect " + tag + " scores", acc.get(), cacc);
  compare("AccumulateSelect " + tag + " index", idx.get(), cpu);
}

void check_select_cases(int64_t H, int64_t L) {
  for (bool ties : {false, true}) {
    check_select(H, L, ties, L / 2, 0, L);
    const int64_t from = randint(0, L / 3), to = randint(from, L);
    check_select(H, L, ties, randint(0, to - from), from, to);
  }
  check_select(H, L, false, L, 0, L);
  check_select(H, L, false, 0, 0, L);
}

/** KVMerger's segment walk: C random links per head, scores with ties, NaN, infinities and signed zeros. */
void check_link_segments(int64_t H, int64_t L, int64_t C) {
  std::vector<int32_t> links(H * C);
  for (int64_t h = 0; h < H; ++h) {
    std::vector<int32_t> all(L > 1 ? L - 1 : 0);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), g_rng);
    std::sort(all.begin(), all.begin() + C);
    std::copy(all.begin(), all.begin() + C, links.begin() + h * C);
  }
  std::vector<float> scores(H * L);
  const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f};
  for (auto& x : scores) x = uniform(0, 1) < 0.3 ? specials[randint(0, 5)] : static_cast<float>(randint(0, 7)) / 4;
  const int64_t M = L - C;
  std::vector<int32_t> seg(H * L), piv(H * M);
  link_segments_cpu(links.data(), scores.data(), seg.data(), piv.data(), H, L, C);
  Dev<int32_t> dl(links), dseg(H * L), dpiv(H * M);
  Dev<float> ds(scores);
  launch_ok(link_segments_cuda(dl.p, ds.p, dseg.p, dpiv.p, H, L, C, nullptr), "link_segments_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  compare("LinkSegments " + dims({H, L}) + " C=" + std::to_string(C) + " segment", dseg.get(), seg);
  compare("LinkSegments " + dims({H, L}) + " C=" + std::to_string(C) + " pivot", dpiv.get(), piv);
}

/** Random valid segment plan (see test/plans.ts): O runs over the kept slots of each head. */
void random_segment_plan(int64_t H, int64_t L, int64_t O, std::vector<int32_t>& seg, std::vector<int32_t>& pivot, std::vector<float>& sigma) {
  seg.assign(H * L, -1);
  pivot.assign(H * O, 0);
  sigma = rand_f32(H * O, 0.3, 4);
  for (int64_t h = 0; h < H; ++h) {
    std::vector<int32_t> slots(L);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), g_rng);
    const int64_t kept = randint(O, L);
    std::vector<int32_t> keep(slots.begin(), slots.begin() + kept);
    std::sort(keep.begin(), keep.end());
    std::vector<int64_t> gaps(kept > 0 ? kept - 1 : 0);
    std::iota(gaps.begin(), gaps.end(), 1);
    std::shuffle(gaps.begin(), gaps.end(), g_rng);
    std::vector<bool> cut(kept + 1, false);
    for (int64_t i = 0; i < O - 1; ++i) cut[gaps[i]] = true;
    std::vector<std::vector<int32_t>> members(O);
    int64_t o = 0;
    for (int64_t i = 0; i < kept; ++i) {
      if (cut[i]) ++o;
      seg[h * L + keep[i]] = static_cast<int32_t>(o);
      members[o].push_back(keep[i]);
    }
    for (int64_t s = 0; s < O; ++s) pivot[h * O + s] = members[s][randint(0, static_cast<int64_t>(members[s].size()) - 1)];
  }
}

void check_merge_segments(int64_t H, int64_t L, int64_t D, int64_t O) {
  HostLayer l(H, L, D);
  std::vector<int32_t> seg, pivot;
  std::vector<float> sigma;
  random_segment_plan(H, L, O, seg, pivot, sigma);
  DevLayer dl(l);
  Dev<int32_t> dseg(seg), dpiv(pivot);
  Dev<float> dsig(sigma);
  for (int scale : {1, 0}) {
    Outs o(H, O, D);
    merge_segments_cpu(l.view(), seg.data(), pivot.data(), sigma.data(), O, scale, o.host());
    launch_ok(merge_segments_cuda(dl.view(), dseg.p, dpiv.p, dsig.p, O, scale, o.dev(), nullptr), "merge_segments_cuda");
    cuda_ok(cudaDeviceSynchronize(), "sync");
    o.check("MergeSegments " + dims({H, L, D}) + " O=" + std::to_string(O) + (scale ? " count" : " none"));
  }
}

void random_neighbour_plan(int64_t H, int64_t L, int64_t K, int64_t S, int64_t maxTc, std::vector<int32_t>& keep, std::vector<int32_t>& src,
                           std::vector<int32_t>& ts, std::vector<int32_t>& tc, std::vector<float>& gate) {
  keep.resize(H * K);
  src.resize(H * S);
  ts.resize(H * S);
  tc.resize(H * S);
  gate.resize(H * S);
  for (int64_t h = 0; h < H; ++h) {
    std::vector<int32_t> slots(L);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), g_rng);
    std::sort(slots.begin(), slots.begin() + K);
    std::sort(slots.begin() + K, slots.begin() + K + S);
    std::copy(slots.begin(), slots.begin() + K, keep.begin() + h * K);
    std::copy(slots.begin() + K, slots.begin() + K + S, src.begin() + h * S);
    for (int64_t s = 0; s < S; ++s) {
      const int64_t i = h * S + s;
      ts[i] = K ? static_cast<int32_t>(randint(0, K - 1)) : 0;
      tc[i] = K == 0 || uniform(0, 1) < 0.15 ? 0 : static_cast<int32_t>(randint(1, std::min<int64_t>(maxTc, K - ts[i])));
      gate[i] = uniform(0, 1) < 0.3 ? 0.0f : uniform(0, 1) < 0.7 ? 1.0f : static_cast<float>(uniform(0, 1));
    }
  }
}

void check_gather_slots(int64_t H, int64_t L, int64_t D, int64_t K) {
  HostLayer l(H, L, D);
  // Sorted distinct slots per head (runs and gaps, as kept sets are) and, on the last head, repeats.
  std::vector<int32_t> index(H * K);
  for (int64_t h = 0; h < H; ++h) {
    std::vector<int32_t> slots(L);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), g_rng);
    std::sort(slots.begin(), slots.begin() + K);
    std::copy(slots.begin(), slots.begin() + K, index.begin() + h * K);
  }
  for (int64_t j = 0; j < K; ++j) index[(H - 1) * K + j] = static_cast<int32_t>(randint(0, L - 1));
  DevLayer dl(l);
  Dev<int32_t> didx(index);
  Outs o(H, K, D);
  gather_slots_cpu(l.view(), index.data(), K, o.host());
  launch_ok(gather_slots_cuda(dl.view(), didx.p, K, o.dev(), nullptr), "gather_slots_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  o.check("GatherSlots " + dims({H, L, D}) + " K=" + std::to_string(K));
}

void check_merge_into_neighbours(int64_t H, int64_t L, int64_t D, int64_t K, int64_t S, int64_t maxTc) {
  HostLayer l(H, L, D);
  std::vector<int32_t> keep, src, ts, tc;
  std::vector<float> gate;
  random_neighbour_plan(H, L, K, S, maxTc, keep, src, ts, tc, gate);
  DevLayer dl(l);
  Dev<int32_t> dkeep(keep), dsrc(src), dts(ts), dtc(tc);
  Dev<float> dgate(gate);
  Outs o(H, K, D);
  merge_into_neighbours_cpu(l.view(), keep.data(), K, src.data(), ts.data(), tc.data(), gate.data(), S, o.host());
  launch_ok(merge_into_neighbours_cuda(dl.view(), dkeep.p, K, dsrc.p, dts.p, dtc.p, dgate.p, S, o.dev(), nullptr), "merge_into_neighbours_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  o.check("MergeIntoNeighbours " + dims({H, L, D}) + " K=" + std::to_string(K) + " S=" + std::to_string(S));
}

void check_observe(int64_t H, int64_t G, int64_t L, int64_t N, int64_t D, int reduction, int proportional) {
  HostLayer l(H, L, D);
  const int64_t QH = H * G;
  std::vector<float> q = rand_f32(QH * N * D);
  std::vector<int32_t> qp(N);
  for (auto& p : qp) p = static_cast<int32_t>(randint(-1, 3 * L));  // some queries see nothing, some a prefix
  const float scale = static_cast<float>(1 / std::sqrt(static_cast<double>(D)));
  std::vector<float> sums(H * L), last(H * L);
  observe_cpu(l.view(), q.data(), QH, N, qp.data(), scale, reduction, proportional, sums.data(), last.data());
  DevLayer dl(l);
  Dev<float> dq(q), dsums(H * L), dlast(H * L);
  Dev<int32_t> dqp(qp);
  launch_ok(observe_cuda(dl.view(), dq.p, QH, N, dqp.p, scale, reduction, proportional, dsums.p, dlast.p, nullptr), "observe_cuda");
  cuda_ok(cudaDeviceSynchronize(), "sync");
  static const char* names[] = {"mean", "max", "sum"};
  const std::string tag = "Observe H=" + std::to_string(H) + " G=" + std::to_string(G) + " L=" + std::to_string(L) + " N=" + std::to_string(N) + " D=" +
                          std::to_string(D) + " " + names[reduction] + (proportional ? " prop" : "");
  compare(tag + " sums", dsums.get(), sums);
  compare(tag + " last", dlast.get(), last);
}

// ---------------------------------------------------------------------------------------- throughput

/** Mean milliseconds of `f` over `reps` runs (after one warm-up), timed with events on the default stream. */
template <typename F>
double time_ms(F f, int reps) {
  f();
  cuda_ok(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < reps; ++i) f();
  cudaEventRecord(b);
  cuda_ok(cudaEventSynchronize(b), "timing");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps;
}

double g_copy_gbs = 0;

void report(const char* op, const std::string& shape, double ms, double bytes, double flops = 0) {
  const double gbs = bytes / ms / 1e6;
  std::printf("  %-20s %-34s %9.3f ms %9.1f GB/s  %5.1f%% of copy", op, shape.c_str(), ms, gbs, 100 * gbs / g_copy_gbs);
  if (flops > 0) std::printf("  %8.1f GFLOP/s", flops / ms / 1e6);
  std::printf("\n");
}

void bench() {
  const size_t bytes = size_t(1) << 30;
  Dev<char> a(bytes), b(bytes);
  const double copy_ms = time_ms([&] { cuda_ok(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice), "memcpy"); }, 20);
  g_copy_gbs = 2.0 * bytes / copy_ms / 1e6;  // a copy reads and writes every byte
  std::printf("\nthroughput (effective bandwidth = bytes read + written once / time; copy = cudaMemcpy D2D of 1 GiB, read + write)\n");
  std::printf("  %-20s %-34s %9.3f ms %9.1f GB/s  100.0%% of copy\n", "cudaMemcpy D2D", "1 GiB", copy_ms, g_copy_gbs);

  const int64_t H = 32, L = 32768, D = 128;
  HostLayer l(H, L, D);
  DevLayer dl(l);
  {
    Dev<float> out(H * (L - 1));
    const double ms = time_ms([&] { launch_ok(adjacent_cosine_cuda(dl.keys.p, out.p, H, L, D, nullptr), "adjacent_cosine"); }, 20);
    report("AdjacentCosine", dims({H, L, D}), ms, 4.0 * (H * L * D + H * (L - 1)));
  }
  {
    const int64_t k = L / 2;
    Dev<int32_t> idx(H * k);
    Dev<float> acc(H * L);
    const double ms = time_ms([&] { launch_ok(select_topk_cuda(dl.scores.p, idx.p, H, L, k, 0, L, nullptr), "select_topk"); }, 20);
    report("SelectTopK", dims({H, L}) + " k=" + std::to_string(k), ms, 4.0 * (H * L + H * k));
    const double ms2 = time_ms([&] { launch_ok(accumulate_select_cuda(dl.scores.p, dl.scores.p, acc.p, idx.p, H, L, k, 0, L, nullptr), "accumulate_select"); }, 20);
    report("AccumulateSelect", dims({H, L}) + " k=" + std::to_string(k), ms2, 4.0 * (2 * H * L + H * L + H * k));
  }
  {
    const int64_t C = L / 2;
    std::vector<int32_t> links(H * C);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < C; ++j) links[h * C + j] = static_cast<int32_t>(2 * j);
    Dev<int32_t> dlinks(links), seg(H * L), piv(H * (L - C));
    const double ms = time_ms([&] { launch_ok(link_segments_cuda(dlinks.p, dl.scores.p, seg.p, piv.p, H, L, C, nullptr), "link_segments"); }, 20);
    report("LinkSegments", dims({H, L}) + " C=" + std::to_string(C), ms, 4.0 * (H * C + H * L + 2 * H * L + H * (L - C)));
  }
  {
    const int64_t O = L / 2;
    std::vector<int32_t> seg, pivot;
    std::vector<float> sigma;
    random_segment_plan(H, L, O, seg, pivot, sigma);
    Dev<int32_t> dseg(seg), dpiv(pivot);
    Dev<float> dsig(sigma);
    Outs o(H, O, D);
    const double ms = time_ms([&] { launch_ok(merge_segments_cuda(dl.view(), dseg.p, dpiv.p, dsig.p, O, 1, o.dev(), nullptr), "merge_segments"); }, 10);
    report("MergeSegments", dims({H, L, D}) + " O=" + std::to_string(O), ms, 4.0 * (2 * H * L * D + 4 * H * L + 2 * H * O + 2 * H * O * D + 3 * H * O));
  }
  {
    const int64_t K = L / 2, S = L / 4;
    std::vector<int32_t> keep, src, ts, tc;
    std::vector<float> gate;
    random_neighbour_plan(H, L, K, S, 8, keep, src, ts, tc, gate);
    Dev<int32_t> dkeep(keep), dsrc(src), dts(ts), dtc(tc);
    Dev<float> dgate(gate);
    Outs o(H, K, D);
    const double ms = time_ms([&] { launch_ok(merge_into_neighbours_cuda(dl.view(), dkeep.p, K, dsrc.p, dts.p, dtc.p, dgate.p, S, o.dev(), nullptr), "merge_into_neighbours"); }, 10);
    report("MergeIntoNeighbours", dims({H, L, D}) + " K=" + std::to_string(K) + " S=" + std::to_string(S), ms,
           4.0 * (2 * H * K * D + 3 * H * K + H * S * D + 4 * H * S + 2 * H * K * D + 3 * H * K));
  }
  {
    const int64_t Hk = 8, G = 4, Lo = 8192, N = 16;
    HostLayer lo(Hk, Lo, D);
    DevLayer dlo(lo);
    Dev<float> q(rand_f32(Hk * G * N * D)), sums(Hk * Lo), last(Hk * Lo);
    std::vector<int32_t> qp(N);
    for (int64_t t = 0; t < N; ++t) qp[t] = static_cast<int32_t>(3 * Lo - N + t);
    Dev<int32_t> dqp(qp);
    const double ms = time_ms([&] { launch_ok(observe_cuda(dlo.view(), q.p, Hk * G, N, dqp.p, 0.088f, 0, 1, sums.p, last.p, nullptr), "observe"); }, 10);
    // Two passes (row statistics, then column sums) each compute every q.k: 2 * 2 * QH * N * L * D flops.
    report("Observe", "H=8 G=4 L=8192 N=16 D=128", ms, 4.0 * (Hk * Lo * D + 2 * Hk * Lo + Hk * G * N * D + 2 * Hk * Lo), 4.0 * Hk * G * N * Lo * D);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool do_bench = !(argc > 1 && std::string(argv[1]) == "--no-bench");
  int dev = 0;
  cudaDeviceProp prop{};
  cuda_ok(cudaGetDevice(&dev), "cudaGetDevice");
  cuda_ok(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  std::printf("kvfold ai.kvfold CUDA kernels vs CPU kernels on %s (sm_%d%d, %.0f GiB)\n", prop.name, prop.major, prop.minor,
              prop.totalGlobalMem / 1073741824.0);
  std::printf("correctness (float32: |gpu - cpu| <= %.0e * max(1, |cpu|); int32: exact)\n", kTol);
  for (auto [H, L, D] : {std::array<int64_t, 3>{1, 1, 4}, {1, 2, 1}, {2, 5, 3}, {3, 33, 17}, {4, 257, 64}, {8, 4096, 128}}) check_adjacent_cosine(H, L, D);
  for (auto [H, L] : {std::array<int64_t, 2>{1, 1}, {1, 5}, {3, 100}, {2, 1025}, {8, 4096}, {4, 40000}}) check_select_cases(H, L);
  for (auto [H, L, D, K] : {std::array<int64_t, 4>{1, 1, 2, 1}, {2, 9, 3, 4}, {3, 64, 16, 20}, {8, 4096, 128, 2048}}) check_gather_slots(H, L, D, K);
  for (auto [H, L, D, O] : {std::array<int64_t, 4>{1, 1, 2, 1}, {2, 9, 3, 4}, {3, 64, 16, 20}, {8, 2048, 128, 700}}) check_merge_segments(H, L, D, O);
  for (auto [H, L, C] : {std::array<int64_t, 3>{1, 1, 0}, {1, 2, 1}, {2, 9, 0}, {3, 100, 60}, {2, 3000, 2999}, {8, 4096, 2048}, {32, 16384, 8192}})
    check_link_segments(H, L, C);
  for (auto [H, L, D, K, S, T] : {std::array<int64_t, 6>{1, 2, 1, 1, 1, 1}, {2, 10, 3, 4, 5, 4}, {3, 100, 16, 40, 50, 8}, {8, 4096, 128, 2048, 1500, 16}})
    check_merge_into_neighbours(H, L, D, K, S, T);
  for (int red : {0, 1, 2})
    for (int prop_ : {0, 1}) {
      check_observe(1, 1, 5, 3, 4, red, prop_);
      check_observe(2, 3, 40, 7, 16, red, prop_);
    }
  check_observe(8, 4, 1024, 32, 128, 0, 1);
  std::printf("%s: %d check(s) failed\n", g_failures ? "FAILED" : "PASSED", g_failures);
  if (do_bench) bench();
  return g_failures ? 1 : 0;
}
