"""Our BC loss equals the official ``behavioural_cloning.py`` step by step (T=1, memory carried).

Golden values: tests/data/golden_bc.npz, made by tests/data/make_golden_bc.py with the official code.

Tolerance: both implementations are float32; against a float64 run of our network, our per-step losses
(~15 nats; the synthetic weights make logits sharp) are off by up to 5e-4 and the official ones by up to
7e-4, so the bound is rtol 1e-4 (~1.6e-3). Semantic slips are far larger: e.g. dropping the memory carry
changes losses by more than 0.05 (checked below, so the test can fail).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from golden_helpers.obs_gen import make_obs
from golden_helpers.weights_gen import make_tensor
from vpt_agent.config import PolicyConfig
from vpt_agent.policy import VPTPolicy
from vpt_agent.train.batches import MemorySource, WindowLoader
from vpt_agent.train.loss import action_nll, bc_loss
from vpt_agent.train.trainer import batch_tensors, detach_state

GOLDEN = Path(__file__).parent / "data" / "golden_bc.npz"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def _policy(g) -> VPTPolicy:
    cfg = PolicyConfig.from_kwargs(json.loads(str(g["net_kwargs"])), temperature=float(g["temperature"]))
    policy = VPTPolicy(cfg)
    seed = int(g["weights_seed"])
    policy.load_state_dict({k: make_tensor(seed, k, tuple(v.shape)) for k, v in policy.state_dict().items()})
    return policy


def _source(g) -> MemorySource:
    episodes = []
    for actions, obs_seed in zip(json.loads(str(g["actions"])), g["obs_seeds"]):
        frames = np.stack([cv2.resize(make_obs(int(obs_seed), t), (128, 128), interpolation=cv2.INTER_LINEAR)
                           for t in range(len(actions))])
        episodes.append((frames, actions))
    return MemorySource(episodes)


def _per_step_losses(policy: VPTPolicy, loader: WindowLoader, n_episodes: int, grad_steps: int = 0,
                     carry: bool = True):
    """NLL per kept step, per episode, from T=1 windows with carried, detached memory (our training path)."""
    losses = [[] for _ in range(n_episodes)]
    state = policy.initial_state(1)
    policy.zero_grad()
    for batch in loader:
        t = batch_tensors(batch, torch.device("cpu"))
        out = policy(t["frames"], t["first"], state)
        ep = int(batch.episode[0])
        if ep == 0 and len(losses[0]) < grad_steps:
            bc_loss(out.logp, t["buttons"], t["camera"], t["mask"]).backward()  # accumulates, like the official loop
        losses[ep].append(float(action_nll(out.logp, t["buttons"], t["camera"]).detach()[0, 0]))
        state = detach_state(out.state) if carry else policy.initial_state(1)
    return losses


@pytest.mark.parametrize("skip_null,key", [(False, "loss"), (True, "loss_skip")])
def test_per_step_loss_equals_official(golden, skip_null, key):
    policy = _policy(golden)
    loader = WindowLoader(_source(golden), batch=1, seq_len=1, seed=3, epochs=1, skip_null=skip_null)
    ours = _per_step_losses(policy, loader, 2, grad_steps=int(golden["grad_steps"]) if not skip_null else 0)
    lens = list(golden["episode_lens"])
    theirs = np.split(golden[key], np.cumsum(lens)[:-1])
    for e in range(2):
        expected = theirs[e][np.isfinite(theirs[e])]
        assert len(ours[e]) == len(expected)
        np.testing.assert_allclose(ours[e], expected, rtol=1e-4, atol=0)
    if skip_null:
        assert sum(map(len, ours)) < sum(lens)  # the synthetic data has null actions to skip
        return
    grads = dict(policy.named_parameters())
    for k in golden:
        if k.startswith("grad/"):
            want = golden[k]
            np.testing.assert_allclose(grads[k[5:]].grad.double().numpy(), want, rtol=1e-3,
                                       atol=1e-4 * np.abs(want).max(), err_msg=k)


def test_golden_detects_a_missing_memory_carry(golden):
    loader = WindowLoader(_source(golden), batch=1, seq_len=1, seed=3, epochs=1)
    ours = _per_step_losses(_policy(golden), loader, 2, carry=False)
    expected = golden["loss"][: golden["episode_lens"][0]]
    assert np.abs(np.array(ours[0]) - expected).max() > 0.05
