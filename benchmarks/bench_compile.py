"""Compiled vs eager CPU steps, timed in interleaved rounds in one process (a shared machine's drift hits every
mode alike): ``get_action`` of 1x agents with ``compile=False``, ``True`` and ``"max-autotune"``.

    python benchmarks/bench_compile.py --threads 2                          # fp32, B=1, ~5 min with the compiles
    python benchmarks/bench_compile.py --threads 2 --dtype bfloat16 --batch 1 8 --json out.json

Synthetic 1x weights; full-size 360x640 frames (the agent resizes them). Prints the machine line (CPU flags), the
first step of each agent (its compile), per mode the median ms per ``get_actions`` step over ``--rounds`` rounds of
``--steps`` steps, its speed relative to eager, and whether its deterministic actions equal the eager agent's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = {"eager": False, "compiled": True, "max-autotune": "max-autotune"}


def run(batch: int, dtype: str, rounds: int, steps: int, report) -> None:
    import torch

    from bench_agent import build_ours, distinct_frames

    obs = [{"pov": f} for f in distinct_frames(max(16, batch))]
    batches = [[obs[(t + i) % len(obs)] for i in range(batch)] for t in range(16)]
    agents, actions = {}, {}
    for mode, compile in MODES.items():
        agents[mode] = agent = build_ours("1x", "cpu", dtype, compile=compile)
        start = time.perf_counter()
        first = agent.act(batches[0], [True] * batch, deterministic=True)
        report(part="first step", mode=mode, batch=batch, dtype=dtype, s=time.perf_counter() - start)
        actions[mode] = [(first.buttons.tolist(), first.camera.tolist())]
        for t in range(1, 4):  # the same short episode for every mode: are the actions the eager ones?
            step = agent.act(batches[t], [False] * batch, deterministic=True)
            actions[mode].append((step.buttons.tolist(), step.camera.tolist()))
    times = {mode: [] for mode in MODES}
    with torch.inference_mode():
        for r in range(rounds):
            for mode, agent in agents.items():
                start = time.perf_counter()
                for t in range(steps):
                    agent.get_actions(batches[(r * steps + t) % len(batches)], [False] * batch)
                times[mode].append(1000 * (time.perf_counter() - start) / steps)
    eager = sorted(times["eager"])[rounds // 2]
    for mode, ms in times.items():
        median = sorted(ms)[rounds // 2]
        report(part="step", mode=mode, batch=batch, dtype=dtype, ms=median, vs_eager=eager / median,
               rounds=[round(x, 2) for x in ms], same_actions_as_eager=actions[mode] == actions["eager"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is reported)")
    p.add_argument("--steps", type=int, default=5, help="get_actions steps per mode and round")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    from bench_agent import cpu_rows

    machine, rows, report = cpu_rows(a.threads)

    for batch in a.batch:
        run(batch, a.dtype, a.rounds, a.steps, report)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
