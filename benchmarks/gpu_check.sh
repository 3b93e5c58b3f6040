#!/usr/bin/env bash
# One-shot GPU check of the evaluation runner and the fast-inference work (each part has its own timeout):
#   OUT=gpu_out bash benchmarks/gpu_check.sh [OFFICIAL_CHECKOUT]            # every part, ~9 minutes on an H200
#   PARTS="eval tests cpu" OUT=gpu_out bash benchmarks/gpu_check.sh         # some parts
#   TESTS="tests/test_cuda.py" PARTS=tests OUT=gpu_out bash benchmarks/gpu_check.sh   # other test files
# Parts (written to $OUT/*.json, *.log):
#   eval      runner throughput (bench_eval: 1x, embedded env, K=12, G = 2, 1, 3, 1,000-step episodes)
#   tests     the CUDA tests, the inference/resize tests, the compiled CPU step on the host's CPU
#   b1        1x at B=1 (CUDA graph on/off, fp32/bf16, TF32 vs CPU actions, bf16/fp32 agreement)
#   batch     1x at B=64/256 (frames at the model's size, and full frames)
#   official  the official agent vs ours on this GPU (needs OFFICIAL_CHECKOUT)
#   big       our bf16 2x/3x at B=1
#   cpu       the host CPU at B=1: fp32/bf16, eager/compiled, and bf16 (as the agent defaults it) vs fp32 agreement
#   triton    session 9's Triton first convolution + pool + ReLU and GroupNorm (on by default): tests/test_cuda.py;
#             bench_cnn's B=256 variants (default, torch-gn, no-conv-pool, s6-kernels: both off) in bf16 and fp32
#             with a kernel profile; the 1x step at B=256 (bf16, fp32) with the default kernels and s6-kernels;
#             with B1=1 also B=1 (graph on/off) and the bf16/fp32 agreement of both
#   cpu2      the host CPU with 2 threads, as this project's 2-core machines run it: 1x B=1 bf16 vs fp32 get_action
#             (eager) with their argmax agreement, then bench_cpu_bf16.py's parts
#   cpu2tune  the same CPU and threads: 1x B=1 get_action, bf16 and fp32, eager and compile="max-autotune" (AMX
#             matrix products for bf16), with the autotuned bf16 agent's agreement with eager fp32 (~8 min)
#   cpu2frozen the same CPU and threads: 1x B=1 get_action, bf16 and fp32, compile=True (frozen weights: inductor hands
#             the linears oneDNN's pre-packed kernels), with the compiled bf16 agent's agreement with eager fp32 (~4 min)
#   b256      where B=256 stands: host pre-processing, the encoder's CUDA kernel variants with a kernel profile, the
#             1x step in bf16 and fp32 (TF32 convolutions, PyTorch's default; strict fp32, TF32 off) with the default
#             kernels, some turned off, and the (off by default) Triton GroupNorm; eager B=1 with the default
#             kernels, without session 6's (plain), without any (none: PyTorch's GroupNorm, ~3 kernels per norm
#             instead of the channels-last one's ~10-18 small ones) and with the Triton GroupNorm (2 per norm)
# Python packages the machine lacks (gymnasium; gym3 + cffi for the official agent) may come as wheels in .whl/.
set -u
OUT=${OUT:-gpu_out}
OFFICIAL=${1:-}
PARTS=${PARTS:-"eval tests b1 batch official big cpu b256"}
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
      "cpus", os.cpu_count(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
      "cpu capability", torch.backends.cpu.get_cpu_capability(),
      "onednn bf16", torch.ops.mkldnn._is_mkldnn_bf16_supported())
PY
has() { case " $PARTS " in *" $1 "*) return 0;; *) return 1;; esac; }
B="python3 benchmarks/bench_agent.py --in-process --devices cuda"
if has eval; then
  timeout -s USR1 -k 10 130 python3 benchmarks/bench_eval.py --time-budget 85 --pipeline 2 1 3 --max-steps 1000 \
      --json "$OUT/eval.json" > "$OUT/eval.log" 2>&1
  grep -E "^K=|agent alone|skipped|Error" "$OUT/eval.log" || tail -30 "$OUT/eval.log"
fi
if has tests; then
  timeout 150 python3 -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_cuda.py tests/test_inference.py \
      tests/test_resize.py tests/test_compile.py} --tb=short 2>&1 | tail -40 | tee "$OUT/tests.log"
fi
if has b1; then
  timeout 55 $B --sizes 1x --batch 1 --dtypes float32 bfloat16 --cuda-graph on off --steps 100 --warmup 10 \
      --tf32 benchmarks/data/cpu_actions_1x.npz --agreement 200 --json "$OUT/bench_1x_b1.json" 2>&1 | tail -8
fi
if has batch; then
  timeout 50 $B --sizes 1x --batch 64 256 --dtypes float32 bfloat16 --steps 20 --warmup 3 --frames model \
      --json "$OUT/bench_1x_batch_model.json" 2>&1 | tail -4
  timeout 25 $B --sizes 1x --batch 256 --dtypes bfloat16 float32 --steps 20 --warmup 3 \
      --json "$OUT/bench_1x_batch_full.json" 2>&1 | tail -2
fi
if has official && [ -n "$OFFICIAL" ]; then
  timeout 60 $B --official "$OFFICIAL" --official-only --sizes 1x 2x 3x --steps 30 --warmup 5 \
      --json "$OUT/bench_official.json" 2>&1 | grep -E "^ours vs|^official|^ours-pair|FAILED"
fi
if has big; then
  timeout 35 $B --sizes 2x 3x --batch 1 --dtypes bfloat16 --steps 50 --warmup 5 --json "$OUT/bench_2x3x_bf16.json" \
      2>&1 | tail -2
fi
if has cpu; then  # the slow part: each compiled case compiles the 1x step (inductor's on-disk cache helps the next)
  timeout 240 python3 benchmarks/bench_agent.py --in-process --devices cpu --sizes 1x --batch 1 \
      --dtypes bfloat16 float32 --compile on off --steps 30 --warmup 5 --agreement 200 \
      --json "$OUT/bench_cpu_b1.json" 2>&1 | tail -8
fi
if has b256; then
  timeout 60 python3 benchmarks/bench_frames.py --json "$OUT/frames.json" 2>&1 | tail -8
  timeout 100 python3 benchmarks/bench_cnn.py --device cuda --batch 256 --dtypes bfloat16 float32 --profile \
      --json "$OUT/cnn_variants_b256.json" > "$OUT/cnn_variants_b256.log" 2>&1
  grep -E '"part": "(encode|step)"' "$OUT/cnn_variants_b256.log" | cut -c1-160
  timeout 120 $B --sizes 1x --batch 256 --dtypes bfloat16 --cnn default s6-kernels aten-pool unfused-relu \
      --frames model --steps 30 --warmup 5 --json "$OUT/bench_1x_b256_bf16.json" 2>&1 | tail -4
  timeout 100 $B --sizes 1x --batch 256 --dtypes float32 --conv-tf32 on off --cnn default s6-kernels --frames model \
      --steps 20 --warmup 3 --json "$OUT/bench_1x_b256_fp32.json" 2>&1 | tail -5
  timeout 90 $B --sizes 1x --batch 1 --dtypes float32 --cuda-graph off --cnn default s6-kernels plain none --steps 50 \
      --warmup 5 \
      --json "$OUT/bench_1x_b1_eager.json" 2>&1 | tail -5
fi
if has triton; then
  timeout 120 python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_cuda.py 2>&1 | tail -15 \
      | tee "$OUT/tests_cuda.log"
  timeout 90 python3 benchmarks/bench_cnn.py --device cuda --batch 256 --dtypes bfloat16 float32 \
      --variants default torch-gn no-conv-pool s6-kernels --profile default --json "$OUT/cnn_triton_b256.json" \
      > "$OUT/cnn_triton_b256.log" 2>&1
  grep -E '"part": "(encode|step)"' "$OUT/cnn_triton_b256.log" | cut -c1-120
  timeout 70 $B --sizes 1x --batch 256 --dtypes bfloat16 float32 --cnn default s6-kernels --frames model --steps 20 \
      --warmup 3 --json "$OUT/triton_b256.json" 2>&1 | grep -E "^vpt-agent" | head -4
  [ -z "${B1:-}" ] || timeout 90 $B --sizes 1x --batch 1 --dtypes float32 bfloat16 --cuda-graph on off \
      --cnn default s6-kernels --steps 40 --warmup 5 --agreement 200 --json "$OUT/triton_b1.json" 2>&1 \
      | grep -E "^vpt-agent|agreement" | head -10
fi
if has cpu2; then
  BENCH_THREADS=2 timeout 120 python3 benchmarks/bench_agent.py --in-process --devices cpu --sizes 1x --batch 1 \
      --dtypes bfloat16 float32 --steps 20 --warmup 3 --agreement 200 --json "$OUT/bench_cpu2_b1.json" 2>&1 | tail -6
  timeout 150 python3 benchmarks/bench_cpu_bf16.py --threads 2 --steps 10 --agreement 0 \
      --json "$OUT/cpu_bf16_t2.json" > "$OUT/cpu_bf16_t2.log" 2>&1
  tail -25 "$OUT/cpu_bf16_t2.log"
fi
if has cpu2tune; then
  BENCH_THREADS=2 timeout 540 python3 benchmarks/bench_agent.py --in-process --devices cpu --sizes 1x --batch 1 \
      --dtypes bfloat16 float32 --compile off max-autotune --steps 30 --warmup 3 --agreement 200 \
      --json "$OUT/bench_cpu2_tune.json" > "$OUT/bench_cpu2_tune.log" 2>&1
  tail -8 "$OUT/bench_cpu2_tune.log"
fi
if has cpu2frozen; then
  BENCH_THREADS=2 timeout 300 python3 benchmarks/bench_agent.py --in-process --devices cpu --sizes 1x --batch 1 \
      --dtypes bfloat16 float32 --compile on --steps 30 --warmup 3 --agreement 200 \
      --json "$OUT/bench_cpu2_frozen.json" > "$OUT/bench_cpu2_frozen.log" 2>&1
  tail -6 "$OUT/bench_cpu2_frozen.log"
fi
echo "gpu_check done"
