"""Throughput of the evaluation runner against its bound: ``python -m vpt_agent.evaluate``'s loop, measured.

    python benchmarks/bench_eval.py                                   # 1x, K=12, G = 1 2 3 4, cuda if present
    python benchmarks/bench_eval.py -k 2 --pipeline 1 2 --device cpu --max-steps 60 --model tests/data/small.model

Synthetic weights (``--weights random`` on the official 1x config, or ``--model``) on the embedded env
``vpt/VoxelTreechop-v0``. First the agent alone: frames/s of ``get_actions`` on random frames at batch K and at
each group size. Then one evaluation per ``--pipeline G`` (G = 1 is lock-step), each printing:

* env: one env's steps/s (time inside env.step, from the run), agent: frames/s of the run's forwards,
* overall: env steps per wall-clock second of the run (``steady``: after the first forward, i.e. without
  worker start-up),
* bound = min(K x env, agent alone at batch K) as in issue 10, and share = overall / bound; ``summary.json``'s own
  bound uses the run's agent rate (at its group sizes) instead.

Prints one line per setting and a JSON document at the end (``--json PATH`` also writes it). ``--time-budget S``
skips settings that would start after S seconds.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import pickle
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def official_model_file(size: str, directory: Path) -> Path:
    """A ``.model`` file holding the official config of ``size`` (synthetic weights come from --weights random)."""
    from vpt_agent.config import official_net_kwargs

    path = directory / f"{size}.model"
    model = {"model": {"args": {"net": {"args": official_net_kwargs(size)}, "pi_head_opts": {"temperature": 2.0}}}}
    path.write_bytes(pickle.dumps(model))
    return path


def agent_alone(model: Path, device: str, dtype: str, batches, iters: int, num_envs: int) -> dict:
    """Frames/s of ``VPTAgent.get_actions`` on random 128x128 frames, per batch size (after warm-up), with the
    torch CPU threads the evaluation gives the policy (the CPUs its K env workers leave free)."""
    import torch

    from vpt_agent import VPTAgent
    from vpt_agent.eval.runner import default_threads
    from vpt_agent.evaluate import EvalConfig

    torch.set_num_threads(default_threads(EvalConfig(num_envs=num_envs)))
    agent = VPTAgent.from_config(model, device=device, dtype=dtype, seed=0)
    h, w = agent.config.img_shape[:2]
    rng = np.random.default_rng(0)
    rates = {}
    for batch in sorted(set(batches)):
        agent.reset()
        obs = [{"pov": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)} for _ in range(batch)]
        for i in range(5):
            agent.get_actions(obs, [i == 0] * batch, deterministic=True)
        start = time.perf_counter()
        for _ in range(iters):
            agent.get_actions(obs, [False] * batch, deterministic=True)
        rates[batch] = batch * iters / (time.perf_counter() - start)
    return {"device": str(agent.device), "frames_per_s": rates, "torch_threads": torch.get_num_threads()}


def run_eval(model: Path, weights: str, args, groups: int, out: Path) -> dict:
    from vpt_agent.evaluate import EMBEDDED_ENV, EvalConfig, evaluate

    summary = evaluate(EvalConfig(
        model=str(model), weights=weights, env=EMBEDDED_ENV, num_envs=args.num_envs, pipeline=groups,
        episodes=args.num_envs * args.episodes_per_env, max_steps=args.max_steps, deterministic=True,
        device=args.device, dtype=args.dtype, out=str(out), progress=False, print_table=False, seed=0))
    thr, session = summary["throughput"], summary["session"]
    steady = session["env_steps"] / (session["wall_time_s"] - session["startup_s"])
    return {"groups": session["group_sizes"], "env_steps_per_s_per_env": thr["env_steps_per_s"],
            "agent_frames_per_s_in_run": thr["agent_steps_per_s"], "overall_steps_per_s": thr["overall_steps_per_s"],
            "steady_steps_per_s": steady, "startup_s": session["startup_s"], "env_steps": session["env_steps"],
            "summary_bound": thr["bound_steps_per_s"], "summary_share": thr["share_of_bound"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1x", choices=("1x", "2x", "3x"), help="official config (synthetic weights)")
    p.add_argument("--model", type=Path, help="a .model file instead of --size")
    p.add_argument("--weights", default="random", help="weights file, or 'random' (default)")
    p.add_argument("--num-envs", "-k", type=int, default=12)
    p.add_argument("--pipeline", type=int, nargs="+", default=[1, 2, 3, 4], help="group counts G to run")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--max-steps", type=int, default=600, help="steps per episode")
    p.add_argument("--episodes-per-env", type=int, default=1)
    p.add_argument("--agent-iters", type=int, default=50, help="timed get_actions calls per batch size")
    p.add_argument("--time-budget", type=float, default=110.0, help="seconds; later settings are skipped")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `timeout -s USR1`: show where a stuck run is
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_eval-") as tmp:
        tmp = Path(tmp)
        model = args.model or official_model_file(args.size, tmp)
        group_sizes = {-(-args.num_envs // g) for g in args.pipeline} | {args.num_envs}
        alone = agent_alone(model, args.device, args.dtype, group_sizes, args.agent_iters, args.num_envs)
        rate_k = alone["frames_per_s"][args.num_envs]
        print(f"agent alone on {alone['device']}: " + ", ".join(
            f"B={b} {r:.0f} frames/s" for b, r in sorted(alone["frames_per_s"].items())), flush=True)
        results = []
        for groups in args.pipeline:
            if time.perf_counter() - start > args.time_budget:
                print(f"G={groups}: skipped (time budget of {args.time_budget:g} s used)", flush=True)
                continue
            r = run_eval(model, args.weights, args, groups, tmp / f"g{groups}")
            r["bound_issue"] = min(args.num_envs * r["env_steps_per_s_per_env"], rate_k)
            r["share_issue"] = r["overall_steps_per_s"] / r["bound_issue"]
            r["share_issue_steady"] = r["steady_steps_per_s"] / r["bound_issue"]
            results.append(r)
            print(f"K={args.num_envs} G={groups} {r['groups']}: env {r['env_steps_per_s_per_env']:.0f}/s per env, "
                  f"agent {r['agent_frames_per_s_in_run']:.0f} frames/s in run | overall {r['overall_steps_per_s']:.0f}"
                  f" steps/s (steady {r['steady_steps_per_s']:.0f}) | bound min({args.num_envs} x env, agent alone "
                  f"{rate_k:.0f}) = {r['bound_issue']:.0f} -> share {r['share_issue']:.0%} (steady "
                  f"{r['share_issue_steady']:.0%}) | summary.json: bound {r['summary_bound']:.0f}, share "
                  f"{r['summary_share']:.0%}", flush=True)
    doc = {"model": str(args.model or args.size), "num_envs": args.num_envs, "device": alone["device"],
           "dtype": args.dtype, "agent_alone_frames_per_s": alone["frames_per_s"], "runs": results,
           "wall_s": time.perf_counter() - start,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}}
    print(json.dumps(doc, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
