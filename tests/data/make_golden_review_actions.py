"""Generate tests/data/golden_review_actions.npz by running the OFFICIAL VPT action code on many inputs.

Not part of the test suite: it needs the official Video-Pre-Training code (``lib/actions.py``,
``lib/action_mapping.py``, ``agent.py``, ``inverse_dynamics_model.py``, ``run_inverse_dynamics_model.py``,
``data_loader.py``) at ``$VPT_OFFICIAL`` and a Python where it imports (numpy 1.x, torch, gym3, attrs, opencv;
``minerl``/``gym`` are stubbed)::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_review_actions.py

Every expected value in the archive is an output of the official code; the inputs are drawn here (seeded) with
a bias toward edges: camera values on and next to the quantiser's rounding boundaries (a few ulps either side,
float64/float32/float16), at and beyond +-10, +-0; conflicting buttons; null and stuck-attack records.
Used by tests/test_review_actions.py. Entries (``*_in`` inputs, ``*_out`` official outputs):

* ``disc_f64_in``/``disc_f32_in``/``disc_f16_in``/``disc_int_in`` -> ``*_out`` (int8):
  ``ActionTransformer.discretize_camera`` (the agent's mu-law kwargs) on 1-D arrays of that dtype;
  ``disc_f32_0d_in`` -> ``disc_f32_0d_out``: the same on each value as a 0-d float32 array;
* ``undisc_out``: ``undiscretize_camera(arange(11))`` (float64);
* ``to_factored_in`` (N, 2) joint (buttons, camera) -> ``to_factored_buttons`` (N, 20), ``to_factored_camera``
  (N, 2), ``policy2env_camera`` (N, 2) float64: every button index and every camera index several times;
* ``from_factored_buttons``/``from_factored_bins`` -> ``from_factored_out`` (N, 2): ``from_factored``;
* ``env_buttons`` (N, 24 keys) + ``env_camera_f64``/``env_camera_f32`` -> ``env_out_f64``/``env_out_f32`` (N, 2):
  ``MineRLAgent._env_action_to_agent`` on one unbatched dict per row (keys in ``env_keys``);
* ``idm_buttons``/``idm_bins`` -> ``idm_buttons_out`` (N, 20), ``idm_camera`` (N, 2) float64:
  ``IDMAgent._agent_action_to_env``;
* ``records`` (JSON, like every text entry: UTF-8 bytes) -> ``records_buttons`` (N, 23 in ``record_keys``),
  ``records_camera``, ``records_null``: ``json_action_to_env_action``;
* ``sequences`` (JSON list of (lines, n_frames)) -> ``seq_buttons``/``seq_camera``/``seq_lengths``: what
  ``data_loader_worker`` outputs for each (a stand-in video of ``n_frames`` frames; frames are not compared here,
  tests/test_data_golden.py compares them on real videos).
"""
from __future__ import annotations

import contextlib
import io
import json
import queue
import sys
import tempfile
import threading
from pathlib import Path
from typing import Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "golden_review_actions.npz"
sys.path.insert(0, str(HERE.parent))  # tests/ -> golden_helpers
from golden_helpers.official import use_official_code  # noqa: E402

use_official_code()

import torch as th  # noqa: E402

import agent as off_agent  # noqa: E402  (official)
import data_loader  # noqa: E402  (official)
import run_inverse_dynamics_model as ridm  # noqa: E402  (official)
from inverse_dynamics_model import IDMAgent  # noqa: E402  (official)
from lib.action_mapping import CameraHierarchicalMapping, IDMActionMapping  # noqa: E402  (official)
from lib.actions import ActionTransformer, Buttons  # noqa: E402  (official)

RNG = np.random.default_rng(20240611)
TRANSFORMER = ActionTransformer(**off_agent.ACTION_TRANSFORMER_KWARGS)
MAPPING = CameraHierarchicalMapping(n_camera_bins=11)
ENV_KEYS = sorted(k for k in off_agent.TARGET_ACTION_SPACE if k != "camera")
RECORD_KEYS = sorted(k for k in ridm.NOOP_ACTION if k != "camera")


# ----------------------------------------------------------------------------- camera inputs

def boundary_values(dtype, ulps: int) -> np.ndarray:
    """Each rounding boundary of the quantiser (|x| = 11**(k/10) - 1 for odd k), +-, and ``ulps`` neighbours
    on either side in ``dtype``; plus the clip limits and zeros."""
    out = []
    limits = [11 ** (k / 10) - 1 for k in (1, 3, 5, 7, 9)] + [10.0]
    for value in limits:
        for sign in (1, -1):
            x = dtype(sign * value)
            up = down = x
            out.append(x)
            for _ in range(ulps):
                up, down = np.nextafter(up, dtype(np.inf)), np.nextafter(down, dtype(-np.inf))
                out += [up, down]
    return np.array(out, dtype)


def camera_inputs(dtype, n_random: int) -> np.ndarray:
    special = [0.0, -0.0, 10.0, -10.0, 10.5, -10.5, 180.0, -180.0, 1e4, -1e4, np.inf, -np.inf]
    return np.concatenate([boundary_values(dtype, 40), np.array(special, dtype),
                           RNG.uniform(-12, 12, n_random).astype(dtype),
                           (RNG.standard_normal(n_random) * 2).astype(dtype)])


def camera_pairs(dtype, n: int) -> np.ndarray:
    """(n, 2) cameras: half drawn from the boundary/edge values, half uniform."""
    pool = camera_inputs(dtype, 0)
    pairs = RNG.choice(pool, (n, 2))
    pairs[::2] = RNG.uniform(-12, 12, (len(pairs[::2]), 2)).astype(dtype)
    return pairs.astype(dtype)


# ----------------------------------------------------------------------------- mapping inputs

def button_rows(n: int) -> np.ndarray:
    """(n, 20) factored buttons: random presses, more often in the exclusive groups' conflicts."""
    rows = (RNG.random((n, 20)) < RNG.uniform(0.02, 0.5, (n, 1))).astype(np.int64)
    conflicts = [(1, 2), (4, 5), (6, 7)]  # back+forward, left+right, sneak+sprint
    for i, (a, b) in enumerate(conflicts):
        rows[i::7, a] = rows[i::7, b] = 1
    rows[3::11, 10] = 0  # fewer inventory overrides
    return rows


def env_button_rows(n: int) -> np.ndarray:
    """(n, len(ENV_KEYS)) 0/1 values, ESC/pickItem/swapHands included."""
    return (RNG.random((n, len(ENV_KEYS))) < RNG.uniform(0.02, 0.4, (n, 1))).astype(np.int64)


# ----------------------------------------------------------------------------- recordings

ALL_KEYS = list(ridm.KEYBOARD_BUTTON_MAPPING) + [
    "key.keyboard.x", "key.keyboard.right.shift", "key.keyboard.tab", "w", "key.mouse.left", "key.keyboard.E"]


def mouse_delta() -> float:
    kind = RNG.integers(0, 6)
    if kind == 0:
        return 0.0
    if kind == 1:
        return float(RNG.integers(-20, 21))
    if kind == 2:
        return round(float(RNG.uniform(-100, 100)), 3)
    if kind == 3:  # +-1 degree and its neighbours, where the integer camera truncates
        return float(RNG.choice([6.66666, -6.66666, 6.6667, 1.0, -1.0, 13.333333, 0.5, -0.5, 2400.0, -1300.0]))
    if kind == 4:
        return float(RNG.integers(-3000, 3000))
    return float(RNG.integers(-3, 4))


def random_record(slot: int) -> Dict:
    keys = [k for k in ALL_KEYS if RNG.random() < 0.08]
    buttons = [b for b in range(5) if RNG.random() < 0.2]
    new = [b for b in buttons if RNG.random() < 0.5]
    gui = bool(RNG.random() < 0.25)
    x, y = round(float(RNG.uniform(0, 1280)), 1), round(float(RNG.uniform(0, 720)), 1)
    return {"mouse": {"x": x, "y": y, "dx": mouse_delta(), "dy": mouse_delta(), "buttons": buttons,
                      "newButtons": new, "dwheel": 0.0},
            "keyboard": {"keys": keys, "newKeys": keys, "chars": ""}, "isGuiOpen": gui, "hotbar": int(slot)}


def random_sequence() -> List[Dict]:
    slot, lines = 0 if RNG.random() < 0.5 else int(RNG.integers(0, 9)), []
    for i in range(int(RNG.integers(1, 40))):
        if RNG.random() < 0.15:
            slot = int(RNG.integers(0, 9))  # a scroll: only the slot changes
        line = random_record(slot)
        mouse = line["mouse"]
        if RNG.random() < 0.3:  # null
            line["keyboard"]["keys"], mouse["buttons"], mouse["dx"], mouse["dy"] = [], [], 0.0, 0.0
        if i == 0 and RNG.random() < 0.5:  # the stuck-attack rule
            mouse["newButtons"], mouse["buttons"] = [0], sorted(set(mouse["buttons"]) | {0})
        elif RNG.random() < 0.3:
            mouse["buttons"] = sorted(set(mouse["buttons"]) | {0})
        lines.append(line)
    return lines


class StandInVideo:
    """cv2.VideoCapture stand-in: ``n`` frames, then end of file."""

    def __init__(self, n: int):
        self.n, self.i = n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((360, 640, 3), self.i % 256, np.uint8)

    def release(self) -> None:
        pass


def run_worker(lines: List[Dict], n_frames: int) -> List[Dict]:
    """The official data_loader_worker on one recording (in this thread), its actions in output order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        data_loader.cv2.VideoCapture = lambda _path: StandInVideo(n_frames)
        tasks, output = queue.Queue(), queue.Queue()
        tasks.put((0, "rec.mp4", str(path)))
        tasks.put(None)
        with contextlib.redirect_stdout(io.StringIO()):  # "Could not read frame" lines
            data_loader.data_loader_worker(tasks, output, threading.Event())
        actions = []
        while (item := output.get_nowait()) is not None:
            actions.append(item[2])
    return actions


def as_json(value) -> np.ndarray:
    """A JSON document as a 0-d bytes array (UTF-8; loads without pickle)."""
    return np.array(json.dumps(value, separators=(",", ":")).encode())


def record_row(action: Dict):
    return [int(action[k]) for k in RECORD_KEYS], np.asarray(action["camera"], np.float64)


# ----------------------------------------------------------------------------- main

def main() -> None:
    out: Dict[str, np.ndarray] = {}
    for name, dtype, n in (("f64", np.float64, 3000), ("f32", np.float32, 3000), ("f16", np.float16, 500)):
        with np.errstate(over="ignore"):
            x = camera_inputs(dtype, n)
        out[f"disc_{name}_in"], out[f"disc_{name}_out"] = x, TRANSFORMER.discretize_camera(x).astype(np.int8)
    x = boundary_values(np.float32, 40)  # one 0-d array at a time: numpy 1.x's scalar promotion differs
    out["disc_f32_0d_in"] = x
    out["disc_f32_0d_out"] = np.array([TRANSFORMER.discretize_camera(np.array(v)) for v in x], np.int8)
    out["disc_int_in"] = np.arange(-200, 201, dtype=np.int64)
    out["disc_int_out"] = TRANSFORMER.discretize_camera(out["disc_int_in"])
    out["undisc_out"] = TRANSFORMER.undiscretize_camera(np.arange(11))

    buttons = np.concatenate([np.arange(8641), np.arange(8641), np.repeat([0, 1, 2, 8639, 8640], 121)])
    camera = np.concatenate([RNG.integers(0, 121, 8641), np.full(8641, 60), np.tile(np.arange(121), 5)])
    factored = MAPPING.to_factored({"buttons": buttons[:, None], "camera": camera[:, None]})
    out["to_factored_in"] = np.stack([buttons, camera], 1).astype(np.int16)
    out["to_factored_buttons"] = factored["buttons"].astype(np.uint8)
    out["to_factored_camera"] = factored["camera"].astype(np.uint8)
    out["policy2env_camera"] = TRANSFORMER.policy2env(factored)["camera"]

    rows = button_rows(12000)
    bins = RNG.integers(0, 11, (len(rows), 2))
    bins[RNG.random(len(rows)) < 0.3] = 5
    joint = MAPPING.from_factored({"buttons": rows.copy(), "camera": bins.copy()})
    out["from_factored_buttons"], out["from_factored_bins"] = rows.astype(np.uint8), bins.astype(np.uint8)
    out["from_factored_out"] = np.concatenate([joint["buttons"], joint["camera"]], 1).astype(np.int16)

    agent = off_agent.MineRLAgent.__new__(off_agent.MineRLAgent)  # no env, no policy: the mapping methods only
    agent.action_transformer, agent.action_mapper = TRANSFORMER, MAPPING
    env_buttons = env_button_rows(4000)
    out["env_keys"] = as_json(ENV_KEYS)
    out["env_buttons"] = env_buttons.astype(np.uint8)
    for name, dtype in (("f64", np.float64), ("f32", np.float32)):
        cams = camera_pairs(dtype, len(env_buttons))
        results = []
        for values, cam in zip(env_buttons, cams):
            action = dict(zip(ENV_KEYS, values.tolist()), camera=cam.copy())
            got = agent._env_action_to_agent(action)
            results.append([got["buttons"][0, 0], got["camera"][0, 0]])
        out[f"env_camera_{name}"], out[f"env_out_{name}"] = cams, np.array(results, np.int16)

    idm = IDMAgent.__new__(IDMAgent)
    idm.action_mapper = IDMActionMapping(n_camera_bins=11)
    idm.action_transformer = ActionTransformer(**off_agent.ACTION_TRANSFORMER_KWARGS)
    grid = np.stack(np.meshgrid(np.arange(11), np.arange(11), indexing="ij"), -1).reshape(-1, 2)
    idm_bins = np.concatenate([grid, RNG.integers(0, 11, (391, 2))])
    idm_buttons = RNG.integers(0, 2, (len(idm_bins), 20))
    decoded = idm._agent_action_to_env({"buttons": th.from_numpy(idm_buttons[None]),
                                        "camera": th.from_numpy(idm_bins[None])})
    out["idm_bins"], out["idm_buttons"] = idm_bins.astype(np.uint8), idm_buttons.astype(np.uint8)
    out["idm_buttons_out"] = np.stack([decoded[k][0] for k in Buttons.ALL], 1).astype(np.uint8)
    out["idm_camera"] = decoded["camera"][0]

    records = [random_record(int(RNG.integers(0, 9))) for _ in range(1500)]
    rows_, cams_, nulls = [], [], []
    for rec in records:
        action, null = ridm.json_action_to_env_action(json.loads(json.dumps(rec)))
        b, c = record_row(action)
        rows_.append(b), cams_.append(c), nulls.append(null)
    out["record_keys"] = as_json(RECORD_KEYS)
    out["records"] = as_json(records)
    out["records_buttons"], out["records_camera"] = np.array(rows_, np.uint8), np.array(cams_)
    out["records_null"] = np.array(nulls)

    sequences, seq_b, seq_c, lengths = [], [], [], []
    for _ in range(150):
        lines = random_sequence()
        n_frames = max(0, len(lines) + int(RNG.integers(-3, 4)))
        actions = run_worker(json.loads(json.dumps(lines)), n_frames)
        sequences.append([lines, n_frames])
        lengths.append(len(actions))
        for action in actions:
            b, c = record_row(action)
            seq_b.append(b), seq_c.append(c)
    out["sequences"] = as_json(sequences)
    out["seq_buttons"], out["seq_camera"] = np.array(seq_b, np.uint8), np.array(seq_c)
    out["seq_lengths"] = np.array(lengths)

    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
