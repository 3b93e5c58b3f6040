"""Shared fixtures: the golden small model (official layout, synthetic weights) and its frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
SMALL_MODEL = DATA / "small.model"
SMALL_WEIGHTS = DATA / "small.weights"

torch.set_num_threads(2)


def make_obs(seed: int, t: int) -> np.ndarray:
    """The golden frames (same as ../shared/golden/obs_gen.py): 360x640 RGB blobs plus noise."""
    r = np.random.default_rng(seed * 100003 + t)
    low = r.integers(0, 256, size=(9, 16, 3)).astype(np.float32)
    img = np.kron(low, np.ones((40, 40, 1), dtype=np.float32))
    img += r.normal(0, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def golden():
    return dict(np.load(DATA / "golden.npz"))


@pytest.fixture
def small_agent():
    from vpt_agent import VPTAgent

    return VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=0)
