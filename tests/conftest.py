"""Shared fixtures: the golden small model (official layout, synthetic weights) and its frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from golden_helpers.obs_gen import make_obs  # noqa: F401  (the golden frames, re-exported for tests)

DATA = Path(__file__).parent / "data"
SMALL_MODEL = DATA / "small.model"
SMALL_WEIGHTS = DATA / "small.weights"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def golden():
    return dict(np.load(DATA / "golden.npz"))


@pytest.fixture
def small_agent():
    from vpt_agent import VPTAgent

    return VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=0)
