"""Generate the golden data of tests/test_data_golden.py by running the OFFICIAL VPT data loading code.

Not part of the test suite: it needs the official Video-Pre-Training code (``data_loader.py``,
``run_inverse_dynamics_model.py``, ``agent.py``, ``cursors/``) at ``$VPT_OFFICIAL`` and a Python where that code
imports (numpy, opencv, torch, gym3, attrs, imageio-ffmpeg); ``minerl`` and ``gym`` are stubbed::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_data.py

It writes

* ``tests/data/golden_data/NAME.mp4`` + ``NAME.jsonl``: crafted recordings that hit every quirk of the loader
  (the jsonl records are built below; the videos are synthetic RGB patterns, H.264 RGB lossless, so decoding is
  bit-exact everywhere). ``short`` has fewer frames than lines and ``long`` more (the official loader pairs line
  i with frame i and drops the rest).
* ``tests/data/golden_data.npz``:
  - ``records`` (JSON list of single records), ``records_buttons`` (N, 23) uint8 in ``button_keys`` order,
    ``records_camera`` (N, 2) and ``records_null`` (N,): the official ``json_action_to_env_action`` on each;
    ``records_camera_float``: the same function with its integer camera array made float (the fix of
    openai/Video-Pre-Training issue #54), i.e. the intended degrees;
  - ``camera_scaler``, ``gui_scalers`` (JSON): the official constants;
  - per recording NAME: ``NAME/frames`` (K, 128, 128, 3) uint8, ``NAME/buttons``, ``NAME/camera``,
    ``NAME/camera_float``: what the official ``data_loader_worker`` outputs for that recording.
"""
from __future__ import annotations

import json
import queue
import sys
import threading
import types
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "golden_data"
OUT = HERE / "golden_data.npz"
WIDTH, HEIGHT = 640, 360

sys.path.insert(0, str(HERE.parent))  # tests/ -> golden_helpers
from golden_helpers.official import use_official_code  # noqa: E402

use_official_code()

import data_loader  # noqa: E402  (official)
import run_inverse_dynamics_model as ridm  # noqa: E402  (official)

BUTTON_KEYS = sorted(k for k in ridm.NOOP_ACTION if k != "camera")
ALL_KEYS = ["escape", "s", "q", "w", *map(str, range(1, 10)), "e", "space", "a", "d", "left.shift",
            "left.control", "f"]
UNMAPPED_KEYS = ["key.keyboard.x", "key.keyboard.right.shift", "key.keyboard.tab", "key.mouse.left", "w"]


def K(name: str) -> str:
    return f"key.keyboard.{name}"


def record(keys=(), buttons=(), new=None, dx=0.0, dy=0.0, hotbar=0, gui=False, x=640.0, y=360.0) -> Dict:
    """One recorder record (``keys``: full recorder key names)."""
    keys = list(keys)
    return {"mouse": {"x": x, "y": y, "dx": dx, "dy": dy, "scaledX": x - 640, "scaledY": y - 360, "dwheel": 0.0,
                      "buttons": list(buttons), "newButtons": list(buttons if new is None else new)},
            "keyboard": {"keys": keys, "newKeys": keys, "chars": ""},
            "isGuiOpen": gui, "isGuiInventory": gui, "hotbar": hotbar}


# ----------------------------------------------------------------------------- crafted recordings

def quirks_lines() -> List[Dict]:
    """Attack stuck from the first line, every key, camera, buttons, hotbar scrolls, GUI cursor at edges."""
    lines = [
        record(buttons=[0], new=[0]),  # stuck attack -> removed -> null
        record(keys=[K("w")], buttons=[0], new=[]),  # still stuck: forward only
        record(buttons=[0, 1], new=[1]),  # still stuck: use only
        record(buttons=[0], new=[0]),  # pressed again: attack counts from here
        record(buttons=[0], new=[]),
    ]
    lines += [record(keys=[K(k)]) for k in ALL_KEYS]
    lines += [record(keys=[k]) for k in UNMAPPED_KEYS]  # null
    lines += [record(keys=[K("w"), K("space"), K("left.control")], dx=3.0, dy=-2.0)]
    for dx, dy in [(1, 0), (0, 1), (6.6667, -3), (-13, 7.5), (37.5, 37.5), (2400, -2400), (-0.4, 0.2), (1e-3, 0)]:
        lines.append(record(dx=dx, dy=dy))
    lines += [record(buttons=b) for b in ([1], [2], [0, 1, 2], [3], [5])]  # [3], [5]: null
    lines += [
        record(hotbar=4),  # scroll to slot 5 alone: hotbar.5 but still a null step -> skipped
        record(keys=[K("w")], hotbar=4),  # no change any more
        record(keys=[K("w")], hotbar=7),  # scroll: hotbar.8
        record(keys=[K("2")], hotbar=1),  # key 2 and the change: hotbar.2
        record(hotbar=1),  # null
    ]
    for x, y in [(0, 0), (640.5, 360.9), (1270, 700), (1279.9, 719.9), (1300, 100), (100, 1500), (10.99, 3.2),
                 (1250, 10), (5, 705)]:
        lines.append(record(gui=True, x=x, y=y, dx=2.0, dy=1.0))
    lines.append(record(gui=True, x=300, y=200))  # GUI open but null: skipped
    lines.append(record(keys=[K("e")], gui=True, x=640, y=360, hotbar=1))
    return lines


def short_lines() -> List[Dict]:
    """Not stuck (first newButtons is [0, 1]); the first line already has slot 4 selected."""
    lines = [record(keys=[K("w")], buttons=[0, 1], new=[0, 1], hotbar=3), record(buttons=[0], new=[], hotbar=3)]
    lines += [record(keys=[K("a") if i % 2 else K("d")], dx=i - 8.5, hotbar=3) for i in range(18)]
    return lines


def long_lines() -> List[Dict]:
    """Stuck attack with camera on the first line; attack freed by newButtons [0, 2]."""
    return [record(buttons=[0], new=[0], dx=5.0), record(buttons=[0], new=[]),
            record(buttons=[0], new=[], keys=[K("s")]), record(buttons=[0, 2], new=[0, 2]),
            *[record(buttons=[0], new=[], dy=float(i)) for i in range(6)]]


RECORDINGS = {"quirks": (quirks_lines, None), "short": (short_lines, -4), "long": (long_lines, +4)}


PALETTE = np.array([[230, 40, 10], [20, 200, 60], [15, 30, 220], [250, 250, 0], [120, 0, 160], [0, 160, 170],
                    [90, 90, 90]], np.uint8)


def pattern(index: int) -> np.ndarray:
    """A synthetic RGB frame: blocks of channel-distinct colours that move with ``index`` (a BGR/RGB swap or a
    different resize shows; flat blocks keep the lossless video small)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    cell = (x + 7 * index) // 53 + (y // 41) * 3 + (x + y) // 151
    return PALETTE[cell % len(PALETTE)]


def write_recording(name: str, lines: List[Dict], frame_delta: int) -> None:
    import imageio_ffmpeg

    OUT_DIR.mkdir(exist_ok=True)
    with open(OUT_DIR / f"{name}.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    writer = imageio_ffmpeg.write_frames(
        str(OUT_DIR / f"{name}.mp4"), (WIDTH, HEIGHT), fps=20, codec="libx264rgb", pix_fmt_out="rgb24",
        quality=None, macro_block_size=1, ffmpeg_log_level="error", output_params=["-qp", "0", "-preset", "veryslow"])
    writer.send(None)
    for index in range(len(lines) + (frame_delta or 0)):
        writer.send(pattern(index))
    writer.close()


# ----------------------------------------------------------------------------- running the official code

class _FloatNumpy(types.ModuleType):
    """numpy, except that ``array`` makes float arrays (issue #54's fix for the camera)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def array(value, *args, **kwargs):
        return np.array(value, *args, **kwargs).astype(np.float64)


def env_action_row(action: Dict) -> tuple:
    return np.array([action[k] for k in BUTTON_KEYS], np.uint8), np.asarray(action["camera"], np.float64)


def run_worker(name: str) -> Dict[str, np.ndarray]:
    """The official data_loader_worker on one recording, in this thread (queues, not processes)."""
    tasks, output = queue.Queue(), queue.Queue()
    tasks.put((0, str(OUT_DIR / f"{name}.mp4"), str(OUT_DIR / f"{name}.jsonl")))
    tasks.put(None)
    data_loader.data_loader_worker(tasks, output, threading.Event())
    items = []
    while (item := output.get_nowait()) is not None:
        items.append(item)
    frames = np.stack([frame for _, frame, _ in items])
    buttons, camera = zip(*(env_action_row(action) for _, _, action in items))
    return {"frames": frames, "buttons": np.stack(buttons), "camera": np.stack(camera)}


def single_records() -> List[Dict]:
    rng = np.random.default_rng(7)
    known = [f"key.keyboard.{k}" for k in ALL_KEYS]
    records = [record()]  # null
    records += [record(keys=[K(k)]) for k in ALL_KEYS] + [record(keys=[k]) for k in UNMAPPED_KEYS]
    records += [record(buttons=[b]) for b in range(6)]
    for _ in range(300):
        keys = list(rng.choice(known + UNMAPPED_KEYS, size=rng.integers(0, 4), replace=False))
        buttons = sorted(rng.choice(6, size=rng.integers(0, 3), replace=False).tolist())
        kind = rng.integers(4)
        if kind == 0:
            dx, dy = 0.0, 0.0
        elif kind == 1:
            dx, dy = (float(v) for v in rng.integers(-60, 61, 2))
        elif kind == 2:
            dx, dy = (float(v) for v in np.round(rng.normal(0, 20, 2), 4))
        else:
            dx, dy = (float(v) for v in rng.uniform(-3000, 3000, 2))
        keyboard = {"keys": keys, "newKeys": [], "chars": ""}
        records.append({**record(buttons=buttons, dx=dx, dy=dy), "keyboard": keyboard})
    return records


def main() -> None:
    out: Dict[str, Any] = {}
    records = single_records()
    rows = [ridm.json_action_to_env_action(r) for r in records]
    out["records"] = np.array(json.dumps(records))
    out["button_keys"] = np.array(json.dumps(BUTTON_KEYS))
    out["records_buttons"] = np.stack([env_action_row(a)[0] for a, _ in rows])
    out["records_camera"] = np.stack([env_action_row(a)[1] for a, _ in rows])
    out["records_null"] = np.array([null for _, null in rows])
    official_np, ridm.np = ridm.np, _FloatNumpy("numpy")
    try:
        out["records_camera_float"] = np.stack([env_action_row(ridm.json_action_to_env_action(r)[0])[1]
                                                for r in records])
    finally:
        ridm.np = official_np
    out["camera_scaler"] = np.array(ridm.CAMERA_SCALER)
    out["gui_scalers"] = np.array(json.dumps(data_loader.MINEREC_VERSION_SPECIFIC_SCALERS))

    for name, (make_lines, frame_delta) in RECORDINGS.items():
        write_recording(name, make_lines(), frame_delta)
        result = run_worker(name)
        ridm.np = _FloatNumpy("numpy")
        try:
            result["camera_float"] = run_worker(name)["camera"]
        finally:
            ridm.np = official_np
        for field, value in result.items():
            out[f"{name}/{field}"] = value
        print(f"{name}: {len(make_lines())} lines -> {len(result['frames'])} steps")
    np.savez_compressed(OUT, **out)
    sizes = {p.name: p.stat().st_size for p in [OUT, *sorted(OUT_DIR.iterdir())]}
    print(f"wrote {OUT} and {OUT_DIR}: {sizes} ({sum(sizes.values()) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
