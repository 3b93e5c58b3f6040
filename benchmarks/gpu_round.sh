#!/usr/bin/env bash
# One GPU session for the round's device-only numbers (run from the repository root on a GPU machine):
#   the demo agent's training (scripts/train_voxel_demo.py), then the runner, training and IDM benchmarks.
#   OUT=gpu_round bash benchmarks/gpu_round.sh
# Without `pip install -e .` the env package is made importable as vpt_envs by a symlink to envs/.
# Extra Python packages that machine lacks (gymnasium) may come as wheels in .whl/ (installed to /tmp/site).
set -u
OUT=${OUT:-gpu_round}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
[ -e vpt_envs ] || ln -s envs vpt_envs
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
python3 -c "import torch, platform; print('torch', torch.__version__, 'gpu', torch.cuda.get_device_name(0), 'python', platform.python_version())"
nproc
# 1) the demo agent: expert data + BC + DAgger, best validated checkpoint kept, scored on seeds 1000..1049
timeout ${DEMO_TIMEOUT:-285} python3 scripts/train_voxel_demo.py --out /tmp/demo --time-budget ${DEMO_BUDGET:-265} \
  --device cuda --workers 15 --envs-per-worker 2 --expert-episodes 120 --val-episodes 30 --rounds 5 --batch 64 \
  --test-episodes 50 2>&1 | tail -25
cp /tmp/demo/voxel-treechop-demo.model /tmp/demo/voxel-treechop-demo.weights /tmp/demo/metrics.json "$OUT/" 2>/dev/null
# 2) evaluation runner: 1x, embedded env, K=12, pipeline groups 1..4, against the bound
timeout 95 python3 benchmarks/bench_eval.py --time-budget 70 --json "$OUT/eval_gpu.json" 2>&1 | tail -12
# 3) training: multi-step BPTT vs the official single-step scheme, fp32/bf16, gradient checkpointing
timeout 110 python3 benchmarks/bench_train.py --device cuda --sizes 1x 2x --batch 8 --seq-len 64 \
  --dtypes float32 bfloat16 --grad-checkpoint off on --steps 3 --warmup 1 --case-seconds 8 --time-budget 90 \
  --json "$OUT/train_gpu.json" 2>&1 | tail -14
# 4) the 4x IDM's network throughput
timeout 40 python3 benchmarks/bench_idm.py --device cuda --frames 128 --batch 4 --json "$OUT/idm_gpu.json" 2>&1 | tail -5
echo "gpu_round done"
