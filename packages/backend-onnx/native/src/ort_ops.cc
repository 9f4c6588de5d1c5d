// ONNX Runtime custom ops of the ai.kvfold domain. Each op has the inputs, outputs and attributes of the
// model-local function with the same name (src/kernels/*.ts), so a model runs unchanged with or without
// this library: registered, ORT picks these kernels; absent, it inlines the function bodies.
//
// Built twice by native/build.mjs: libkvfold_ops.so (CPU kernels) and, with -DKVFOLD_WITH_CUDA and the
// objects of cuda_kernels.cu, libkvfold_ops_cuda.so (CPU + CUDAExecutionProvider kernels of every op).
// Inputs are trusted: the TypeScript side validates every plan before it runs a model.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "kvfold_kernels.h"

namespace {

using kvfold::LayerIn;
using kvfold::LayerOut;
constexpr ONNXTensorElementDataType F32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType I32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
constexpr ONNXTensorElementDataType I64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;

/** Shape of input `i`. */
std::vector<int64_t> shape_of(const Ort::KernelContext& ctx, size_t i) { return ctx.GetInput(i).GetTensorTypeAndShapeInfo().GetShape(); }

/** Value of an int64 [1] input (always host memory: the ops declare these inputs OrtMemTypeCPUInput). */
int64_t scalar_i64(const Ort::KernelContext& ctx, size_t i) { return ctx.GetInput(i).GetTensorData<int64_t>()[0]; }

void check_cuda(int code, const char* op) {
  if (code != 0) throw std::runtime_error(std::string("ai.kvfold::") + op + ": CUDA error " + std::to_string(code));
}

/**
 * Run `f(h)` for every head on ORT's intra-op thread pool (heads are independent, so each CPU kernel runs
 * on a one-head view and results do not depend on the thread count).
 */
template <typename F>
void for_each_head(const Ort::KernelContext& ctx, int64_t H, F&& f) {
  if (H <= 1) {
    for (int64_t h = 0; h < H; ++h) f(h);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  ctx.ParallelFor([](void* p, size_t i) { (*static_cast<Fn*>(p))(static_cast<int64_t>(i)); }, static_cast<size_t>(H), 0, &f);
}

/** One head of a layer. */
LayerIn head_of(const LayerIn& in, int64_t h) {
  const int64_t r = h * in.L;
  return LayerIn{in.keys + r * in.D, in.values ? in.values + r * in.D : nullptr, in.positions + r, in.counts + r, in.scores ? in.scores + r : nullptr,
                 1, in.L, in.D};
}

/** Slots [h * slots, (h + 1) * slots) of a layer output. */
LayerOut head_of(const LayerOut& out, int64_t h, int64_t slots, int64_t D) {
  const int64_t r = h * slots;
  return LayerOut{out.keys + r * D, out.values + r * D, out.positions + r, out.counts + r, out.scores + r, out.stream};
}

/** The five layer inputs at positions 0..4. */
LayerIn layer_in(const Ort::KernelContext& ctx) {
  const auto s = shape_of(ctx, 0);
  return LayerIn{ctx.GetInput(0).GetTensorData<float>(), ctx.GetInput(1).GetTensorData<float>(), ctx.GetInput(2).GetTensorData<int32_t>(),
                 ctx.GetInput(3).GetTensorData<int32_t>(), ctx.GetInput(4).GetTensorData<float>(), s[0], s[1], s[2]};
}

/** Allocate the five layer outputs with `slots` slots per head. */
LayerOut layer_out(Ort::KernelContext& ctx, int64_t H, int64_t slots, int64_t D) {
  return LayerOut{ctx.GetOutput(0, {H, slots, D}).GetTensorMutableData<float>(), ctx.GetOutput(1, {H, slots, D}).GetTensorMutableData<float>(),
                  ctx.GetOutput(2, {H, slots}).GetTensorMutableData<int32_t>(), ctx.GetOutput(3, {H, slots}).GetTensorMutableData<int32_t>(),
                  ctx.GetOutput(4, {H, slots}).GetTensorMutableData<float>(),
                  kvfold::streams_output(2 * H * slots * D * static_cast<int64_t>(sizeof(float)))};
}

// ------------------------------------------------------------------------------------------ kernels
// Each kernel: the op's signature as static data, a constructor reading attributes, and Compute.

template <bool Cuda>
struct AdjacentCosine {
  static constexpr const char* kName = "AdjacentCosine";
  static constexpr ONNXTensorElementDataType kIn[] = {F32};
  static constexpr ONNXTensorElementDataType kOut[] = {F32};
  static bool host_input(size_t) { return false; }
  AdjacentCosine(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const auto s = shape_of(ctx, 0);
    const int64_t M = s[1] > 0 ? s[1] - 1 : 0;
    float* out = ctx.GetOutput(0, {s[0], M}).GetTensorMutableData<float>();
    const float* keys = ctx.GetInput(0).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::adjacent_cosine_cuda(keys, out, s[0], s[1], s[2], ctx.GetGPUComputeStream()), kName);
    else for_each_head(ctx, s[0], [&](int64_t h) { kvfold::adjacent_cosine_cpu(keys + h * s[1] * s[2], out + h * M, 1, s[1], s[2]); });
  }
};

template <bool Cuda>
struct SelectTopK {
  static constexpr const char* kName = "SelectTopK";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, I64, I64, I64};
  static constexpr ONNXTensorElementDataType kOut[] = {I32};
  static bool host_input(size_t i) { return i >= 1; }
  SelectTopK(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const auto s = shape_of(ctx, 0);
    const int64_t k = scalar_i64(ctx, 1), from = scalar_i64(ctx, 2), to = scalar_i64(ctx, 3);
    int32_t* index = ctx.GetOutput(0, {s[0], k}).GetTensorMutableData<int32_t>();
    const float* scores = ctx.GetInput(0).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::select_topk_cuda(scores, index, s[0], s[1], k, from, to, ctx.GetGPUComputeStream()), kName);
    else for_each_head(ctx, s[0], [&](int64_t h) { kvfold::select_topk_cpu(scores + h * s[1], index + h * k, 1, s[1], k, from, to); });
  }
};

template <bool Cuda>
struct LinkSegments {
  static constexpr const char* kName = "LinkSegments";
  static constexpr ONNXTensorElementDataType kIn[] = {I32, F32};
  static constexpr ONNXTensorElementDataType kOut[] = {I32, I32};
  static bool host_input(size_t) { return false; }
  LinkSegments(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const auto ls = shape_of(ctx, 0);
    const auto s = shape_of(ctx, 1);
    const int64_t C = ls[1], M = s[1] - C;
    int32_t* segment = ctx.GetOutput(0, {s[0], s[1]}).GetTensorMutableData<int32_t>();
    int32_t* pivot = ctx.GetOutput(1, {s[0], M}).GetTensorMutableData<int32_t>();
    const int32_t* links = ctx.GetInput(0).GetTensorData<int32_t>();
    const float* scores = ctx.GetInput(1).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::link_segments_cuda(links, scores, segment, pivot, s[0], s[1], C, ctx.GetGPUComputeStream()), kName);
    else
      for_each_head(ctx, s[0], [&](int64_t h) { kvfold::link_segments_cpu(links + h * C, scores + h * s[1], segment + h * s[1], pivot + h * M, 1, s[1], C); });
  }
};

template <bool Cuda>
struct AccumulateSelect {
  static constexpr const char* kName = "AccumulateSelect";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, F32, I64, I64, I64};
  static constexpr ONNXTensorElementDataType kOut[] = {F32, I32};
  static bool host_input(size_t i) { return i >= 2; }
  AccumulateSelect(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const auto s = shape_of(ctx, 0);
    const int64_t k = scalar_i64(ctx, 2), from = scalar_i64(ctx, 3), to = scalar_i64(ctx, 4);
    float* acc = ctx.GetOutput(0, {s[0], s[1]}).GetTensorMutableData<float>();
    int32_t* index = ctx.GetOutput(1, {s[0], k}).GetTensorMutableData<int32_t>();
    const float* scores = ctx.GetInput(0).GetTensorData<float>();
    const float* att = ctx.GetInput(1).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::accumulate_select_cuda(scores, att, acc, index, s[0], s[1], k, from, to, ctx.GetGPUComputeStream()), kName);
    else
      for_each_head(ctx, s[0], [&](int64_t h) {
        const int64_t r = h * s[1];
        kvfold::accumulate_select_cpu(scores + r, att + r, acc + r, index + h * k, 1, s[1], k, from, to);
      });
  }
};

/** An op whose outputs are one layer (keys, values, positions, counts, scores), every input on the device. */
struct LayerToLayer {
  static constexpr ONNXTensorElementDataType kOut[] = {F32, F32, I32, I32, F32};
  static bool host_input(size_t) { return false; }
};

template <bool Cuda>
struct GatherSlots : LayerToLayer {
  static constexpr const char* kName = "GatherSlots";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, F32, I32, I32, F32, I32};
  GatherSlots(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const LayerIn in = layer_in(ctx);
    const int64_t K = shape_of(ctx, 5)[1];
    const LayerOut out = layer_out(ctx, in.H, K, in.D);
    const int32_t* index = ctx.GetInput(5).GetTensorData<int32_t>();
    if constexpr (Cuda) check_cuda(kvfold::gather_slots_cuda(in, index, K, out, ctx.GetGPUComputeStream()), kName);
    else for_each_head(ctx, in.H, [&](int64_t h) { kvfold::gather_slots_cpu(head_of(in, h), index + h * K, K, head_of(out, h, K, in.D)); });
  }
};

template <bool Cuda>
struct MergeSegments : LayerToLayer {
  static constexpr const char* kName = "MergeSegments";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, F32, I32, I32, F32, I32, I32, F32};
  int value_scale;
  MergeSegments(const OrtKernelInfo* info) : value_scale(static_cast<int>(Ort::ConstKernelInfo(info).GetAttribute<int64_t>("value_scale"))) {}
  void Compute(Ort::KernelContext& ctx) {
    const LayerIn in = layer_in(ctx);
    const int64_t O = shape_of(ctx, 6)[1];
    const LayerOut out = layer_out(ctx, in.H, O, in.D);
    const int32_t* seg = ctx.GetInput(5).GetTensorData<int32_t>();
    const int32_t* pivot = ctx.GetInput(6).GetTensorData<int32_t>();
    const float* sigma = ctx.GetInput(7).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::merge_segments_cuda(in, seg, pivot, sigma, O, value_scale, out, ctx.GetGPUComputeStream()), kName);
    else
      for_each_head(ctx, in.H, [&](int64_t h) {
        kvfold::merge_segments_cpu(head_of(in, h), seg + h * in.L, pivot + h * O, sigma + h * O, O, value_scale, head_of(out, h, O, in.D));
      });
  }
};

template <bool Cuda>
struct MergeIntoNeighbours : LayerToLayer {
  static constexpr const char* kName = "MergeIntoNeighbours";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, F32, I32, I32, F32, I32, I32, I32, I32, F32};
  MergeIntoNeighbours(const OrtKernelInfo*) {}
  void Compute(Ort::KernelContext& ctx) {
    const LayerIn in = layer_in(ctx);
    const int64_t K = shape_of(ctx, 5)[1];
    const int64_t S = shape_of(ctx, 6)[1];
    const LayerOut out = layer_out(ctx, in.H, K, in.D);
    const int32_t* keep = ctx.GetInput(5).GetTensorData<int32_t>();
    const int32_t* src = ctx.GetInput(6).GetTensorData<int32_t>();
    const int32_t* ts = ctx.GetInput(7).GetTensorData<int32_t>();
    const int32_t* tc = ctx.GetInput(8).GetTensorData<int32_t>();
    const float* gate = ctx.GetInput(9).GetTensorData<float>();
    if constexpr (Cuda) check_cuda(kvfold::merge_into_neighbours_cuda(in, keep, K, src, ts, tc, gate, S, out, ctx.GetGPUComputeStream()), kName);
    else
      for_each_head(ctx, in.H, [&](int64_t h) {
        const int64_t r = h * S;
        kvfold::merge_into_neighbours_cpu(head_of(in, h), keep + h * K, K, src + r, ts + r, tc + r, gate + r, S, head_of(out, h, K, in.D));
      });
  }
};

template <bool Cuda>
struct Observe {
  static constexpr const char* kName = "Observe";
  static constexpr ONNXTensorElementDataType kIn[] = {F32, I32, I32, F32, I32, F32};
  static constexpr ONNXTensorElementDataType kOut[] = {F32, F32};
  static bool host_input(size_t i) { return i == 5; }
  int reduction, proportional;
  Observe(const OrtKernelInfo* info)
      : reduction(static_cast<int>(Ort::ConstKernelInfo(info).GetAttribute<int64_t>("group_reduction"))),
        proportional(static_cast<int>(Ort::ConstKernelInfo(info).GetAttribute<int64_t>("proportional"))) {}
  void Compute(Ort::KernelContext& ctx) {
    const auto ks = shape_of(ctx, 0);
    const auto qs = shape_of(ctx, 3);
    // Observe has no values or scores input: only keys, positions and counts of the layer.
    const LayerIn in{ctx.GetInput(0).GetTensorData<float>(), nullptr, ctx.GetInput(1).GetTensorData<int32_t>(), ctx.GetInput(2).GetTensorData<int32_t>(),
                     nullptr, ks[0], ks[1], ks[2]};
    float* sums = ctx.GetOutput(0, {ks[0], ks[1]}).GetTensorMutableData<float>();
    float* last = ctx.GetOutput(1, {ks[0], ks[1]}).GetTensorMutableData<float>();
    const float* q = ctx.GetInput(3).GetTensorData<float>();
    const int32_t* qp = ctx.GetInput(4).GetTensorData<int32_t>();
    const float scale = ctx.GetInput(5).GetTensorData<float>()[0];
    if constexpr (Cuda) check_cuda(kvfold::observe_cuda(in, q, qs[0], qs[1], qp, scale, reduction, proportional, sums, last, ctx.GetGPUComputeStream()), kName);
    else
      for_each_head(ctx, in.H, [&](int64_t h) {
        const int64_t G = qs[0] / in.H;  // the query heads of kv head h are rows h*G .. h*G+G-1
        kvfold::observe_cpu(head_of(in, h), q + h * G * qs[1] * qs[2], G, qs[1], qp, scale, reduction, proportional, sums + h * in.L, last + h * in.L);
      });
  }
};

// ---------------------------------------------------------------------------------- op boilerplate

/** Kernel invocations since load: lets tests prove that ORT ran these kernels and not the function bodies. */
std::atomic<uint64_t> g_calls{0};

/** Kernel object: turns exceptions into an OrtStatus so none crosses the C ABI. */
template <typename K>
struct KernelHolder {
  K kernel;
  explicit KernelHolder(const OrtKernelInfo* info) : kernel(info) {}
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      kernel.Compute(ctx);
      g_calls.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_RUNTIME_EXCEPTION, (std::string("ai.kvfold::") + K::kName + ": " + e.what()).c_str());
    }
  }
};

template <template <bool> class KT, bool Cuda>
struct Op : Ort::CustomOpBase<Op<KT, Cuda>, KernelHolder<KT<Cuda>>, true> {
  using K = KT<Cuda>;
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    try {
      *kernel = new KernelHolder<K>(info);
      return nullptr;
    } catch (const std::exception& e) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, (std::string("ai.kvfold::") + K::kName + ": " + e.what()).c_str());
    }
  }
  const char* GetName() const { return K::kName; }
  const char* GetExecutionProviderType() const { return Cuda ? "CUDAExecutionProvider" : "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return std::size(K::kIn); }
  ONNXTensorElementDataType GetInputType(size_t i) const { return K::kIn[i]; }
  OrtMemType GetInputMemoryType(size_t i) const { return Cuda && K::host_input(i) ? OrtMemTypeCPUInput : OrtMemTypeDefault; }
  size_t GetOutputTypeCount() const { return std::size(K::kOut); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return K::kOut[i]; }
};

/** Every op of one execution provider. */
template <bool Cuda>
struct OpSet {
  Op<AdjacentCosine, Cuda> adjacent_cosine;
  Op<SelectTopK, Cuda> select_topk;
  Op<AccumulateSelect, Cuda> accumulate_select;
  Op<LinkSegments, Cuda> link_segments;
  Op<GatherSlots, Cuda> gather_slots;
  Op<MergeSegments, Cuda> merge_segments;
  Op<MergeIntoNeighbours, Cuda> merge_into_neighbours;
  Op<Observe, Cuda> observe;
  void add_to(Ort::CustomOpDomain& d) {
    d.Add(&adjacent_cosine);
    d.Add(&select_topk);
    d.Add(&accumulate_select);
    d.Add(&link_segments);
    d.Add(&gather_slots);
    d.Add(&merge_segments);
    d.Add(&merge_into_neighbours);
    d.Add(&observe);
  }
};

}  // namespace

/** Entry point ORT calls from RegisterCustomOpsLibrary_V2 (once per session options). */
extern "C" ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) {
    // A runtime older than the headers: report it through API 1, which every release provides.
    const std::string msg = std::string("libkvfold_ops was compiled with ORT API ") + std::to_string(ORT_API_VERSION) + " headers, but libonnxruntime " +
                            api_base->GetVersionString() + " does not provide it; rebuild with `pnpm --filter @kvfold/backend-onnx build:native`";
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, msg.c_str());
  }
  Ort::InitApi(api);
  // One domain for the process, shared by every session; never freed, so no session outlives it.
  static std::once_flag once;
  static Ort::CustomOpDomain* domain = nullptr;
  try {
    std::call_once(once, [] {
      domain = new Ort::CustomOpDomain("ai.kvfold");
      static OpSet<false> cpu;
      cpu.add_to(*domain);
#ifdef KVFOLD_WITH_CUDA
      static OpSet<true> cuda;
      cuda.add_to(*domain);
#endif
    });
    Ort::UnownedSessionOptions(options).Add(*domain);
    return nullptr;
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

/** Which kernels this library holds ("cpu" or "cpu+cuda"); read by the addon for describe(). */
extern "C" ORT_EXPORT const char* KvfoldOpsVariant() {
#ifdef KVFOLD_WITH_CUDA
  return "cpu+cuda";
#else
  return "cpu";
#endif
}

/** Number of ai.kvfold kernel invocations since the library was loaded. */
extern "C" ORT_EXPORT uint64_t KvfoldOpsCalls() { return g_calls.load(std::memory_order_relaxed); }

/** kvfold::streaming_min_bytes for the addon: sets the threshold when `bytes >= 0`; returns the previous value. */
extern "C" ORT_EXPORT int64_t KvfoldStreamingMinBytes(int64_t bytes) { return kvfold::streaming_min_bytes(bytes); }
