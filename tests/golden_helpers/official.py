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
