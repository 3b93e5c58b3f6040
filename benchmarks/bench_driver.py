"""The evaluation loop's own overhead, without a GPU: K sleeping envs, a simulated GPU policy, G pipelined groups.

    python benchmarks/bench_driver.py                       # K=12, env 5.9 ms/step, G = 1 2 3 4 6 12
    python benchmarks/bench_driver.py -k 12 --env-ms 5.9 --pipeline 1 2 12 --gpu serial

Each env (:class:`SleepEnv`, below) runs in a real local worker process (the evaluator's own ``LocalWorker``),
sleeps ``--env-ms`` per step and returns the same 128x128 frame, so the envs cost (almost) no CPU and what limits
the rate is the loop itself: IPC, batching, bookkeeping. The policy is a stand-in for
``VPTAgent.submit`` on a GPU: its step for a batch of B frames is ready ``--fwd-ms-base + B * --fwd-ms-per-frame``
ms after it was submitted (defaults: the 1x model's CUDA-graph steps measured on an H200: ~1.2 ms at B=1,
~3.3 ms at B=12), either on independent streams (``--gpu concurrent``) or one after another (``--gpu serial``:
a step starts when the previous one ends). It returns compact ``JointAction`` s, as the evaluator's policy does.

For each G it prints the env steps per second, the ideal rate of a loop with no overhead (every env waits only for
its own step and its group's forward; ``ideal = K / (env + forward)``), the share of it reached, and the driver's
CPU time per env step.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


import gymnasium  # noqa: E402
import numpy as np  # noqa: E402


class SleepEnv(gymnasium.Env):
    """Sleeps ``step_ms`` per step, returns one fixed 128x128 frame, ends after ``length`` steps."""

    observation_space = gymnasium.spaces.Dict(
        {"pov": gymnasium.spaces.Box(0, 255, (128, 128, 3), dtype=np.uint8)})
    action_space = gymnasium.spaces.Dict({})  # takes the MineRL dicts the workers make; never checked

    def __init__(self, step_ms: float = 5.9, length: int = 200):
        self.step_s, self.length, self.t = step_ms / 1000, length, 0
        self.frame = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"pov": self.frame}, {}

    def step(self, action):
        time.sleep(self.step_s)
        self.t += 1
        return {"pov": self.frame}, 0.0, self.t >= self.length, False, {}


if "bench_driver/Sleep-v0" not in gymnasium.registry:
    gymnasium.register("bench_driver/Sleep-v0", entry_point=SleepEnv, disable_env_checker=True)


class SimulatedGPU:
    """When each submitted step is done: now + its duration, after the previous step if steps are serial."""

    def __init__(self, base_ms: float, per_frame_ms: float, serial: bool):
        self.base, self.per_frame, self.serial = base_ms / 1000, per_frame_ms / 1000, serial
        self.free_at = 0.0

    def finish_time(self, batch: int) -> float:
        start = max(time.perf_counter(), self.free_at) if self.serial else time.perf_counter()
        self.free_at = start + self.base + self.per_frame * batch
        return self.free_at


class _Pending:
    def __init__(self, done_at: float, actions):
        self.done_at, self.actions = done_at, actions

    def ready(self) -> bool:
        return time.perf_counter() >= self.done_at

    def result(self):
        delay = self.done_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return self.actions


class SimulatedPolicy:
    def __init__(self, gpu: SimulatedGPU):
        from vpt_agent.action_mapping import JointAction

        self.gpu = gpu
        self.action = JointAction(0, 60)

    def submit(self, frames, first):
        return _Pending(self.gpu.finish_time(len(frames)), [self.action] * len(frames))


def run(k: int, groups: int, a: argparse.Namespace) -> dict:
    from vpt_agent.eval.records import EpisodeTask
    from vpt_agent.eval.rollout import Rollout, split_groups
    from vpt_agent.eval.workers import EnvSpec, LocalWorker

    spec = EnvSpec("bench_driver:bench_driver/Sleep-v0", {"length": a.steps, "step_ms": a.env_ms}, None, (128, 128))
    gpu = SimulatedGPU(a.fwd_ms_base, a.fwd_ms_per_frame, a.gpu == "serial")
    rollout = Rollout([SimulatedPolicy(gpu) for _ in range(groups)], lambda slot: LocalWorker(spec), k,
                      [EpisodeTask(i, i) for i in range(k * a.episodes_per_env)], [], max_retries=0,
                      step_timeout=30.0, reset_timeout=60.0)
    cpu0 = time.process_time()
    stats = rollout.run()
    cpu = time.process_time() - cpu0
    steady = stats.env_steps / (time.perf_counter() - stats.first_forward)
    batch = max(len(g) for g in split_groups(k, groups))
    ideal = k / ((a.env_ms + a.fwd_ms_base + a.fwd_ms_per_frame * batch) / 1000)
    return {"num_envs": k, "groups": groups, "steps_per_s": steady, "ideal_steps_per_s": ideal,
            "share_of_ideal": steady / ideal, "driver_cpu_ms_per_step": 1000 * cpu / stats.env_steps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-envs", "-k", type=int, default=12)
    p.add_argument("--pipeline", type=int, nargs="+", default=[1, 2, 3, 4, 6, 12])
    p.add_argument("--env-ms", type=float, default=5.9, help="env step time (the embedded env on the H200 host)")
    p.add_argument("--fwd-ms-base", type=float, default=1.1)
    p.add_argument("--fwd-ms-per-frame", type=float, default=0.18)
    p.add_argument("--gpu", choices=("concurrent", "serial"), default="serial")
    p.add_argument("--steps", type=int, default=200, help="steps per episode")
    p.add_argument("--episodes-per-env", type=int, default=1)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    rows = []
    for groups in a.pipeline:
        row = run(a.num_envs, groups, a)
        rows.append(row)
        print(f"K={row['num_envs']} G={groups}: {row['steps_per_s']:.0f} env steps/s "
              f"(ideal {row['ideal_steps_per_s']:.0f},"
              f" {row['share_of_ideal']:.0%}), driver CPU {row['driver_cpu_ms_per_step']:.3f} ms per env step",
              flush=True)
    if a.json:
        a.json.write_text(json.dumps({"args": vars(a) | {"json": str(a.json)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
