// kvfold ai.kvfold kernels: plain C++ entry points on raw row-major buffers, shared by the ORT custom ops
// (src/ort_ops.cc), the CUDA custom ops and the standalone GPU check (gpu/check.sh). No ORT or CUDA types
// appear here, so the GPU check builds without ORT headers and the CPU library builds without CUDA.
//
// Semantics are those of @kvfold/core's KVKernels TSDoc; the function bodies in src/kernels/*.ts compute the
// same thing with standard ONNX ops. Layout: keys/values [H, L, D], per-slot fields [H, L].
// The op list (names, element types, host inputs) is one table, src/native-ops.ts; test/native-ops.test.ts
// checks this header, the CPU and CUDA sources, ort_ops.cc and gpu/check.cu against it.
#pragma once
#include <cstdint>

namespace kvfold {

/** Read-only view of a layer cache. */
struct LayerIn {
  const float* keys;
  const float* values;
  const int32_t* positions;
  const int32_t* counts;
  const float* scores;
  int64_t H, L, D;
};

/** Output buffers of a layer with `slots` slots per head (allocated by the caller). */
struct LayerOut {
  float* keys;
  float* values;
  int32_t* positions;
  int32_t* counts;
  float* scores;
  /**
   * CPU kernels write the key and value rows with non-temporal stores (see streams_output): set by the ORT
   * ops for the whole output, carried into every per-head view. The CUDA kernels ignore it.
   */
  bool stream = false;
};

/** Group reduction codes (Observe attribute `group_reduction`). */
enum GroupReduction : int { kMean = 0, kMax = 1, kSum = 2 };

// ---------------------------------------------------------------------------------------------- CPU

/**
 * Whether a layer output of `bytes` key and value bytes is written past the cache: at least
 * streaming_min_bytes(-1), by default the last-level cache's size. Such an output cannot stay cached for
 * the attention that reads it next, and ordinary stores first read every output line they fill (a third
 * more memory traffic for a merge or gather that reads two rows per row it writes).
 */
bool streams_output(int64_t bytes);

/** Sets the streaming threshold of streams_output when `bytes >= 0` (process-wide); returns the previous value. */
int64_t streaming_min_bytes(int64_t bytes);

/** out[h, i] = cos(k[h, i], k[h, i + 1]) clipped to [-1, 1]; 0 when a norm is 0. out is [H, max(L - 1, 0)]. */
void adjacent_cosine_cpu(const float* keys, float* out, int64_t H, int64_t L, int64_t D);

/** index[h, :] = the k best slots of [from, to) (score desc, lower slot first on ties), ascending. */
void select_topk_cpu(const float* scores, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from, int64_t to);

/** acc = scores + attention, then select_topk_cpu(acc). */
void accumulate_select_cpu(const float* scores, const float* attention, float* acc, int32_t* index, int64_t H, int64_t L, int64_t k,
                           int64_t from, int64_t to);

/**
 * KVMerger's segment plan from its merged links [H, C] (strictly ascending in [0, L - 2]; link i joins slots i and
 * i + 1): segment [H, L] numbers each head's runs from 0, pivot [H, L - C] holds each run's highest-scored slot
 * (ties to the lower slot, NaN lowest).
 */
void link_segments_cpu(const int32_t* links, const float* scores, int32_t* segment, int32_t* pivot, int64_t H, int64_t L, int64_t C);

/** out[h, j] = in[h, index[h, j]] for every field; out has K slots per head. */
void gather_slots_cpu(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out);

/** KVMerger segment merge; out has O slots per head. value_scale: 1 = count, 0 = none. */
void merge_segments_cpu(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale,
                        const LayerOut& out);

/** CaM neighbour merge; out has K (kept) slots per head; S sources per head. */
void merge_into_neighbours_cpu(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out);

/** Causal softmax attention of queries [QH, N, D] over the cache, reduced to kv heads: sums and last are [H, L]. */
void observe_cpu(const LayerIn& in, const float* queries, int64_t QH, int64_t N, const int32_t* query_positions, float scale, int reduction,
                 int proportional, float* sums, float* last);

// --------------------------------------------------------------------------------------------- CUDA
// Device pointers; `stream` is a cudaStream_t. Each returns 0 or a cudaError_t code. Scalars stay on the host;
// temporaries come from cudaMallocAsync on the same stream.

int adjacent_cosine_cuda(const float* keys, float* out, int64_t H, int64_t L, int64_t D, void* stream);
int select_topk_cuda(const float* scores, int32_t* index, int64_t H, int64_t L, int64_t k, int64_t from, int64_t to, void* stream);
int accumulate_select_cuda(const float* scores, const float* attention, float* acc, int32_t* index, int64_t H, int64_t L, int64_t k,
                           int64_t from, int64_t to, void* stream);
int link_segments_cuda(const int32_t* links, const float* scores, int32_t* segment, int32_t* pivot, int64_t H, int64_t L, int64_t C, void* stream);
int gather_slots_cuda(const LayerIn& in, const int32_t* index, int64_t K, const LayerOut& out, void* stream);
int merge_segments_cuda(const LayerIn& in, const int32_t* segment, const int32_t* pivot, const float* sigma, int64_t O, int value_scale,
                        const LayerOut& out, void* stream);
int merge_into_neighbours_cuda(const LayerIn& in, const int32_t* keep, int64_t K, const int32_t* source, const int32_t* target_start,
                               const int32_t* target_count, const float* gate, int64_t S, const LayerOut& out, void* stream);
int observe_cuda(const LayerIn& in, const float* queries, int64_t QH, int64_t N, const int32_t* query_positions, float scale, int reduction,
                 int proportional, float* sums, float* last, void* stream);

}  // namespace kvfold
