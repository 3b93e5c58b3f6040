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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (small models on 2 shared cores: a second OpenMP thread only stalls)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def golden():
    return dict(np.load(DATA / "golden.npz"))


@pytest.fixture
def small_agent():
    from vpt_agent import VPTAgent

    return VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=0)
