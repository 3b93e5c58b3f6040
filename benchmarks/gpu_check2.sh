#!/usr/bin/env bash
# Second GPU pass (~2 minutes): CUDA tests incl. cuDNN autotuning in capture, forward A/B + kernel profile,
# and whole-step rows with autotuning on. Same set-up as gpu_check.sh.  bash benchmarks/gpu_check2.sh
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
python -c "import pytest" 2>/dev/null || export PYTHONPATH="$PWD/build/gpu_pydeps:${PYTHONPATH:-}"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONDONTWRITEBYTECODE=1
timeout 30 python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15 | tee "$OUT/tests2.log"
timeout 50 python benchmarks/gpu_variants.py --steps 30 > "$OUT/variants.log" 2>&1; head -c 4000 "$OUT/variants.log"
timeout 45 python benchmarks/bench_agent.py --in-process --devices cuda --cudnn-autotune --sizes 1x --batch 1 64 256 \
    --dtypes float32 bfloat16 --steps 30 --warmup 5 --json "$OUT/bench_1x_autotune.json" 2>&1 | tail -8
echo "gpu_check2 done"
