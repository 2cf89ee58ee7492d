#!/usr/bin/env bash
# One prepared GPU benchmark: se_resnet50 vs resnet50 training throughput, Flax (bf16 compute,
# fp32 params) vs PyTorch (AMP bf16 + channels_last + torch.compile), at 224x224 and on
# CIFAR-sized input. Finishes in a few minutes on an H100/H200.
#   bash bench/gpu.sh           # on a machine with an NVIDIA GPU (jax[cuda] + CUDA torch)
#   bash bench/gpu.sh --tiny    # CPU smoke mode: tiny batches, proves the script runs
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--tiny" ]]; then
  JAX_PLATFORMS=cpu python bench/throughput.py --configs 32:2 --device cpu \
    --torch-variant channels_last --repeats 1 --warmup 0
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# fp32 parity on GPUs needs highest precision on both sides; for throughput we keep defaults.
python bench/throughput.py --configs 224:256,32:1024 --dtype bfloat16 --device cuda \
  --torch-variant compile --repeats 10 --warmup 3
