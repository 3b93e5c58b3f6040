#!/usr/bin/env bash
# One-shot GPU check of the fast-inference work (CUDA graph, bf16, batched pre-processing), ~3 minutes on an H100.
#   bash benchmarks/gpu_check.sh                 # writes $OUT (default: gpu_out/) : tests.log bench_*.json
# Needs only torch (CUDA), numpy, opencv: pytest is taken from build/gpu_pydeps when it is not installed
# (cp -r .venv/lib/python3.*/site-packages/{_pytest,pytest,pluggy,iniconfig,packaging,py.py,pygments} build/gpu_pydeps).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
python -c "import pytest" 2>/dev/null || export PYTHONPATH="$PWD/build/gpu_pydeps:${PYTHONPATH:-}"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONDONTWRITEBYTECODE=1
python - <<'PY' | tee "$OUT/machine.txt"
import torch, cv2, platform
print("torch", torch.__version__, "cuda", torch.version.cuda, "cv2", cv2.__version__, "python", platform.python_version())
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
PY
B="python benchmarks/bench_agent.py --in-process --devices cuda"
# 1) correctness: graph == eager on the golden data (TF32 off), batched == single, GPU resize == cv2
timeout 60 python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_inference.py tests/test_resize.py \
    2>&1 | tail -25 | tee "$OUT/tests.log"
# CPU-recorded fp32 actions for the TF32 comparison (recorded on this machine's CPU if not shipped)
REF=benchmarks/data/cpu_actions_1x.npz
[ -f "$REF" ] || { REF="$OUT/cpu_actions_1x.npz"; timeout 25 python benchmarks/bench_agent.py --record-case 1x 149 "$REF"; }
# 2) B=1 whole step, graph on/off (+ forward alone), then large batches fp32/bf16 with the pre-processing share
timeout 50 $B --sizes 1x --batch 1 --dtypes float32 bfloat16 --cuda-graph on off --steps 100 --warmup 10 \
    --tf32 "$REF" --agreement 200 --json "$OUT/bench_1x_b1.json" 2>&1 | tail -12
timeout 40 $B --sizes 1x --batch 64 256 --dtypes float32 bfloat16 --steps 20 --warmup 3 \
    --json "$OUT/bench_1x_batch.json" 2>&1 | tail -6
# 3) 2x and 3x at B=1, graph on/off
timeout 35 $B --sizes 2x 3x --batch 1 --dtypes float32 --cuda-graph on off --steps 50 --warmup 5 \
    --json "$OUT/bench_2x3x_b1.json" 2>&1 | tail -6
echo "gpu_check done"
