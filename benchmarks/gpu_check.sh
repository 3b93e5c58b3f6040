#!/usr/bin/env bash
# One-shot GPU check of the evaluation runner and the fast-inference work, ~5 minutes on an H200:
#   OUT=gpu_out bash benchmarks/gpu_check.sh [OFFICIAL_CHECKOUT]      # writes $OUT/*.json, *.log
# 1) runner throughput (bench_eval: 1x, embedded env, K=12, G = 1, 2, 12), 2) the CUDA tests, 3) 1x at B=1 (CUDA
# graph on/off, fp32/bf16, TF32 vs CPU actions, bf16/fp32 agreement), 4) 1x at B=64/256 (frames at the model's
# size and full frames), 5) the official agent vs ours on this GPU (with an official checkout) and our bf16 2x/3x.
# Python packages the machine lacks (gymnasium; gym3 + cffi for the official agent) may come as wheels in .whl/.
set -u
OUT=${OUT:-gpu_out}
OFFICIAL=${1:-}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
python3 -c "import vpt_envs" 2>/dev/null || [ -e vpt_envs ] || ln -s envs vpt_envs  # not pip-installed here
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
python3 - <<'PY' | tee "$OUT/machine.txt"
import torch, cv2, platform, os
print("torch", torch.__version__, "cuda", torch.version.cuda, "cv2", cv2.__version__, "python", platform.python_version(),
      "cpus", os.cpu_count(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
PY
timeout -s USR1 -k 10 85 python3 benchmarks/bench_eval.py --time-budget 55 --pipeline 1 2 12 --max-steps 400 \
    --json "$OUT/eval.json" > "$OUT/eval.log" 2>&1
grep -E "^K=|agent alone|skipped|Error" "$OUT/eval.log" || tail -20 "$OUT/eval.log"
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_inference.py tests/test_resize.py \
    2>&1 | tail -15 | tee "$OUT/tests.log"
B="python3 benchmarks/bench_agent.py --in-process --devices cuda"
REF=benchmarks/data/cpu_actions_1x.npz
timeout 55 $B --sizes 1x --batch 1 --dtypes float32 bfloat16 --cuda-graph on off --steps 100 --warmup 10 \
    --tf32 "$REF" --agreement 200 --json "$OUT/bench_1x_b1.json" 2>&1 | tail -8
timeout 50 $B --sizes 1x --batch 64 256 --dtypes float32 bfloat16 --steps 20 --warmup 3 --frames model \
    --json "$OUT/bench_1x_batch_model.json" 2>&1 | tail -4
timeout 25 $B --sizes 1x --batch 256 --dtypes bfloat16 float32 --steps 20 --warmup 3 \
    --json "$OUT/bench_1x_batch_full.json" 2>&1 | tail -2
if [ -n "$OFFICIAL" ]; then
  timeout 60 $B --official "$OFFICIAL" --official-only --sizes 1x 2x 3x --steps 30 --warmup 5 \
      --json "$OUT/bench_official.json" 2>&1 | grep -E "^ours vs|^official|^ours-pair|FAILED"
fi
timeout 35 $B --sizes 2x 3x --batch 1 --dtypes bfloat16 --steps 50 --warmup 5 --json "$OUT/bench_2x3x_bf16.json" \
    2>&1 | tail -2
echo "gpu_check done"
