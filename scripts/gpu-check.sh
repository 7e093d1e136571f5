#!/usr/bin/env bash
# GPU check for full-size models, for a machine with a GPU (at most ~10 minutes there).
#
# It builds nothing native: it builds the random-weight SD 1.5 export with the host's PyTorch
# (training/build_sd_random.py, minutes on many cores), then runs `npm run bench -- --model` on
# onnxruntime-node's webgpu provider and prints the UNet step time against the published anchor
# (ONNX Runtime CUDA, SD 1.5 fp16, about 22 ms per UNet step with classifier-free guidance on an
# A100). Node and onnxruntime-node come from the host, or from a folder made here with
# `scripts/gpu-check.sh --pack DIR` (node and the linux-x64 onnxruntime-node, xz-compressed,
# about 40 MB) for hosts without them; where the host lacks a Vulkan loader, unpack libvulkan1
# first (see the device notes of your workplace).
#
#   scripts/gpu-check.sh --pack .device          # here: what to carry
#   scripts/gpu-check.sh [.device]               # there: build the model, run the bench
#
# Environment: GPU_CHECK_ARCH (sd15), GPU_CHECK_DTYPE (fp16), GPU_CHECK_SIZE (512),
# GPU_CHECK_STEPS (10), GPU_CHECK_PROVIDERS (webgpu), GPU_CHECK_OUT (/tmp/gpu-check-model).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  dir=${2:?usage: gpu-check.sh --pack DIR}
  mkdir -p "$dir"
  tar -C "$(dirname "$(command -v node)")/.." -cJf "$dir/node.tar.xz" bin/node
  # onnxruntime-node (linux-x64 only) and what runs the TypeScript bench (tsx and its esbuild).
  tar -cJf "$dir/ort.tar.xz" --exclude='bin/napi-v6/darwin' --exclude='bin/napi-v6/win32' \
    --exclude='bin/napi-v6/linux/arm64' node_modules/onnxruntime-node node_modules/onnxruntime-common \
    node_modules/tsx node_modules/get-tsconfig node_modules/resolve-pkg-maps
  ls -la "$dir"
  exit 0
fi

carried=${1:-}
if [ -n "$carried" ]; then
  mkdir -p /tmp/gpu-check-node && tar -C /tmp/gpu-check-node -xJf "$carried/node.tar.xz"
  export PATH="/tmp/gpu-check-node/bin:$PATH"
  [ -d node_modules/onnxruntime-node ] || tar -xJf "$carried/ort.tar.xz"
fi
command -v node >/dev/null || { echo "gpu-check: no node (carry one with --pack)" >&2; exit 2; }
[ -d node_modules/onnxruntime-node ] || { echo "gpu-check: no onnxruntime-node (carry it with --pack)" >&2; exit 2; }

arch=${GPU_CHECK_ARCH:-sd15}
dtype=${GPU_CHECK_DTYPE:-fp16}
out=${GPU_CHECK_OUT:-/tmp/gpu-check-model}
if [ ! -f "$out/model_index.json" ]; then
  echo "gpu-check: building $arch $dtype at $out"
  python3 training/build_sd_random.py --arch "$arch" --dtype "$dtype" --out "$out"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
TTI_BENCH_PROVIDERS=${GPU_CHECK_PROVIDERS:-webgpu} node --import ./node_modules/tsx/dist/loader.mjs \
  bench/model-folder.ts --model "$out" --size "${GPU_CHECK_SIZE:-512}" --steps "${GPU_CHECK_STEPS:-10}" \
  | tee /tmp/gpu-check.txt
step=$(grep -o 'UNet step [0-9.]*' /tmp/gpu-check.txt | head -1 || true)
echo "anchor: ONNX Runtime CUDA, SD 1.5 fp16, ~22 ms per UNet step with CFG on an A100; ours: see the table above ($step)"
