"""Agent speed and memory: steps/s and ms/step for the 1x/2x/3x VPT configs.

Synthetic weights in the official layout (deterministic, see tests/golden_helpers/weights_gen.py).
Each case runs in a fresh subprocess so that peak memory (RSS on CPU, allocator peak on CUDA) is its own.

    python benchmarks/bench_agent.py                               # 1x, B=1/4/8/32, fp32+bf16, cpu(+cuda)
    python benchmarks/bench_agent.py --sizes 1x 2x 3x --json out.json
    python benchmarks/bench_agent.py --official /path/to/Video-Pre-Training --sizes 1x --batch 1 --steps 50
    python benchmarks/bench_agent.py --agreement 200               # bf16 vs fp32 action agreement, 200 steps
    python benchmarks/bench_agent.py --devices cuda --batch 1 --cuda-graph on off   # CUDA graph vs eager steps
    python benchmarks/bench_agent.py --devices cpu --batch 1 --compile on off       # compiled vs eager CPU steps
    python benchmarks/bench_agent.py --devices cpu --batch 1 --compile max-autotune off   # autotuned products
    python benchmarks/bench_agent.py --devices cuda --batch 256 --dtypes float32 --conv-tf32 on off  # strict fp32
    python benchmarks/bench_agent.py --devices cuda --batch 256 --cnn default aten-pool  # CNN kernel variants

``--official`` also times the official ``MineRLAgent`` (its checkout must be importable with gym3 installed) and
checks that our fp32 actions equal its actions on the same frames (deterministic, argmax).

Each row times the whole ``get_actions`` step (resize + upload + forward + sampling + action read-back), and
separately the pre-processing alone (``prep ms``: validation + resize into the upload buffer) and the forward alone
(``fwd ms``: the step engine on frames already on the device, no sampling, one sync per step). CUDA rows also
split a step into its host parts and its GPU time (``step parts``, see ``_step_parts``).
"""
from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SIZES = ("1x", "2x", "3x")
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_cnn import VARIANTS  # noqa: E402  (the CNN's kernel variants, --cnn)


def net_kwargs(size: str) -> Dict[str, Any]:
    from vpt_agent.config import official_net_kwargs

    return official_net_kwargs(size)


@functools.lru_cache(maxsize=1)
def synthetic_state_dict(size: str):
    from golden_helpers.key_layout import official_keys
    from golden_helpers.weights_gen import make_state_dict

    return make_state_dict(0, official_keys({"net": net_kwargs(size)}))


def frames(n: int, seed: int = 0) -> List[np.ndarray]:
    from golden_helpers.obs_gen import make_obs

    return [make_obs(seed, t) for t in range(n)]


@functools.lru_cache(maxsize=2)
def distinct_frames(n: int) -> List[np.ndarray]:
    """``n`` frames in their own memory (so a batch's copy is not served from the caches, as with real envs):
    16 rendered ones, then shifted copies of them."""
    base = frames(min(n, 16))
    return base + [np.roll(base[t % 16], t // 16, axis=1) for t in range(16, n)]


def build_ours(size: str, device: str, dtype: str, cuda_graph=None, compile: Union[bool, str] = False):
    from vpt_agent import PolicyConfig, VPTAgent
    from vpt_agent.loading import load_state_dict

    cfg = PolicyConfig.from_kwargs(net_kwargs(size), temperature=2.0)
    agent = VPTAgent.from_config(cfg, device=device, dtype=dtype, seed=0, cuda_graph=cuda_graph, compile=compile)
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


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def run_case(size: str, batch: int, dtype: str, device: str, steps: int, warmup: int,
             graph: bool = False, compile: Union[bool, str] = False) -> Dict[str, Any]:
    """One timed case; ``BENCH_CONV_TF32`` (on/off) sets cuDNN's TF32 for it, before the graph capture (cuDNN
    picks its kernels then), and restores it after (``--in-process`` runs the next case in this process)."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    from bench_cnn import use_variant

    before = torch.backends.cudnn.allow_tf32
    conv_tf32 = os.environ.get("BENCH_CONV_TF32", "default")
    if conv_tf32 != "default":
        torch.backends.cudnn.allow_tf32 = conv_tf32 == "on"
    cnn = os.environ.get("BENCH_CNN", "default")
    use_variant(cnn)
    try:
        row = _time_case(size, batch, dtype, device, steps, warmup, graph, compile)
        return {**row, "cnn": cnn} if device == "cuda" else row
    finally:
        torch.backends.cudnn.allow_tf32 = before
        use_variant("default")


def _time_case(size: str, batch: int, dtype: str, device: str, steps: int, warmup: int,
               graph: bool, compile: Union[bool, str]) -> Dict[str, Any]:
    import torch

    agent = build_ours(size, device, dtype, cuda_graph=graph if device == "cuda" else None, compile=compile)
    povs = distinct_frames(max(16, batch))
    if os.environ.get("BENCH_FRAMES") == "model":  # frames resized where they are produced (the runner's workers)
        import cv2

        h, w = agent.config.img_shape[:2]
        povs = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in povs]
    obs = [{"pov": f} for f in povs]
    batches = [[obs[(t + i) % len(obs)] for i in range(batch)] for t in range(16)]
    _reset_peak_mem(device)
    start = time.perf_counter()
    agent.get_actions(batches[0], [True] * batch)  # builds the step engine (captures the graph, or compiles)
    first_step_s = time.perf_counter() - start
    for t in range(1, warmup):
        agent.get_actions(batches[t % len(batches)], [False] * batch)
    _sync(device)
    start = time.perf_counter()
    for t in range(steps):
        agent.get_actions(batches[t % len(batches)], [False] * batch)
    _sync(device)
    elapsed = time.perf_counter() - start
    peak = _peak_mem_mb(device)
    start = time.perf_counter()
    for t in range(steps):  # pre-processing alone (validation + resize into the upload buffer)
        agent._frames(batches[t % len(batches)])
    prep_s = time.perf_counter() - start
    fwd_ms = None
    if agent._engine is not None:
        with torch.inference_mode():
            f = agent._frames(batches[0]).to(device)
            first = torch.zeros(batch, dtype=torch.bool, device=device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                agent._engine(f, first)
                _sync(device)
            fwd_ms = 1000 * (time.perf_counter() - start) / steps
    parts = _step_parts(agent, batches, steps) if agent._engine is not None else {}
    return dict(**parts, impl="vpt-agent", size=size, batch=batch, dtype=dtype, device=device, steps=steps,
                frames=f"{povs[0].shape[0]}x{povs[0].shape[1]}",
                graph=bool(agent.cuda_graph), compiled=agent.compile_mode or False, ms_per_step=1000 * elapsed / steps,
                conv_tf32=torch.backends.cudnn.allow_tf32 if device == "cuda" and dtype == "float32" else None,
                ms_per_frame=1000 * elapsed / steps / batch, frames_per_s=steps * batch / elapsed,
                fwd_ms=fwd_ms, prep_ms=1000 * prep_s / steps, first_step_s=first_step_s, peak_mem_mb=peak)


def _step_parts(agent, batches, steps: int) -> Dict[str, float]:
    """Where a step's time goes, ms per step: the agent's ``submit`` + ``actions()`` redone with clocks.

    ``part_prep``: validate + copy/resize into the (pinned, on CUDA) buffer; ``part_launch``: upload + forward
    (on CUDA: queued, the graph replayed); ``part_sample``: sampling and read-back (queued on CUDA);
    ``part_wait``: the host waits for the GPU; ``part_dicts``: the action dicts. ``part_gpu`` (CUDA): GPU time
    from the upload to the read-back, by CUDA events."""
    import torch

    from vpt_agent import action_mapping

    cuda = agent.device.type == "cuda"
    batch = len(batches[0])
    names = ("prep", "launch", "sample", "wait", "dicts")
    totals = dict.fromkeys(names, 0.0)
    gpu = 0.0
    if cuda:
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for t in range(steps):
        clock = [time.perf_counter()]
        with agent._on_stream():
            frames = agent._frames(batches[t % len(batches)])
            first = agent._first([False] * batch, batch)
            clock.append(time.perf_counter())
            if cuda:
                start_ev.record()
            logp, _ = agent._engine(frames, first)
            clock.append(time.perf_counter())
            sampled = agent.policy.pi_head.sample(logp, False, agent.generator)
            ids = torch.stack([sampled["buttons"], sampled["camera"]])
            host = torch.empty(ids.shape, dtype=ids.dtype, pin_memory=cuda)
            host.copy_(ids, non_blocking=cuda)
            if cuda:
                end_ev.record()
            clock.append(time.perf_counter())
        if cuda:
            end_ev.synchronize()
        clock.append(time.perf_counter())
        action_mapping.policy_to_env(*host.numpy())
        clock.append(time.perf_counter())
        for name, t0, t1 in zip(names, clock, clock[1:]):
            totals[name] += t1 - t0
        if cuda:
            gpu += start_ev.elapsed_time(end_ev)
    parts = {f"part_{k}": 1000 * v / steps for k, v in totals.items()}
    return {**parts, "part_gpu": gpu / steps} if cuda else parts


def run_official(path: str, size: str, steps: int, warmup: int, device: str = "cpu") -> Dict[str, Any]:
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
    off = official.MineRLAgent(None, device=device, policy_kwargs=net_kwargs(size), pi_head_kwargs={"temperature": 2.0})
    off.policy.load_state_dict(synthetic_state_dict(size), strict=False)
    off.reset()
    obs = [{"pov": f} for f in frames(16)]
    # Ours at B=1 and B=8 is timed in the same loop, step for step between the official steps, so that the
    # load of a shared machine hits all of them alike (peak RSS is then the process's, not per agent).
    ours = {b: build_ours(size, device, "float32") for b in (1, 8)}
    batch8 = [[obs[(t + i) % len(obs)] for i in range(8)] for t in range(len(obs))]
    _reset_peak_mem(device)
    for t in range(warmup):
        off.get_action(obs[t % len(obs)])
        ours[1].get_action(obs[t % len(obs)])
        ours[8].get_actions(batch8[t % len(obs)], [t == 0] * 8)
    elapsed = {"official": 0.0, 1: 0.0, 8: 0.0}
    for t in range(steps):
        for key, step in (("official", lambda: off.get_action(obs[t % len(obs)])),
                          (1, lambda: ours[1].get_action(obs[t % len(obs)])),
                          (8, lambda: ours[8].get_actions(batch8[t % len(obs)], [False] * 8))):
            start = time.perf_counter()
            step()
            elapsed[key] += time.perf_counter() - start
    peak_mb = _peak_mem_mb(device)
    # identical actions: deterministic rollouts of both implementations on the same frames
    off.reset()
    ours[1].reset()
    same = 0
    n_cmp = min(steps, 40)
    for t in range(n_cmp):
        inp = off._env_obs_to_agent(obs[t % len(obs)])
        ac, off.hidden_state, _ = off.policy.act(inp, off._dummy_first, off.hidden_state, stochastic=False)
        st = ours[1].act([obs[t % len(obs)]], [t == 0], deterministic=True)
        same += int(int(ac["buttons"][0, 0]) == st.buttons[0] and int(ac["camera"][0, 0]) == st.camera[0])
    paired = [dict(impl="ours-pair", size=size, batch=b, dtype="float32", device=device, steps=steps,
                   graph=bool(ours[b].cuda_graph),
                   ms_per_step=1000 * elapsed[b] / steps, ms_per_frame=1000 * elapsed[b] / steps / b,
                   frames_per_s=steps * b / elapsed[b], peak_mem_mb=peak_mb) for b in (1, 8)]
    t_off = elapsed["official"]
    return dict(impl="official", size=size, batch=1, dtype="float32", device=device, steps=steps,
                ms_per_step=1000 * t_off / steps, ms_per_frame=1000 * t_off / steps,
                frames_per_s=steps / t_off, peak_mem_mb=peak_mb, identical_actions=f"{same}/{n_cmp}",
                speedup_b1=t_off / elapsed[1], speedup_per_frame_b8=8 * t_off / elapsed[8], paired=paired)


def run_agreement(size: str, device: str, steps: int) -> Dict[str, Any]:
    """Share of steps where bf16 and fp32 agents pick the same (argmax) joint actions on the same frames."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    from bench_cnn import use_variant

    from vpt_agent.inference import compile_from_flag

    cnn = os.environ.get("BENCH_CNN", "default")
    use_variant(cnn)  # both agents (set before the CUDA graphs are captured)
    try:
        compile = os.environ.get("BENCH_COMPILE", "off")  # the bf16 agent's (fp32 stays eager, the default)
        f32 = build_ours(size, device, "float32")
        bf16 = build_ours(size, device, "bfloat16", compile=compile_from_flag(compile))
        same_b = same_c = 0
        for t, f in enumerate(frames(steps, seed=1)):
            a = f32.act([{"pov": f}], [t == 0], deterministic=True)
            b = bf16.act([{"pov": f}], [t == 0], deterministic=True)
            same_b += int(a.buttons[0] == b.buttons[0])
            same_c += int(a.camera[0] == b.camera[0])
    finally:
        use_variant("default")
    row = dict(impl="agreement", size=size, device=device, steps=steps, bf16_compiled=bf16.compile_mode or False,
               buttons_agree=same_b / steps, camera_agree=same_c / steps)
    return {**row, "cnn": cnn} if device == "cuda" else row


def record_actions(size: str, steps: int, path: str) -> Dict[str, Any]:
    """Our fp32 argmax actions on this device (CPU: what the official agent picks too) for ``--tf32``."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    agent = build_ours(size, "cpu", "float32")
    ids = np.array([[st.buttons[0], st.camera[0]] for st in
                    (agent.act([{"pov": f}], [t == 0], deterministic=True) for t, f in enumerate(frames(steps, 1)))])
    np.savez_compressed(path, size=size, actions=ids)
    return dict(impl="recorded", size=size, steps=steps, path=path)


def run_tf32(size: str, ref_path: str) -> Dict[str, Any]:
    """CUDA fp32 with and without TF32 convolutions vs actions recorded on a CPU (``--record``)."""
    import torch

    ref = np.load(ref_path)["actions"]
    out: Dict[str, Any] = dict(impl="tf32", size=size, device="cuda", steps=len(ref))
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
        agent = build_ours(size, "cuda", "float32")
        ids = np.array([[st.buttons[0], st.camera[0]] for st in
                        (agent.act([{"pov": f}], [t == 0], deterministic=True)
                         for t, f in enumerate(frames(len(ref), 1)))])
        out["tf32_on" if tf32 else "tf32_off"] = int((ids == ref).all(axis=1).sum())
    return out


def machine_info() -> Dict[str, Any]:
    """Where the numbers came from: CPU model and the SIMD flags that decide oneDNN's kernels, GPU, torch."""
    import torch

    flags, model = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model in ("", "x86_64"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        bf16 = None
    info = dict(cpu=model, cpus=os.cpu_count(), cpu_flags=[f for f in wanted if f in flags],
                cpu_capability=torch.backends.cpu.get_cpu_capability(), onednn_bf16=bf16,
                torch=torch.__version__, platform=platform.platform(), gpu=None)
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    cudnn_tf32=torch.backends.cudnn.allow_tf32, matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


def cpu_rows(threads: int):
    """Start a CPU benchmark that prints rows as JSON lines: sets torch's threads, prints the machine line and
    returns ``(machine, rows, report)``; ``report(**row)`` prints a row and appends it to ``rows``."""
    import torch

    torch.set_num_threads(threads)
    machine = {**machine_info(), "threads": threads}
    print(f"machine: {machine}", flush=True)
    rows: List[Dict[str, Any]] = []

    def report(**row: Any) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    return machine, rows, report


IN_PROCESS = False  # --in-process: run every case in this process (faster start; GPU peak memory still per case)


def _subprocess(args: List[str]) -> Dict[str, Any]:
    if IN_PROCESS:
        try:
            result = _child_result(_parser().parse_args(args))
        except Exception as e:  # keep measuring the other cases; the row says what failed
            result = dict(impl="error", case=" ".join(args), error=f"{type(e).__name__}: {e}"[:500])
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return result
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(x: Any, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0])) if x is None else format(x, spec)


def _table(rows: List[Dict[str, Any]]) -> str:
    head = (f"{'impl':10} {'size':4} {'dev':4} {'dtype':8} {'step':8} {'B':>4} {'ms/step':>8} {'ms/frame':>8} "
            f"{'frames/s':>9} {'fwd ms':>7} {'prep ms':>7} {'first s':>7} {'peak MB':>8} {'obs':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["impl"] == "agreement":
            how = ("" if not r.get("bf16_compiled") else ", bf16 max-autotune"
                   if r["bf16_compiled"] == "max-autotune" else ", bf16 compiled") + (
                f", CNN kernels: {r['cnn']}" if r.get("cnn", "default") != "default" else "")
            lines.append(f"bf16 vs fp32 argmax agreement ({r['size']}, {r['device']}{how}, {r['steps']} steps): "
                         f"buttons {100 * r['buttons_agree']:.1f}%, camera {100 * r['camera_agree']:.1f}%")
            continue
        if r["impl"] == "tf32":
            lines.append(f"CUDA fp32 actions equal to the CPU-recorded ones ({r['size']}, {r['steps']} steps): "
                         f"TF32 on {r['tf32_on']}/{r['steps']}, TF32 off {r['tf32_off']}/{r['steps']}")
            continue
        if r["impl"] == "error":
            lines.append(f"FAILED {r['case']}: {r['error']}")
            continue
        if r["impl"] == "recorded":
            lines.append(f"recorded {r['steps']} CPU fp32 actions of {r['size']} in {r['path']}")
            continue
        extra = f"  identical actions {r['identical_actions']}" if "identical_actions" in r else ""
        mode = ("graph" if r.get("graph") else "autotune" if r.get("compiled") == "max-autotune"
                else "compiled" if r.get("compiled") else "eager")
        # CUDA fp32: "float32" with cuDNN's TF32 convolutions (PyTorch's default), "fp32-strict" without
        dtype = "fp32-strict" if r.get("conv_tf32") is False else r["dtype"]
        if "part_prep" in r:
            extra += "  step parts (prep/launch/sample/wait/dicts; gpu) ms: " + "/".join(
                f"{r['part_' + k]:.2f}" for k in ("prep", "launch", "sample", "wait", "dicts")) + \
                f"; {_fmt(r.get('part_gpu'), '4.2f')}"
        if r.get("cnn", "default") != "default":
            extra += f"  CNN kernels: {r['cnn']}"
        lines.append(f"{r['impl']:10} {r['size']:4} {r['device']:4} {dtype:8} {mode:8} {r['batch']:>4} "
                     f"{r['ms_per_step']:8.2f} {r['ms_per_frame']:8.3f} {r['frames_per_s']:9.1f} "
                     f"{_fmt(r.get('fwd_ms'), '7.2f')} {_fmt(r.get('prep_ms'), '7.2f')} "
                     f"{_fmt(r.get('first_step_s'), '7.1f')} "
                     f"{r['peak_mem_mb']:8.0f} {r.get('frames', '-'):>7}{extra}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["1x"], choices=SIZES)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 4, 8, 32])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--cuda-graph", nargs="+", default=["on"], choices=("on", "off"),
                   help="CUDA steps with the captured graph (on), without (off), or both")
    p.add_argument("--compile", nargs="+", default=["off"], choices=("on", "off", "max-autotune"),
                   help="CPU steps compiled with frozen weights (on; max-autotune: also autotuned matrix products), "
                        "eager (off, the agent's default), or several")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--official", default=None, help="path to an official Video-Pre-Training checkout to compare")
    p.add_argument("--official-only", action="store_true", help="with --official: skip our own rows")
    p.add_argument("--agreement", type=int, default=0, help="bf16/fp32 agreement rollout length (0: skip)")
    p.add_argument("--record", default=None, metavar="NPZ",
                   help="record CPU fp32 argmax actions (--record-steps) of each size to NPZ, for --tf32")
    p.add_argument("--record-steps", type=int, default=149)
    p.add_argument("--tf32", default=None, metavar="NPZ",
                   help="on CUDA: compare fp32 actions with/without TF32 against the actions recorded in NPZ")
    p.add_argument("--conv-tf32", nargs="+", default=["default"], choices=("default", "on", "off"),
                   help="CUDA fp32 rows: cuDNN convolutions in TF32 (on, PyTorch's default), in true fp32 (off: "
                        "rows say fp32-strict), or as torch is configured (default)")
    p.add_argument("--cnn", nargs="+", default=["default"], choices=VARIANTS,
                   help="CUDA rows: the CNN's kernel variants (benchmarks/bench_cnn.py; default: as the package "
                        "ships them)")
    p.add_argument("--frames", choices=("full", "model"), default=None,
                   help="observation size: full 360x640 frames (default; the agent resizes them) or frames already "
                        "at the model's input size (resized where they are produced, as the evaluator's workers do)")
    p.add_argument("--json", default=None, help="write all results to this JSON file (rewritten after each row)")
    p.add_argument("--in-process", action="store_true",
                   help="run the cases in this process instead of one subprocess each (CPU peak RSS then accumulates)")
    p.add_argument("--case", nargs=6, metavar=("SIZE", "BATCH", "DTYPE", "DEVICE", "GRAPH", "COMPILE"),
                   help=argparse.SUPPRESS)
    p.add_argument("--official-case", nargs=3, metavar=("PATH", "SIZE", "DEVICE"), help=argparse.SUPPRESS)
    p.add_argument("--agreement-case", nargs=3, metavar=("SIZE", "DEVICE", "STEPS"), help=argparse.SUPPRESS)
    p.add_argument("--record-case", nargs=3, metavar=("SIZE", "STEPS", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--tf32-case", nargs=2, metavar=("SIZE", "PATH"), help=argparse.SUPPRESS)
    return p


def _child_result(a: argparse.Namespace) -> Dict[str, Any] | None:
    """The one measurement a child invocation asks for (None for the top-level run)."""
    if a.case:
        from vpt_agent.inference import compile_from_flag

        size, batch, dtype, device, graph, compile = a.case
        return run_case(size, int(batch), dtype, device, a.steps, a.warmup, graph == "on",
                        compile_from_flag(compile))
    if a.official_case:
        return run_official(a.official_case[0], a.official_case[1], a.steps, a.warmup, a.official_case[2])
    if a.agreement_case:
        size, device, steps = a.agreement_case
        return run_agreement(size, device, int(steps))
    if a.record_case:
        return record_actions(a.record_case[0], int(a.record_case[1]), a.record_case[2])
    if a.tf32_case:
        return run_tf32(*a.tf32_case)
    return None


def _write_json(path: str, machine: Dict[str, Any], rows: List[Dict[str, Any]]) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(machine=machine, results=rows), indent=2))
    tmp.replace(path)


def _report(rows: List[Dict[str, Any]], machine: Dict[str, Any], json_path: str | None) -> None:
    """Print the newest row; rewrite the JSON file so a run cut short keeps what it measured."""
    print(_table(rows[-1:]).splitlines()[-1], flush=True)
    if json_path:
        _write_json(json_path, machine, rows)


def main(argv: List[str] | None = None) -> None:
    global IN_PROCESS
    a = _parser().parse_args(argv)
    result = _child_result(a)
    if result is not None:  # child process: one measurement, JSON on stdout
        print(json.dumps(result))
        return
    IN_PROCESS = a.in_process
    if a.frames:
        os.environ["BENCH_FRAMES"] = a.frames  # read by the cases (here or in their subprocesses)

    import torch

    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        sys.exit("error: --devices cuda: torch sees no CUDA GPU")
    rows = []
    common = ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    machine = machine_info()
    print(f"machine: {machine}", flush=True)
    for size in a.sizes:
        if a.record:
            rows.append(_subprocess(["--record-case", size, str(a.record_steps), a.record]))
            _report(rows, machine, a.json)
        for device in devices if a.official else ():
            off = _subprocess(["--official-case", a.official, size, device, *common])
            for r in [off, *off.pop("paired", [])]:
                rows.append(r)
                _report(rows, machine, a.json)
            if "speedup_b1" in off:
                print(f"ours vs official on {device}, same loop: {off['speedup_b1']:.2f}x at B=1, "
                      f"{off['speedup_per_frame_b8']:.2f}x per frame at B=8", flush=True)
        for device in devices if not a.official_only else ():
            graphs = a.cuda_graph if device == "cuda" else ["off"]
            compiles = a.compile if device == "cpu" else ["off"]
            for dtype in a.dtypes:
                for b in a.batch:
                    tf32s = a.conv_tf32 if device == "cuda" and dtype == "float32" else ["default"]
                    cnns = a.cnn if device == "cuda" else ["default"]
                    for graph, compile, tf32, cnn in itertools.product(graphs, compiles, tf32s, cnns):
                        # read by the case (here or in its subprocess)
                        os.environ.update(BENCH_CONV_TF32=tf32, BENCH_CNN=cnn)
                        rows.append(_subprocess(["--case", size, str(b), dtype, device, graph, compile, *common]))
                        _report(rows, machine, a.json)
                    for var in ("BENCH_CONV_TF32", "BENCH_CNN"):
                        os.environ.pop(var, None)
            agreements = itertools.product(a.cnn if device == "cuda" else ["default"],
                                           a.compile if device == "cpu" else ["off"])
            for cnn, compile in agreements if a.agreement else ():
                os.environ.update(BENCH_CNN=cnn, BENCH_COMPILE=compile)
                rows.append(_subprocess(["--agreement-case", size, device, str(a.agreement)]))
                for var in ("BENCH_CNN", "BENCH_COMPILE"):
                    os.environ.pop(var)
                _report(rows, machine, a.json)
            if a.tf32 and device == "cuda":
                rows.append(_subprocess(["--tf32-case", size, a.tf32]))
                _report(rows, machine, a.json)
    print(f"\nmachine: {machine}\n" + _table(rows))


if __name__ == "__main__":
    main()
