"""Host pre-processing of a batch of observations (``vpt_agent.frames.preprocess_batch``): validation, and the
copy or resize into the (pinned, on CUDA) upload buffer, by the shared thread pool.

    python benchmarks/bench_frames.py               # B=64/256, frames at the model's size and 360x640
    python benchmarks/bench_frames.py --batch 256 --frames model --json out.json

Frames at the model's size are copied in the calling thread, others resized by the thread pool. Distinct frames
(no cache reuse), wall clock, best of ``--repeats`` runs of ``--iters`` calls each; also the validation alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--frames", nargs="+", choices=("model", "full"), default=["model", "full"])
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    from vpt_agent import frames as frames_mod

    rows = []
    rng = np.random.default_rng(0)
    for kind in a.frames:
        shape = (128, 128, 3) if kind == "model" else (360, 640, 3)
        for batch in a.batch:
            obs = [{"pov": rng.integers(0, 256, shape, dtype=np.uint8)} for _ in range(batch)]
            out = np.empty((batch, 128, 128, 3), dtype=np.uint8)
            best = min(_time(lambda: frames_mod.preprocess_batch(obs, (128, 128), out=out), a.iters)
                       for _ in range(a.repeats))
            rows.append(dict(frames=kind, batch=batch, ms=best))
            print(json.dumps(rows[-1]), flush=True)
            best = min(_time(lambda: frames_mod.check_batch(obs), a.iters) for _ in range(a.repeats))
            rows.append(dict(frames=kind, batch=batch, part="validate only", ms=best))
            print(json.dumps(rows[-1]), flush=True)
    doc = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "pool threads": frames_mod._thread_pool() and frames_mod._pool_size}, "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2))
    return doc


def _time(fn, iters: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1000 * (time.perf_counter() - start) / iters


if __name__ == "__main__":
    main()
