"""The network's state_dict equals the official MinecraftAgentPolicy layout (built on the meta device)."""
import pytest
import torch

from golden_helpers.key_layout import official_keys  # the official layout derived from a config (../shared/golden)
from vpt_agent import PolicyConfig, VPTPolicy

VPT_NET = dict(
    attention_heads=16, attention_mask_style="clipped_causal", attention_memory_size=256, diff_mlp_embedding=False,
    hidsize=2048, img_shape=[128, 128, 3], impala_chans=[16, 32, 32], impala_kwargs={"post_pool_groups": 1},
    impala_width=8, init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=4,
    only_img_input=True, pointwise_ratio=4, pointwise_use_activation=False, recurrence_is_residual=True,
    recurrence_type="transformer", timesteps=128, use_pointwise_layer=True, use_pre_lstm_ln=False,
)
SIZES = {"1x": (1024, 4, 71_326_654), "2x": (2048, 8, 248_495_294), "3x": (3072, 12, 531_520_958)}


@pytest.mark.parametrize("size", list(SIZES))
def test_official_layout(size):
    hidsize, width, n_params = SIZES[size]
    net = dict(VPT_NET, hidsize=hidsize, impala_width=width)
    with torch.device("meta"):
        policy = VPTPolicy(PolicyConfig.from_kwargs(net, temperature=2.0))
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
        PolicyConfig.from_kwargs(dict(VPT_NET, recurrence_type="multi_layer_lstm"))
    with pytest.raises(ValueError, match="divisible"):
        PolicyConfig.from_kwargs(dict(VPT_NET, attention_heads=3))
