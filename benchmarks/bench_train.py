"""Training speed and peak memory: our multi-step BPTT trainer step vs the official single-step BC loop.

Rows (each in a fresh subprocess, so its peak memory is its own):

* ``bptt``: one step of ``vpt_agent.train`` - B lanes x T frames through ``VPTPolicy`` with carried memory,
  BC loss, backward, clip 5.0, Adam (``trainer.train_step``); fp32 or bf16 autocast; with or without
  gradient checkpointing.
* ``single``: the official ``behavioural_cloning.py`` scheme - 8 samples of one frame each, a forward and a
  backward per sample (memory carried, detached), then clip + optimizer step. On our network by default
  (same maths, golden-tested); ``--official PATH`` runs it on the official ``MinecraftAgentPolicy`` instead
  (needs gym3 and the official checkout importable).

Weights are a random init (speed does not depend on them); frames are random uint8 made on the host and
uploaded every step, as in training. frames/s counts trained frames. Peak memory: the CUDA allocator's peak
(``max_memory_allocated``) on GPU, the process's peak RSS on CPU. Every row names the machine.

    python benchmarks/bench_train.py                        # CPU, 1x, small batch (2-core friendly)
    python benchmarks/bench_train.py --device cuda --sizes 1x 2x 3x --batch 8 --seq-len 64 \\
        --dtypes float32 bfloat16 --grad-checkpoint off on --time-budget 170 --json bench_train_gpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine(device: str) -> str:
    """One line naming the machine: GPU name, or CPU model + torch's CPU capability + cores."""
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    cap = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    return f"{model}, {os.cpu_count()} cores, {cap}, {threads} torch threads (torch {torch.__version__})"


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _random_batch(B: int, T: int, img: int = 128):
    import torch

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (B, T, img, img, 3), dtype=torch.uint8, generator=g)
    buttons = torch.randint(0, 8641, (B, T), generator=g)
    camera = torch.randint(0, 121, (B, T), generator=g)
    return frames, buttons, camera


def run_bptt(case: Dict[str, Any]) -> Dict[str, Any]:
    """Time trainer steps of B x T frames; returns frames/s and peak memory."""
    import torch

    from vpt_agent.config import PolicyConfig
    from vpt_agent.policy import VPTPolicy
    from vpt_agent.train.config import TrainConfig
    from vpt_agent.train.trainer import (autocast_for, enable_grad_checkpointing, make_optimizer, train_step,
                                         trainable_parameters)

    dev = torch.device(case["device"])
    B, T = case["batch"], case["seq_len"]
    torch.manual_seed(0)
    with dev:
        policy = VPTPolicy(PolicyConfig.official(case["size"]))
    policy.to(memory_format=torch.channels_last)  # as the trainer does
    if case["grad_checkpoint"]:
        enable_grad_checkpointing(policy)
    params = trainable_parameters(policy, False)
    opt, _ = make_optimizer(params, TrainConfig())
    dtype = torch.bfloat16 if case["dtype"] == "bfloat16" else torch.float32
    frames, buttons, camera = _random_batch(B, T)
    if dev.type == "cuda":
        frames = frames.pin_memory()
    first = torch.zeros(B, T, dtype=torch.bool, device=dev)
    first[:, 0] = True
    mask = torch.ones(B, T, dtype=torch.bool, device=dev)
    state = policy.initial_state(B, dev)

    def step(state):
        t = {"frames": frames.to(dev, non_blocking=True), "buttons": buttons.to(dev), "camera": camera.to(dev),
             "mask": mask, "first": first}
        return train_step(policy, opt, params, t, state, 5.0, autocast_for(dev, dtype))[2]

    return _timed(step, state, case, frames_per_step=B * T)


def run_single(case: Dict[str, Any]) -> Dict[str, Any]:
    """The official BC scheme: per sample (1 frame) forward + backward; clip + step after ``batch`` samples."""
    import torch

    dev = torch.device(case["device"])
    n = case["batch"]
    torch.manual_seed(0)
    frames, buttons, camera = _random_batch(n, 1)
    if case.get("official"):
        policy, forward = _official_policy(case)
    else:
        from vpt_agent.config import PolicyConfig
        from vpt_agent.policy import VPTPolicy
        from vpt_agent.train.loss import action_nll

        with dev:
            policy = VPTPolicy(PolicyConfig.official(case["size"]))
        first = torch.zeros(1, 1, dtype=torch.bool, device=dev)

        def forward(frame, b, c, state):
            out = policy(frame, first, state)
            return action_nll(out.logp, b, c).sum(), out.state

    from vpt_agent.train.config import TrainConfig
    from vpt_agent.train.optim import make_optimizer

    params = list(policy.parameters())
    opt, _ = make_optimizer(params, TrainConfig())
    states = [_initial_state(policy, case) for _ in range(n)]

    def step(states):
        for i in range(n):
            loss, new = forward(frames[i:i + 1].to(dev), buttons[i:i + 1].to(dev), camera[i:i + 1].to(dev), states[i])
            (loss / n).backward()
            states[i] = _detach(new)
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return states

    return _timed(step, states, case, frames_per_step=n)


def _initial_state(policy, case):
    import torch

    if case.get("official"):
        return policy.initial_state(1)
    return policy.initial_state(1, torch.device(case["device"]))


def _detach(state):
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (list, tuple)):
        out = [_detach(s) for s in state]
        return type(state)(*out) if hasattr(state, "_fields") else type(state)(out)
    return state


def _official_policy(case: Dict[str, Any]):
    """The official MinecraftAgentPolicy (its checkout on sys.path; minerl stubbed) and a per-sample forward."""
    import types

    import torch

    sys.path.insert(0, case["official"])
    for name in ["minerl", "minerl.herobraine", "minerl.herobraine.hero", "minerl.herobraine.hero.mc"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    from gym3.types import DictType
    from lib.action_mapping import CameraHierarchicalMapping
    from lib.policy import MinecraftAgentPolicy

    from vpt_agent.config import official_net_kwargs

    dev = torch.device(case["device"])
    space = DictType(**CameraHierarchicalMapping(n_camera_bins=11).get_action_space_update())
    policy = MinecraftAgentPolicy(space, official_net_kwargs(case["size"]), {"temperature": 2.0}).to(dev)
    first = torch.zeros(1, dtype=torch.bool, device=dev)

    def forward(frame, b, c, state):
        pd, _, new = policy.get_output_for_observation({"img": frame[:, 0]}, state, first)
        return -policy.get_logprob_of_action(pd, {"buttons": b, "camera": c}).sum(), new

    def initial_state(n):  # the official state lives on the default device
        return _to(policy.net.initial_state(n), dev)

    policy.initial_state = initial_state
    return policy, forward


def _to(state, dev):
    import torch

    if isinstance(state, torch.Tensor):
        return state.to(dev)
    if isinstance(state, (list, tuple)):
        return type(state)(_to(s, dev) for s in state)
    return state


def _timed(step, state, case: Dict[str, Any], frames_per_step: int) -> Dict[str, Any]:
    import torch

    dev = case["device"]
    for _ in range(case["warmup"]):
        state = step(state)
    _sync(dev)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n, t0 = 0, time.perf_counter()
    while True:
        state = step(state)
        n += 1
        _sync(dev)
        elapsed = time.perf_counter() - t0
        if n >= case["steps"] or elapsed >= case["case_seconds"]:
            break
    return {"frames_per_s": round(n * frames_per_step / elapsed, 2), "s_per_step": round(elapsed / n, 4),
            "timed_steps": n, "peak_mem_gb": round(_peak_gb(dev), 2)}


def run_case(case: Dict[str, Any]) -> Dict[str, Any]:
    import torch

    if case.get("threads"):
        torch.set_num_threads(case["threads"])
    row = dict(case)
    try:
        row.update(run_bptt(case) if case["impl"] == "bptt" else run_single(case))
    except torch.OutOfMemoryError:
        row["error"] = "out of memory"
    row["machine"] = machine(case["device"])
    return row


def cases(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """1x first (the targets), then 2x, 3x; per size the single-step loop, then BPTT settings."""
    out = []
    common = dict(device=args.device, warmup=args.warmup, steps=args.steps, case_seconds=args.case_seconds,
                  threads=args.threads)
    for size in args.sizes:
        out.append(dict(common, impl="single", size=size, dtype="float32", grad_checkpoint=False,
                        batch=8, seq_len=1, official=args.official))
        for ckpt in args.grad_checkpoint:
            for dtype in args.dtypes:
                out.append(dict(common, impl="bptt", size=size, dtype=dtype, grad_checkpoint=ckpt == "on",
                                batch=args.batch, seq_len=args.seq_len))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--sizes", nargs="+", default=["1x"], choices=("1x", "2x", "3x"))
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=("float32", "bfloat16"))
    p.add_argument("--grad-checkpoint", nargs="+", default=["off"], choices=("off", "on"))
    p.add_argument("--batch", type=int, default=2, help="B lanes of the BPTT step (the issue's setting: 8)")
    p.add_argument("--seq-len", type=int, default=16, help="T frames per lane (the issue's setting: 64)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per case (fewer if --case-seconds runs out)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--case-seconds", type=float, default=20.0, help="timing stops after this many seconds")
    p.add_argument("--time-budget", type=float, default=600.0, help="total seconds; later cases are skipped")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--official", default=None, metavar="PATH",
                   help="run the single-step loop on the official MinecraftAgentPolicy from this checkout")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    rows, start = [], time.perf_counter()
    for case in cases(args):
        left = args.time_budget - (time.perf_counter() - start)
        ckpt = "on " if case["grad_checkpoint"] else "off"
        label = f"{case['impl']:6s} {case['size']} {case['dtype']:8s} ckpt={ckpt}"
        if left < 10:
            print(f"{label}: skipped (time budget used)", flush=True)
            continue
        try:
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                  text=True, timeout=max(left, 10))
            row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else \
                dict(case, error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
        except subprocess.TimeoutExpired:
            row = dict(case, error="time budget")
        rows.append(row)
        if "error" in row:
            print(f"{label}: {row['error']}", flush=True)
        else:
            print(f"{label}: B={row['batch']} T={row['seq_len']} {row['frames_per_s']:9.1f} frames/s "
                  f"{row['peak_mem_gb']:6.2f} GB peak  [{row['machine']}]", flush=True)
    _ratios(rows)
    doc = json.dumps({"rows": rows}, indent=1)
    if args.json:
        Path(args.json).write_text(doc)
    print(doc)
    return 0


def _ratios(rows: List[Dict[str, Any]]) -> None:
    """Speed-up of each BPTT row over the single-step loop of the same size (same machine, same run)."""
    base = {r["size"]: r["frames_per_s"] for r in rows if r["impl"] == "single" and "frames_per_s" in r}
    for r in rows:
        if r["impl"] == "bptt" and "frames_per_s" in r and r["size"] in base:
            r["speedup_vs_single"] = round(r["frames_per_s"] / base[r["size"]], 1)
            print(f"bptt {r['size']} {r['dtype']} ckpt={r['grad_checkpoint']}: {r['speedup_vs_single']}x the "
                  f"single-step loop", flush=True)


if __name__ == "__main__":
    sys.exit(main())
