#!/usr/bin/env bash
# The GPU figures in one go: correctness of the CUDA paths (experiments/cuda_checks.py), the
# backend benchmark in fp32 and in bf16 autocast, the population sweep, and two short training
# runs through the CLI (fp32 and bf16-mixed). Every step writes its log and results under DIR
# (default experiments/results/gpu) and a failing step does not stop the others; with ARCHIVE
# set, DIR is packed into that .tar.gz after every step, so a run cut short keeps what it did.
#
#     [ARCHIVE=results.tgz] bash experiments/gpu_benchmarks.sh [DIR]
#
# Needs a CUDA GPU, triton, and the bench extra (snntorch; spikingjelly with --no-deps, loguru).
set -u
out="${1:-experiments/results/gpu}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its log, report its status
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s"
    tail -n 25 "$out/$name.log"
    if [ -n "${ARCHIVE:-}" ]; then tar czf "$ARCHIVE" -C "$out" .; fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/gpu.txt"
$py -c "import torch, triton, lightning; print('torch', torch.__version__, 'triton', triton.__version__,
'lightning', lightning.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

step cuda_checks 180 $py experiments/cuda_checks.py --device cuda --json "$out/cuda_checks.json"
step bench_fp32 240 $py -m nmsnn.tools.bench --device cuda --workload all --timeout 100 --json "$out/benchmark_cuda.json"
step bench_bf16 120 $py -m nmsnn.tools.bench --device cuda --precision bf16 --timeout 60 \
    --impls per_step_loop,nmsnn_triton,spikingjelly_triton --json "$out/benchmark_cuda_bf16.json"
step population 240 $py experiments/population_sweep.py --device cuda --threads 0 --out "$out"
for precision in 32-true bf16-mixed; do
    NMSNN_LOG_DIR="$out/train_$precision" step "train_$precision" 60 $py -m nmsnn.cli.train trainer=gpu \
        trainer.precision=$precision trainer.enable_progress_bar=false
done
