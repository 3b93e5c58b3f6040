"""Record the official ``MineRLAgent`` on MineRL-like observations of every shape the review checks
(tests/data/golden_agent_review.npz, read by tests/test_review_agent.py).

Run with a Python that can import the official code: ``VPT_OFFICIAL=/path/to/Video-Pre-Training python
tests/data/make_golden_agent_review.py`` (``minerl`` and ``gym`` are stubbed). The observations are rebuilt by the
test from :func:`observation`, so only the official outputs are stored:

* ``det_*``: the argmax path of ``get_action`` (its own steps: ``_env_obs_to_agent``, ``policy.act`` with the dummy
  ``first``, ``_agent_action_to_env``) over ``STEPS`` steps, ``reset()`` at ``RESET_AT``;
* ``sto_*``: ``get_action`` itself (it always samples) after ``torch.manual_seed(SEED)``, which is called once the
  agent is built (its constructor draws the initial weights from the same global RNG), ``reset()`` at ``RESET_AT``.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED, OBS_SEED, STEPS, RESET_AT = 77, 21, 240, 130
#: pov sizes (h, w) cycled through by the "other size" observations
SIZES = [(1, 1), (128, 128), (127, 129), (720, 1280), (3, 5), (129, 128), (64, 64), (1, 640), (360, 1), (201, 333)]
N_KINDS = 7


def _frame(t: int) -> np.ndarray:
    sys.path.insert(0, str(HERE.parent))
    from golden_helpers.obs_gen import make_obs

    return make_obs(OBS_SEED, t)


def _minerl_extras(t: int) -> dict:
    """The other keys of a MineRLHumanSurvival observation (0-d arrays, strings), a few of each kind."""
    return {
        "inventory": {"dirt": np.array(t % 5, np.int32), "oak_log": np.array(1, np.int32)},
        "equipped_items": {"mainhand": {"type": "air", "damage": np.array(0), "maxDamage": np.array(0)}},
        "life_stats": {"life": np.array(20.0), "food": np.array(20), "is_alive": np.array(True)},
        "location_stats": {"xpos": np.array(0.5 * t), "yaw": np.array(-12.0), "pitch": np.array(3.0)},
        "mine_block": {"dirt": np.array(0)},
    }


def observation(t: int) -> dict:
    """Step ``t``'s observation; ``t % N_KINDS`` picks how its pov is laid out."""
    frame, kind = _frame(t), t % N_KINDS
    if kind == 0:  # as MineRL returns it: a read-only, vertically flipped view, with all the other keys
        pov = np.ascontiguousarray(frame[::-1])[::-1]
        pov.setflags(write=False)
        return {"pov": pov, **_minerl_extras(t)}
    if kind == 1:  # mirrored columns (negative stride on axis 1)
        pov = frame[:, ::-1]
    elif kind == 2:  # another size, contiguous
        h, w = SIZES[(t // N_KINDS) % len(SIZES)]
        pov = np.resize(frame, (h, w, 3))
    elif kind == 3:  # Fortran order
        pov = np.asfortranarray(frame)
    elif kind == 4:  # every other pixel of a larger frame (strided, not contiguous)
        pov = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)[::2, ::2][:, ::-1]
    elif kind == 5:  # float32 on the 0..255 scale, not integral
        pov = frame.astype(np.float32) * np.float32(0.97) + np.float32(0.3)
    else:  # float64, and another size
        h, w = SIZES[(t // N_KINDS) % len(SIZES)]
        pov = np.resize(frame, (h, w, 3)).astype(np.float64) * 0.99
    return {"pov": pov, "extra_key": "ignored"}


def main() -> None:
    import torch

    sys.path.insert(0, str(HERE.parent))
    from golden_helpers.official import small_model_agent, use_official_code

    use_official_code()
    from lib.actions import Buttons

    off = small_model_agent(HERE)
    names = list(Buttons.ALL)
    out = {"button_names": np.array(names)}
    for mode in ("det", "sto"):
        off.reset()
        if mode == "sto":
            torch.manual_seed(SEED)
        joint, buttons, camera = [], [], []
        for t in range(STEPS):
            if t == RESET_AT:
                off.reset()
            obs = observation(t)
            if mode == "det":
                inp = off._env_obs_to_agent(obs)
                ac, off.hidden_state, _ = off.policy.act(inp, off._dummy_first, off.hidden_state, stochastic=False)
                joint.append((int(ac["buttons"][0, 0]), int(ac["camera"][0, 0])))
                action = off._agent_action_to_env(ac)
            else:
                action = off.get_action(obs)
            assert sorted(action) == sorted(names + ["camera"]), sorted(action)
            assert all(action[k].shape == (1,) and action[k].dtype == np.int64 for k in names)
            assert action["camera"].shape == (1, 2) and action["camera"].dtype == np.float64
            buttons.append([int(action[k][0]) for k in names])
            camera.append(action["camera"][0])
        out[f"{mode}_buttons"] = np.array(buttons, np.int64)
        out[f"{mode}_camera"] = np.array(camera, np.float64)
        if joint:
            out["det_joint"] = np.array(joint, np.int64)
    out.update(seed=SEED, obs_seed=OBS_SEED, steps=STEPS, reset_at=RESET_AT)
    np.savez_compressed(HERE / "golden_agent_review.npz", **out)
    print("distinct joint button actions (argmax):", len(set(j[0] for j in out["det_joint"].tolist())),
          "| distinct sampled button rows:", len({tuple(r) for r in out["sto_buttons"].tolist()}))


if __name__ == "__main__":
    main()
