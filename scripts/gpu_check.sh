#!/usr/bin/env bash
# One prepared GPU check (run on a machine with CUDA, from the repo root):
# the device-parametrised tests on CUDA, then the benchmark suite on the GPU.
# Writes into ${OUT:-gpu_out}/.
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-}
{
  nvidia-smi -L
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, torch.cuda.get_device_name())"
} > "$out/env.txt" 2>&1
timeout 200 python3 -m pytest -q -p no:cacheprovider -k "cuda" \
  tests/test_kernels.py tests/hardening tests/test_pipelines.py \
  > "$out/cuda_tests.txt" 2>&1
echo "pytest exit $?" >> "$out/cuda_tests.txt"
timeout 200 python3 benchmarks/bench.py --device cuda --json "$out/bench_cuda.json" \
  > "$out/bench_cuda.txt" 2>&1
echo "bench exit $?" >> "$out/bench_cuda.txt"
tail -5 "$out/cuda_tests.txt"; cat "$out/bench_cuda.txt"
