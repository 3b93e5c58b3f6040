"""Generate tests/data/golden_idm_label.npz: the OFFICIAL IDM labelling procedure, run end to end.

Not part of the test suite: it needs the official Video-Pre-Training code at ``$VPT_OFFICIAL`` and an
environment where it imports (torch, numpy, opencv, gym3, attrs); ``minerl`` and ``gym`` are stubbed::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_idm_label.py

What runs is the official ``run_inverse_dynamics_model.main`` (the script behind the official IDM demo), with
three things replaced so it runs headless and without a video codec: ``cv2.VideoCapture`` serves the BGR form of
``make_obs`` frames (360x640, the resolution the script asserts), and ``cv2.imshow``/``cv2.waitKey`` do nothing.
Every ``IDMAgent.predict_actions`` call the script makes is recorded. The script reads ``--n-frames`` frames per
call and keeps one agent (so one hidden state) across calls; its last call gets the frames that are left, after
which its display loop fails (IndexError past the short batch, or ``np.stack`` of no frames when the video ended on
a call boundary): the recorded calls are the labels the official procedure computes for the whole video.

Weights are synthetic (``golden_helpers.weights_gen.make_tensor``) in the official layout; the network is the 4x
IDM's structure made small (128x128 input, as ``IDMAgent`` always resizes to 128x128; 8 channels out of the 3D
conv; hidsize 64). Cases (``cases``), each ``name/<field>``:

* ``nomem_short``: no memory between calls (memory = timesteps = 16), a 5-frame video (shorter than a window);
* ``nomem_rem``: same model, 40 frames, ``--n-frames 16``: calls of 16, 16 and a remainder of 8;
* ``nomem_long_calls``: same model, 40 frames, ``--n-frames 24``: calls of 24 (longer than timesteps) and 16;
* ``mem_calls``: 16 frames of memory (memory 24, timesteps 8), 30 frames, ``--n-frames 12``: 12, 12, 6, state
  carried from call to call.

Fields: ``net_kwargs`` (JSON), ``temperature``, ``weights_seed``, ``obs_seed``, ``n_frames``, ``num_frames``,
``call_lens``; outputs per frame: ``env_buttons`` (N, 20) in ``env_button_keys`` order, ``env_camera`` (N, 2)
float64 degrees (as the official agent returns them), ``logp_buttons`` (N, 20, 2), ``logp_camera`` (N, 2, 11).
"""
from __future__ import annotations

import json
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ -> golden_helpers
from golden_helpers.official import use_official_code  # noqa: E402

use_official_code()

import torch as th  # noqa: E402

import inverse_dynamics_model as official_idm  # noqa: E402  (official)
import run_inverse_dynamics_model as official_run  # noqa: E402  (official)
from lib.actions import Buttons  # noqa: E402  (official)

from golden_helpers.obs_gen import make_obs  # noqa: E402
from golden_helpers.weights_gen import make_tensor  # noqa: E402
from make_golden_idm import IDM_4X  # noqa: E402  (beside this script)

OUT = HERE / "golden_idm_label.npz"

#: The official 4x IDM ``net.args`` (make_golden_idm.IDM_4X), made small; the window is set per case.
SMALL = dict(IDM_4X, attention_heads=4, attention_memory_size=16, hidsize=64, img_shape=[128, 128, 8], impala_width=1,
             timesteps=16, conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 8, "padding": [2, 0, 0]})
NO_MEMORY = dict(SMALL, timesteps=16, attention_memory_size=16)
MEMORY = dict(SMALL, timesteps=8, attention_memory_size=24)

#: name -> (net, weights seed, obs seed, --n-frames, video length)
CASES = {
    "nomem_short": (NO_MEMORY, 31, 600, 16, 5),
    "nomem_rem": (NO_MEMORY, 31, 610, 16, 40),
    "nomem_long_calls": (NO_MEMORY, 31, 610, 24, 40),
    "mem_calls": (MEMORY, 32, 620, 12, 30),
}
TEMPERATURE = 1.0


class FrameCapture:
    """Stands in for ``cv2.VideoCapture``: ``read()`` gives the BGR form of ``make_obs(obs_seed, t)``, as OpenCV
    decodes a video."""

    def __init__(self, obs_seed: int, num_frames: int):
        self.obs_seed, self.num_frames, self.t = obs_seed, num_frames, 0

    def read(self):
        if self.t >= self.num_frames:
            return False, None
        self.t += 1
        return True, np.ascontiguousarray(make_obs(self.obs_seed, self.t - 1)[..., ::-1])


def run_case(name: str, net: Dict[str, Any], seed: int, obs_seed: int, n_frames: int,
             num_frames: int) -> Dict[str, np.ndarray]:
    calls: List[Dict[str, np.ndarray]] = []
    original_predict = official_idm.IDMAgent.predict_actions

    def recording_predict(agent, frames):
        # The network's log-probs of this call, from the policy call predict_actions makes.
        policy_predict = agent.policy.predict

        def keep_pd(*args, **kwargs):
            ac, state, res = policy_predict(*args, **kwargs)
            calls.append({"pd_" + k: v[0].numpy() for k, v in res["pd"].items()})
            return ac, state, res

        agent.policy.predict = keep_pd
        try:
            actions = original_predict(agent, frames)
        finally:
            agent.policy.predict = policy_predict
        calls[-1].update({k: np.asarray(v)[0] for k, v in actions.items()})
        return actions

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        agent = official_idm.IDMAgent(idm_net_kwargs=dict(net), pi_head_kwargs={"temperature": TEMPERATURE},
                                      device="cpu")
        sd = {k: make_tensor(seed, k, tuple(v.shape)) for k, v in agent.policy.state_dict().items()}
        th.save(sd, work / "idm.weights")
        args = {"net": {"args": net}, "pi_head_opts": {"temperature": TEMPERATURE}}
        (work / "idm.model").write_bytes(pickle.dumps({"model": {"args": args}}))
        record = json.dumps({"keyboard": {"keys": []}, "mouse": {"dx": 0, "dy": 0, "buttons": []}})
        (work / "video.jsonl").write_text("\n".join([record] * num_frames) + "\n")

        saved = (official_idm.IDMAgent.predict_actions, official_run.cv2.VideoCapture, official_run.cv2.imshow,
                 official_run.cv2.waitKey, official_run.cv2.destroyAllWindows)
        official_idm.IDMAgent.predict_actions = recording_predict
        official_run.cv2.VideoCapture = lambda path: FrameCapture(obs_seed, num_frames)
        official_run.cv2.imshow = lambda *a, **k: None
        official_run.cv2.waitKey = lambda *a, **k: 0
        official_run.cv2.destroyAllWindows = lambda *a, **k: None
        try:
            official_run.main(str(work / "idm.model"), str(work / "idm.weights"), str(work / "video.mp4"),
                              str(work / "video.jsonl"), 10_000, n_frames)
            raise AssertionError("the official script was expected to stop after the last (partial) batch")
        except (IndexError, ValueError) as err:  # its display loop, past the labelled frames
            print(f"{name}: official script stopped after the last batch ({type(err).__name__}: {err})")
        finally:
            (official_idm.IDMAgent.predict_actions, official_run.cv2.VideoCapture, official_run.cv2.imshow,
             official_run.cv2.waitKey, official_run.cv2.destroyAllWindows) = saved

    keys = list(Buttons.ALL)
    call_lens = [len(c["camera"]) for c in calls]
    assert sum(call_lens) == num_frames, call_lens
    p = name + "/"
    return {
        p + "net_kwargs": np.array(json.dumps(net, sort_keys=True)),
        p + "temperature": np.asarray(TEMPERATURE), p + "weights_seed": np.asarray(seed),
        p + "obs_seed": np.asarray(obs_seed), p + "n_frames": np.asarray(n_frames),
        p + "num_frames": np.asarray(num_frames), p + "call_lens": np.array(call_lens),
        p + "env_button_keys": np.array(keys),
        p + "env_buttons": np.concatenate([np.stack([c[k] for k in keys], -1) for c in calls]).astype(np.int64),
        p + "env_camera": np.concatenate([c["camera"] for c in calls]).astype(np.float64),
        p + "logp_buttons": np.concatenate([c["pd_buttons"] for c in calls]).astype(np.float32),
        p + "logp_camera": np.concatenate([c["pd_camera"] for c in calls]).astype(np.float32),
    }


def main() -> None:
    th.set_num_threads(2)
    data: Dict[str, np.ndarray] = {"cases": np.array(list(CASES))}
    for name, case in CASES.items():
        data.update(run_case(name, *case))
        b, c = data[name + "/env_buttons"], data[name + "/env_camera"]
        print(f"{name}: calls {data[name + '/call_lens'].tolist()}, distinct button vectors "
              f"{len({tuple(r) for r in b})}, distinct cameras {len({tuple(r) for r in c})}")
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.1f} kB)")


if __name__ == "__main__":
    main()
