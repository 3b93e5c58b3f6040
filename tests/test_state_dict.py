"""The network's state_dict equals the official MinecraftAgentPolicy layout (built on the meta device)."""
import pytest
import torch

from golden_helpers.key_layout import official_keys  # the official layout derived from a config (../shared/golden)
from vpt_agent import PolicyConfig, VPTPolicy
from vpt_agent.config import VPT_NET_KWARGS, official_net_kwargs

N_PARAMS = {"1x": 71_326_654, "2x": 248_495_294, "3x": 531_520_958}


@pytest.mark.parametrize("size", list(N_PARAMS))
def test_official_layout(size):
    n_params = N_PARAMS[size]
    net = official_net_kwargs(size)
    with torch.device("meta"):
        policy = VPTPolicy(PolicyConfig.official(size))
    sd = policy.state_dict()
    expected = official_keys({"net": net})
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(s) for k, s in expected}
    assert len(sd) == 134
    assert sum(k.startswith("net.") for k in sd) == 125
    assert sum(k.startswith("pi_head.") for k in sd) == 4
    assert sum(k.startswith("value_head.") for k in sd) == 5
    assert sum(v.numel() for v in sd.values()) == n_params


def test_unsupported_config_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="recurrence_type"):
        PolicyConfig.from_kwargs(dict(VPT_NET_KWARGS, recurrence_type="multi_masked_lstm"))
    with pytest.raises(NotImplementedError, match="img_statistics"):
        PolicyConfig.from_kwargs(dict(VPT_NET_KWARGS, img_statistics="stats.npz"))
    with pytest.raises(ValueError, match="unknown model size"):
        PolicyConfig.official("4x")
    with pytest.raises(ValueError, match="divisible"):
        PolicyConfig.from_kwargs(dict(VPT_NET_KWARGS, attention_heads=3))
