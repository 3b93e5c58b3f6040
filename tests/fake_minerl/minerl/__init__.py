"""Fake ``minerl`` (tests only): mimics the parts of MineRL 1.0's API that ``envs.minerl`` uses."""
__version__ = "1.0.2-fake"
