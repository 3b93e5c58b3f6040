"""GPU forward-only A/B: cuDNN autotuning inside the graph capture on/off, for B=1/64/256 fp32/bf16 (1x),
plus the top CUDA kernels of one B=256 bf16 step. JSON on stdout (last line) and a readable summary.

    python benchmarks/gpu_variants.py --steps 30
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_agent  # noqa: E402  (synthetic weights, frames)

import vpt_agent.inference as inference  # noqa: E402


def time_engine(agent, batch: int, steps: int, autotune: bool) -> dict:
    inference.CUDNN_BENCHMARK_IN_CAPTURE = autotune
    start = time.perf_counter()
    engine = inference.StepEngine(agent.policy, batch, cuda_graph=True)
    capture_s = time.perf_counter() - start
    obs = [{"pov": f} for f in bench_agent.frames(4)]
    with torch.inference_mode():
        f = agent._frames([obs[i % 4] for i in range(batch)]).cuda()
        first = torch.zeros(batch, dtype=torch.bool, device="cuda")
        for _ in range(3):
            engine(f, first)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            engine(f, first)
            torch.cuda.synchronize()
        ms = 1000 * (time.perf_counter() - start) / steps
    return dict(dtype=str(agent.dtype).replace("torch.", ""), batch=batch, autotune=autotune, fwd_ms=ms,
                fwd_frames_per_s=1000 * batch / ms, capture_s=capture_s)


def top_kernels(agent, batch: int, n: int = 15) -> list:
    from torch.profiler import ProfilerActivity, profile

    engine = inference.StepEngine(agent.policy, batch, cuda_graph=False)
    obs = [{"pov": f} for f in bench_agent.frames(4)]
    with torch.inference_mode():
        f = agent._frames([obs[i % 4] for i in range(batch)]).cuda()
        first = torch.zeros(batch, dtype=torch.bool, device="cuda")
        engine(f, first)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            engine(f, first)
            torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / 1000, e.count) for e in prof.key_averages()]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    return [dict(kernel=k[:110], ms=round(ms, 3), share=round(ms / total, 3), calls=c) for k, ms, c in rows[:n]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 64, 256])
    a = p.parse_args()
    out = dict(machine=bench_agent.machine_info(), rows=[], kernels=None)
    for dtype in ("float32", "bfloat16"):
        agent = bench_agent.build_ours("1x", "cuda", dtype)
        for batch in a.batch:
            for autotune in (False, True):
                r = time_engine(agent, batch, a.steps, autotune)
                out["rows"].append(r)
                print(f"{r['dtype']:8} B={batch:<4} cudnn autotune {'on ' if autotune else 'off'}: "
                      f"fwd {r['fwd_ms']:7.2f} ms  {r['fwd_frames_per_s']:8.0f} frames/s  capture {r['capture_s']:.1f} s",
                      flush=True)
                torch.cuda.empty_cache()
        if dtype == "bfloat16":
            inference.CUDNN_BENCHMARK_IN_CAPTURE = False
            try:
                out["kernels"] = top_kernels(agent, max(a.batch))
            except Exception as e:  # the timings above matter more than the profile
                print(f"profile failed: {type(e).__name__}: {e}")
                out["kernels"] = []
            for k in out["kernels"]:
                print(f"  {k['share'] * 100:5.1f}% {k['ms']:7.3f} ms x{k['calls']:<3} {k['kernel']}")
        del agent
        torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
