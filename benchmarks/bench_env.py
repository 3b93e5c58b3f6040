"""Steps per second of the embedded env ``vpt/VoxelTreechop-v0`` in one process (rendering included).

    python benchmarks/bench_env.py                      # random actions, 2000 steps
    python benchmarks/bench_env.py --policy scripted --steps 3000 --json bench_results/env.json

Reports wall-clock steps/s and CPU-time steps/s (this process's CPU time only, which is steadier on a busy
machine). Warm-up steps (numba compilation/cache load, first world) are excluded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import vpt_envs  # noqa: E402,F401
from vpt_envs.actions import noop_action  # noqa: E402
from vpt_envs.policies import RandomPolicy, TreechopScript  # noqa: E402


def run(policy_name: str, steps: int, seed: int, backend: str | None, internal: tuple[int, int]) -> dict:
    env = gym.make("vpt/VoxelTreechop-v0", backend=backend, internal_resolution=internal,
                   max_episode_steps=10**9)
    env.reset(seed=seed)
    policy = {"random": lambda: RandomPolicy(seed), "scripted": lambda: TreechopScript(env),
              "noop": lambda: noop_action}[policy_name]()
    for _ in range(50):  # warm-up
        env.step(policy())
    actions_time = 0.0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    reward = 0.0
    for _ in range(steps):
        t = time.perf_counter()
        action = policy()
        actions_time += time.perf_counter() - t
        _, r, terminated, truncated, _ = env.step(action)
        reward += r
        if terminated or truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    renderer = env.unwrapped.renderer
    return {
        "env": "vpt/VoxelTreechop-v0", "policy": policy_name, "steps": steps, "seed": seed,
        "backend": renderer.backend, "internal_resolution": list(internal), "pov": [360, 640, 3],
        "steps_per_s_wall": steps / wall, "steps_per_s_cpu": steps / cpu,
        "steps_per_s_wall_env_only": steps / (wall - actions_time), "reward": reward,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--policy", choices=["random", "scripted", "noop"], default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["numba", "numpy"], default=None, help="default: fastest available")
    parser.add_argument("--internal-resolution", type=int, nargs=2, default=(72, 128), metavar=("ROWS", "COLS"))
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this path")
    args = parser.parse_args()
    result = run(args.policy, args.steps, args.seed, args.backend, tuple(args.internal_resolution))
    print(f"{result['env']} policy={result['policy']} backend={result['backend']} "
          f"internal={tuple(result['internal_resolution'])} pov=360x640: "
          f"{result['steps_per_s_wall']:.0f} steps/s wall ({result['steps_per_s_wall_env_only']:.0f} env only), "
          f"{result['steps_per_s_cpu']:.0f} steps/s CPU time, load avg {result['machine']['load_avg_1min']:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
