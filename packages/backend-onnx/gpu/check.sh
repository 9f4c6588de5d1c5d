#!/usr/bin/env bash
# GPU check of the ai.kvfold CUDA kernels, for a machine with an NVIDIA GPU and nvcc (Node is not needed):
# builds native/src/cuda_kernels.cu + cpu_kernels.cc with a small driver (gpu/check.cu), checks every op
# against the CPU kernels on random inputs (float32 relative error <= 1e-5, int32 exact), then prints
# throughput next to the card's cudaMemcpy device-to-device bandwidth measured in the same run.
#
#   packages/backend-onnx/gpu/check.sh                 build, check, benchmark
#   packages/backend-onnx/gpu/check.sh --no-bench      build, check
#   packages/backend-onnx/gpu/check.sh --compile-only  build only (works without a GPU)
# Env: NVCC (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc), KVFOLD_CUDA_ARCH (default sm_90),
#      KVFOLD_GPU_OUT (binary folder, default native/build/gpu).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
native="$here/../native"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
arch="${KVFOLD_CUDA_ARCH:-sm_90}"
out="${KVFOLD_GPU_OUT:-$native/build/gpu}"

if [ ! -x "$nvcc" ]; then
  echo "check.sh: nvcc not found (set NVCC or install the CUDA toolkit)" >&2
  exit 3
fi
mkdir -p "$out"
SECONDS=0
"$nvcc" -std=c++17 -O2 -arch="$arch" -I"$native/include" \
  "$here/check.cu" "$native/src/cuda_kernels.cu" "$native/src/cpu_kernels.cc" -o "$out/kvfold_gpu_check"
echo "check.sh: built $out/kvfold_gpu_check ($arch, ${SECONDS} s)"

if [ "${1:-}" = "--compile-only" ]; then exit 0; fi
if command -v nvidia-smi >/dev/null 2>&1 && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "check.sh: nvidia-smi sees no GPU" >&2
  exit 2
fi
exec "$out/kvfold_gpu_check" "$@"
