"""Inverse dynamics model speed: frames/s through the 4x IDM, and frames/s labelled end to end.

The network is the official 4x_idm config (vpt_agent.idm.IDM_4X_NET_KWARGS, 482M parameters) with random weights
(speed does not depend on the values). Two numbers:

* ``network_fps``: frames/s through ``VPTIDM.predict_windows`` on ``--batch`` windows of ``--frames`` frames
  (128x128 input). ``labelled_fps_estimate`` = network_fps * stride / window: the labeller runs every frame
  through ``window / stride`` windows (2 with the default stride 64 of 128).
* with ``--label-seconds S``: ``python -m vpt_agent.label``'s code end to end (decode a 640x360 20 Hz mp4 of S
  seconds, windows of 128 with stride 64, write NAME.jsonl) -> ``label_fps``.

    python benchmarks/bench_idm.py                                     # CPU, one window of 16 frames
    python benchmarks/bench_idm.py --reduced --label-seconds 3         # quick check of both paths (CPU)
    python benchmarks/bench_idm.py --device cuda --frames 128 --batch 4 --time-budget 15 --label-seconds 30 \
        --json idm_gpu.json

Prints one JSON object (also written to ``--json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: --reduced: the 4x structure at the width of the golden test's "4x_reduced" (a quick check of this script only)
REDUCED = dict(hidsize=256, impala_width=1)


def machine(device: str) -> Dict[str, Any]:
    import os

    import torch

    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build(device: str, reduced: bool, frame_batch: int, seed: int = 0):
    import torch

    from vpt_agent.idm import IDM_4X_NET_KWARGS, IDMConfig, InverseActionPolicy, VPTIDM

    net = dict(IDM_4X_NET_KWARGS, **(REDUCED if reduced else {}))
    torch.manual_seed(seed)
    with torch.device(device):  # random init straight on the device (482M parameters)
        policy = InverseActionPolicy(IDMConfig.from_kwargs(net))
    return VPTIDM(policy, device=device, frame_batch=frame_batch)


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def network_fps(idm, device: str, batch: int, frames: int, time_budget: float) -> Dict[str, Any]:
    import torch

    h, w = idm.config.img_shape[:2]
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, frames, h, w, 3), dtype=np.uint8))
    idm.predict_windows(x)  # warm-up (cuDNN autotune, allocator)
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        idm.predict_windows(x)
        sync(device)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= time_budget or n >= 50:
            break
    out = {"batch": batch, "frames": frames, "calls": n, "seconds": elapsed,
           "network_fps": n * batch * frames / elapsed}
    if device == "cuda":
        out["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    return out


def label_fps(idm, seconds: float, batch: int) -> Dict[str, Any]:
    from vpt_agent.data.video import VideoEncoder
    from vpt_agent.label import LabelConfig, label_videos

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        enc = VideoEncoder(video, fps=20, quality="standard")
        rng = np.random.default_rng(1)
        base = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
        for t in range(int(seconds * 20)):
            enc.write(np.roll(base, 7 * t, axis=1))
        enc.close()
        config = LabelConfig(videos=[str(video)], out=str(Path(tmp) / "out"), batch=batch, progress=False)
        summary = label_videos(config, idm=idm)
    return {"label_frames": summary["frames"], "label_seconds": summary["seconds"],
            "label_fps": summary["frames"] / summary["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch", type=int, default=1, help="windows per forward pass")
    p.add_argument("--frames", type=int, default=16, help="frames per window (the labeller uses 128)")
    p.add_argument("--time-budget", type=float, default=20.0, help="seconds of timed network calls (after warm-up)")
    p.add_argument("--label-seconds", type=float, default=0.0, help="also label a synthetic video this long")
    p.add_argument("--frame-batch", type=int, default=256, help="frames through the CNN at once (as the labeller)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--reduced", action="store_true", help="4x structure at reduced width (checks the script only)")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    idm = build(args.device, args.reduced, args.frame_batch)
    name = "4x_idm" + (" reduced width" if args.reduced else "") + " (random weights)"
    result: Dict[str, Any] = {"config": name, "device": args.device,
                              "machine": machine(args.device), "build_seconds": time.perf_counter() - t0}
    result.update(network_fps(idm, args.device, args.batch, args.frames, args.time_budget))
    result["labelled_fps_estimate"] = result["network_fps"] * 64 / 128
    if args.label_seconds > 0:
        result.update(label_fps(idm, args.label_seconds, args.batch))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
