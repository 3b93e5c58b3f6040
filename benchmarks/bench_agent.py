"""Agent speed and memory: steps/s and ms/step for the 1x/2x/3x VPT configs.

Synthetic weights in the official layout (deterministic, see tests/golden_helpers/weights_gen.py).
Each case runs in a fresh subprocess so that peak memory (RSS on CPU, allocator peak on CUDA) is its own.

    python benchmarks/bench_agent.py                               # 1x, B=1/4/8/32, fp32+bf16, cpu(+cuda)
    python benchmarks/bench_agent.py --sizes 1x 2x 3x --json out.json
    python benchmarks/bench_agent.py --official /path/to/Video-Pre-Training --sizes 1x --batch 1 --steps 50
    python benchmarks/bench_agent.py --agreement 200               # bf16 vs fp32 action agreement, 200 steps

``--official`` also times the official ``MineRLAgent`` (its checkout must be importable with gym3 installed) and
checks that our fp32 actions equal its actions on the same frames (deterministic, argmax).
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
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SIZES = ("1x", "2x", "3x")


def net_kwargs(size: str) -> Dict[str, Any]:
    from vpt_agent.config import official_net_kwargs

    return official_net_kwargs(size)


def synthetic_state_dict(size: str):
    from golden_helpers.key_layout import official_keys
    from golden_helpers.weights_gen import make_state_dict

    return make_state_dict(0, official_keys({"net": net_kwargs(size)}))


def frames(n: int, seed: int = 0) -> List[np.ndarray]:
    from golden_helpers.obs_gen import make_obs

    return [make_obs(seed, t) for t in range(n)]


def build_ours(size: str, device: str, dtype: str):
    from vpt_agent import PolicyConfig, VPTAgent
    from vpt_agent.loading import load_state_dict

    cfg = PolicyConfig.from_kwargs(net_kwargs(size), temperature=2.0)
    agent = VPTAgent.from_config(cfg, device=device, dtype=dtype, seed=0)
    load_state_dict(agent.policy, synthetic_state_dict(size))
    return agent


def _reset_peak_mem(device: str) -> None:
    """Start peak-memory accounting now, so weight generation and set-up do not count."""
    import gc

    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
    except OSError:
        pass


def _peak_mem_mb(device: str) -> float:
    """Peak memory since :func:`_reset_peak_mem`: CUDA allocator peak, or peak RSS of this process on CPU."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(size: str, batch: int, dtype: str, device: str, steps: int, warmup: int) -> Dict[str, Any]:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    agent = build_ours(size, device, dtype)
    obs = [{"pov": f} for f in frames(16)]
    batches = [[obs[(t + i) % len(obs)] for i in range(batch)] for t in range(len(obs))]
    _reset_peak_mem(device)
    for t in range(warmup):
        agent.get_actions(batches[t % len(batches)], [t == 0] * batch)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in range(steps):
        agent.get_actions(batches[t % len(batches)], [False] * batch)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return dict(impl="vpt-agent", size=size, batch=batch, dtype=dtype, device=device, steps=steps,
                ms_per_step=1000 * elapsed / steps, ms_per_frame=1000 * elapsed / steps / batch,
                frames_per_s=steps * batch / elapsed, peak_mem_mb=_peak_mem_mb(device))


def run_official(path: str, size: str, steps: int, warmup: int) -> Dict[str, Any]:
    """Time the official MineRLAgent.get_action path (B=1, fp32) and compare its argmax actions with ours."""
    import types

    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    sys.path.insert(0, path)
    for name in ["minerl", "minerl.herobraine", "minerl.herobraine.hero", "minerl.herobraine.hero.mc"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    try:
        import gym  # noqa: F401  (agent.py builds TARGET_ACTION_SPACE from gym.spaces; only validate_env uses it)
    except ImportError:
        gym = types.ModuleType("gym")
        gym.spaces = types.SimpleNamespace(Discrete=lambda *a, **k: None, Box=lambda *a, **k: None)
        sys.modules["gym"] = gym
    import agent as official  # noqa: E402  (the official agent.py)

    official.validate_env = lambda env: None
    off = official.MineRLAgent(None, device="cpu", policy_kwargs=net_kwargs(size), pi_head_kwargs={"temperature": 2.0})
    off.policy.load_state_dict(synthetic_state_dict(size), strict=False)
    off.reset()
    obs = [{"pov": f} for f in frames(16)]
    _reset_peak_mem("cpu")
    for t in range(warmup):
        off.get_action(obs[t % len(obs)])
    start = time.perf_counter()
    for t in range(steps):
        off.get_action(obs[t % len(obs)])
    elapsed = time.perf_counter() - start
    peak_mb = _peak_mem_mb("cpu")
    # identical actions: deterministic rollouts of both implementations on the same frames
    off.reset()
    ours = build_ours(size, "cpu", "float32")
    same = 0
    n_cmp = min(steps, 40)
    for t in range(n_cmp):
        inp = off._env_obs_to_agent(obs[t % len(obs)])
        ac, off.hidden_state, _ = off.policy.act(inp, off._dummy_first, off.hidden_state, stochastic=False)
        st = ours.act([obs[t % len(obs)]], [t == 0], deterministic=True)
        same += int(int(ac["buttons"][0, 0]) == st.buttons[0] and int(ac["camera"][0, 0]) == st.camera[0])
    return dict(impl="official", size=size, batch=1, dtype="float32", device="cpu", steps=steps,
                ms_per_step=1000 * elapsed / steps, ms_per_frame=1000 * elapsed / steps,
                frames_per_s=steps / elapsed, peak_mem_mb=peak_mb,
                identical_actions=f"{same}/{n_cmp}")


def run_agreement(size: str, device: str, steps: int) -> Dict[str, Any]:
    """Share of steps where bf16 and fp32 agents pick the same (argmax) joint actions on the same frames."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    f32, bf16 = build_ours(size, device, "float32"), build_ours(size, device, "bfloat16")
    same_b = same_c = 0
    for t, f in enumerate(frames(steps, seed=1)):
        a = f32.act([{"pov": f}], [t == 0], deterministic=True)
        b = bf16.act([{"pov": f}], [t == 0], deterministic=True)
        same_b += int(a.buttons[0] == b.buttons[0])
        same_c += int(a.camera[0] == b.camera[0])
    return dict(impl="agreement", size=size, device=device, steps=steps,
                buttons_agree=same_b / steps, camera_agree=same_c / steps)


def _subprocess(args: List[str]) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: List[Dict[str, Any]]) -> str:
    head = f"{'impl':10} {'size':4} {'dev':4} {'dtype':8} {'B':>3} {'ms/step':>8} {'ms/frame':>8} {'frames/s':>8} {'peak MB':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["impl"] == "agreement":
            lines.append(f"bf16 vs fp32 argmax agreement ({r['size']}, {r['steps']} steps): buttons "
                         f"{100 * r['buttons_agree']:.1f}%, camera {100 * r['camera_agree']:.1f}%")
            continue
        extra = f"  identical actions {r['identical_actions']}" if "identical_actions" in r else ""
        lines.append(f"{r['impl']:10} {r['size']:4} {r['device']:4} {r['dtype']:8} {r['batch']:>3} "
                     f"{r['ms_per_step']:8.1f} {r['ms_per_frame']:8.2f} {r['frames_per_s']:8.1f} "
                     f"{r['peak_mem_mb']:8.0f}{extra}")
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["1x"], choices=SIZES)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4, 8, 32])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--official", default=None, help="path to an official Video-Pre-Training checkout to compare")
    p.add_argument("--agreement", type=int, default=0, help="bf16/fp32 agreement rollout length (0: skip)")
    p.add_argument("--json", default=None, help="write all results to this JSON file")
    p.add_argument("--case", nargs=4, metavar=("SIZE", "BATCH", "DTYPE", "DEVICE"), help=argparse.SUPPRESS)
    p.add_argument("--official-case", nargs=2, metavar=("PATH", "SIZE"), help=argparse.SUPPRESS)
    p.add_argument("--agreement-case", nargs=3, metavar=("SIZE", "DEVICE", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.case:  # child process: one measurement, JSON on stdout
        size, batch, dtype, device = a.case
        print(json.dumps(run_case(size, int(batch), dtype, device, a.steps, a.warmup)))
        return
    if a.official_case:
        print(json.dumps(run_official(a.official_case[0], a.official_case[1], a.steps, a.warmup)))
        return
    if a.agreement_case:
        size, device, steps = a.agreement_case
        print(json.dumps(run_agreement(size, device, int(steps))))
        return

    import torch

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    common = ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    for size in a.sizes:
        if a.official:
            rows.append(_subprocess(["--official-case", a.official, size, *common]))
            print(_table(rows[-1:]), flush=True)
        for device in devices:
            for dtype in a.dtypes:
                for b in a.batch:
                    rows.append(_subprocess(["--case", size, str(b), dtype, device, *common]))
                    print(_table(rows[-1:]).splitlines()[-1], flush=True)
            if a.agreement:
                rows.append(_subprocess(["--agreement-case", size, device, str(a.agreement)]))
    machine = dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                   torch=torch.__version__, cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    print(f"\nmachine: {machine}\n" + _table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(dict(machine=machine, results=rows), indent=2))


if __name__ == "__main__":
    main()
