"""Our training step against the official training *function* (``behavioural_cloning_train``), end to end.

Golden values: tests/data/golden_bc_train.npz, made by tests/data/make_golden_bc_train.py, which runs the
official function unchanged on 16 two-step episodes (batches of 8, integer cameras as the official loader
makes them, agent-space null actions among them) and stores how far each weight moved in 4 optimizer steps.

Our side: B=8 lanes x T=1 window, memory carried and reset at episode starts, ``--null-actions keep``, no
clip (the official clip sees an exhausted generator), and the optimizer of :mod:`vpt_agent.train.optim`.
What this pins down beyond tests/test_train_golden.py: the loss average (the official ``-log_prob / 8``
summed over a batch equals our mean over the 8 lanes), the optimizer (Adam with L2 weight decay, not
AdamW), which parameters move (not the value head), and fresh memories for episodes that start in a lane.

Tolerance: float32 gradients; Adam divides each by its own running scale, so a coordinate whose gradient is
near zero can move by a different fraction of ``lr``. Measured: each tensor's total movement agrees to 6e-5
relative, every coordinate of the listed tensors to 5e-4 ``lr``; the bounds are 1e-3 and 1e-2 ``lr``. AdamW
instead of Adam misses them by far (77% relative, 8 ``lr``: checked below, so the test can fail).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from golden_helpers.obs_gen import make_obs
from test_train_golden import _policy  # the golden archive's network with its synthetic weights
from vpt_agent.train.batches import MemorySource, WindowLoader, plan
from vpt_agent.train.config import TrainConfig
from vpt_agent.train.optim import make_optimizer
from vpt_agent.train.trainer import batch_tensors, train_step, trainable_parameters

GOLDEN = Path(__file__).parent / "data" / "golden_bc_train.npz"
SEED = 5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def _source(g) -> MemorySource:
    """The golden episodes, placed so that our data order reads episodes 0-7 first, then 8-15, as the official run."""
    episodes = json.loads(str(g["actions"]))
    B, L = int(g["batch_size"]), int(g["episode_len"])
    slots = list(plan([L] * len(episodes), B, 1, SEED, 1))
    placed = [None] * len(episodes)
    for group in range(len(episodes) // B):
        for lane, slot in enumerate(slots[group * L]):
            placed[slot.episode] = group * B + lane
    out = []
    for e in placed:
        frames = np.stack([cv2.resize(make_obs(int(g["obs_seeds"][e]), t), (128, 128),
                                      interpolation=cv2.INTER_LINEAR) for t in range(L)])
        actions = [{k: (np.array(v, dtype=np.int64) if k == "camera" else v) for k, v in a.items()}
                   for a in episodes[e]]
        out.append((frames, actions))
    return MemorySource(out)


def _train(g, make_opt=make_optimizer):
    """Our trainer's step over the golden data; returns {key: final - initial} (float64)."""
    policy = _policy(g)
    before = {k: v.detach().double().clone() for k, v in policy.state_dict().items()}
    B = int(g["batch_size"])
    loader = WindowLoader(_source(g), batch=B, seq_len=1, seed=SEED, epochs=1)
    cfg = TrainConfig(lr=float(g["lr"]), weight_decay=float(g["weight_decay"]))
    params = trainable_parameters(policy, freeze_trunk=False)
    opt, _ = make_opt(params, cfg)
    state = policy.initial_state(B)
    steps = 0
    for batch in loader:
        t = batch_tensors(batch, torch.device("cpu"))
        _, _, state = train_step(policy, opt, params, t, state, 0.0, contextlib.nullcontext())
        steps += 1
    assert steps == len(json.loads(str(g["actions"]))) * int(g["episode_len"]) // B
    return {k: v.detach().double() - before[k] for k, v in policy.state_dict().items()}


def _compare(g, deltas):
    lr = float(g["lr"])
    for key in (k for k in g if k.startswith("delta_norm/")):
        name = key[len("delta_norm/"):]
        want = float(g[key])
        got = float(deltas[name].norm())
        if want == 0:
            assert got == 0, f"{name} moved ({got}); the official run leaves it untouched"
        else:
            assert abs(got - want) <= 1e-3 * want, f"{name}: moved {got}, official {want}"
    for key in (k for k in g if k.startswith("delta/")):
        np.testing.assert_allclose(deltas[key[len("delta/"):]].numpy(), g[key], rtol=0, atol=0.01 * lr,
                                   err_msg=key)


def test_training_steps_equal_the_official_function(golden):
    assert float(golden["lr"]) == TrainConfig().lr and float(golden["weight_decay"]) == TrainConfig().weight_decay
    _compare(golden, _train(golden))


def test_the_trainer_builds_the_official_optimizer():
    """The training loop must use :func:`vpt_agent.train.optim.make_optimizer` (Adam with L2 decay)."""
    from vpt_agent.train import trainer

    policy = torch.nn.Linear(2, 2)
    opt, _ = trainer.make_optimizer(list(policy.parameters()), TrainConfig())
    assert type(opt) is torch.optim.Adam and not opt.defaults.get("decoupled_weight_decay", False)


def test_value_head_is_not_trained(golden):
    assert all(float(golden[k]) == 0 for k in golden if k.startswith("delta_norm/value_head."))
    assert any(float(golden[k]) > 0 for k in golden if k.startswith("delta_norm/pi_head."))


def test_golden_detects_adamw(golden):
    def adamw(params, cfg):
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay), None

    with pytest.raises(AssertionError):
        _compare(golden, _train(golden, adamw))


def test_recordings_can_be_read_as_the_official_loader_reads_them(tmp_path):
    """The official loader truncates camera degrees to integers; ``RecordingSource(options=...)`` can too."""
    from train_fixtures import _env, record

    from vpt_agent.data import ReadOptions
    from vpt_agent.train.batches import RecordingSource, episode_targets
    from vpt_agent.train.targets import action_targets

    cameras = [(0.9, 0.0), (2.7, -1.95), (-0.45, 12.3), (0.0, 0.0)]
    actions = [_env(["forward"], c) for c in cameras]
    frames = np.full((len(actions), 32, 32, 3), 90, np.uint8)
    record(tmp_path, [(frames, actions)])
    official = ReadOptions.official()
    truncated = [_env(["forward"], np.trunc(np.float32(c))) for c in cameras]
    want = action_targets(truncated)
    got = episode_targets(RecordingSource(tmp_path, (32, 32, 3), options=official), 0)
    np.testing.assert_array_equal(got.camera, want.camera)
    np.testing.assert_array_equal(got.buttons, want.buttons)
    default = episode_targets(RecordingSource(tmp_path, (32, 32, 3)), 0)
    assert (default.camera != want.camera).sum() >= 2  # the intended degrees: a different target
    assert len(list(RecordingSource(tmp_path, (32, 32, 3), options=official).frames(0))) == len(actions)


def test_official_loader_flag_reads_recordings_as_the_official_loader():
    """``--official-loader`` is what the CLI offers for the options above; without it recordings read as intended."""
    from vpt_agent.data import ReadOptions
    from vpt_agent.train.config import parse_config
    from vpt_agent.train.trainer import read_options

    assert read_options(parse_config(["--official-loader"])) == ReadOptions(integer_camera=True,
                                                                            length_mismatch="truncate")
    assert read_options(parse_config([])) == ReadOptions()
