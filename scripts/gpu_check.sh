#!/usr/bin/env bash
# One prepared GPU check (run on a machine with CUDA, from the repo root):
# the device-parametrised tests on CUDA, the benchmark's training steps at
# three scales (eager and torch.compile'd, ours from batch and from ptr, PyG,
# padded), then its pooling and equivariant sections. Writes into
# ${OUT:-gpu_out}/; every part has its own timeout so that one overrun still
# leaves the others' results.
set -u
out=${OUT:-gpu_out}
mkdir -p "$out"
export PYTHONPATH=$PWD:${PYTHONPATH:-}
{
  nvidia-smi -L
  python3 -c "import torch, torch_geometric as g; print('torch', torch.__version__, 'pyg', g.__version__, torch.cuda.get_device_name())"
} > "$out/env.txt" 2>&1
timeout 150 python3 -m pytest -q -p no:cacheprovider -k "cuda" \
  tests/_kernels tests/integration/hardening tests/integration/test_pipelines.py \
  > "$out/cuda_tests.txt" 2>&1
echo "pytest exit $?" >> "$out/cuda_tests.txt"
timeout 300 python3 benchmarks/bench.py --device cuda --sections step \
  --scales default,gnn,large --no-memory --json "$out/bench_steps.json" \
  > "$out/bench_steps.txt" 2>&1
echo "bench exit $?" >> "$out/bench_steps.txt"
timeout 90 python3 benchmarks/bench.py --device cuda \
  --sections pool,equivariant --json "$out/bench_kernels.json" \
  > "$out/bench_kernels.txt" 2>&1
echo "bench exit $?" >> "$out/bench_kernels.txt"
tail -5 "$out/cuda_tests.txt"; cat "$out/bench_steps.txt" "$out/bench_kernels.txt"
