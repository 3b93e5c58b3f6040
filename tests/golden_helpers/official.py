"""Make the official Video-Pre-Training code importable for the golden-data generators in ``tests/data/``.

Its checkout is at ``$VPT_OFFICIAL``. The code imports ``minerl`` (only for types the policy never uses) and
``gym.spaces`` (only to build MineRLAgent's target action space for ``validate_env``), so both are stubbed here
when they are not installed.
"""
import os
import sys
import types

_MINERL_MODULES = ("minerl", "minerl.herobraine", "minerl.herobraine.hero", "minerl.herobraine.hero.mc")


def use_official_code() -> None:
    """Put ``$VPT_OFFICIAL`` first on ``sys.path`` and stub ``minerl`` and ``gym``."""
    sys.path.insert(0, os.environ["VPT_OFFICIAL"])
    for name in _MINERL_MODULES:
        sys.modules.setdefault(name, types.ModuleType(name))
    gym = types.ModuleType("gym")
    gym.spaces = types.SimpleNamespace(Discrete=lambda *a, **k: None, Box=lambda *a, **k: None)
    sys.modules.setdefault("gym", gym)


def small_model_agent(data_dir):
    """The official ``MineRLAgent`` on ``data_dir``'s ``small.model`` + ``small.weights`` (CPU, 2 torch threads as
    the golden data is made, env check off). Call :func:`use_official_code` first."""
    import pickle

    import torch

    import agent as official  # the official agent.py

    torch.set_num_threads(2)
    official.validate_env = lambda env: None
    args = pickle.loads((data_dir / "small.model").read_bytes())["model"]["args"]
    off = official.MineRLAgent(None, device="cpu", policy_kwargs=args["net"]["args"],
                               pi_head_kwargs=args["pi_head_opts"])
    off.load_weights(str(data_dir / "small.weights"))  # torch.load + load_state_dict(strict=False) + reset()
    return off
