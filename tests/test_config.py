"""PolicyConfig validation: every setting's type and range is checked before anything is allocated (issue 11)."""
from __future__ import annotations

import pickle
import time

import pytest
import torch

from vpt_agent import ModelFileError, PolicyConfig, VPTPolicy, load_model_config
from vpt_agent.config import (
    MAX_PARAMETERS,
    VPT_NET_KWARGS,
    VPT_SIZES,
    ConfigError,
    UnsupportedConfigError,
    official_net_kwargs,
    size_name,
)

SMALL = dict(VPT_NET_KWARGS, hidsize=64, impala_width=1, attention_heads=4, attention_memory_size=12, timesteps=4,
             img_shape=[32, 32, 3], n_recurrence_layers=2)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-9, 1e9,
                                         "2", None, True, [2]])
def test_temperature_must_be_a_sane_number(temperature):
    with pytest.raises(ConfigError, match="temperature") as e:
        PolicyConfig.from_kwargs(SMALL, temperature=temperature)
    assert "\n" not in str(e.value)


def test_temperature_from_a_model_file(tmp_path):
    path = tmp_path / "t.model"
    for bad in (0.0, float("nan"), "hot"):
        args = {"net": {"args": SMALL}, "pi_head_opts": {"temperature": bad}}
        path.write_bytes(pickle.dumps({"model": {"args": args}}))
        with pytest.raises(ModelFileError, match="temperature"):
            load_model_config(path)
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": SMALL}, "pi_head_opts": {"temperature": 2}}}}))
    assert load_model_config(path).temperature == 2.0


@pytest.mark.parametrize("key, value, expected", [
    ("hidsize", 0, r"hidsize must be in \[1"),
    ("hidsize", -8, r"hidsize must be in \[1"),
    ("hidsize", 64.0, "hidsize must be an integer"),
    ("hidsize", True, "hidsize must be an integer"),
    ("hidsize", "64", "hidsize must be an integer"),
    ("attention_heads", 0, r"attention_heads must be in \[1"),
    ("attention_heads", 3, "divisible"),
    ("n_recurrence_layers", -1, r"n_recurrence_layers must be in \[1"),
    ("n_recurrence_layers", 0, r"n_recurrence_layers must be in \[1"),
    ("n_recurrence_layers", 10 ** 6, r"n_recurrence_layers must be in \[1, 64\]"),
    ("init_norm_kwargs", [1, 2], "init_norm_kwargs must be a dict"),
    ("init_norm_kwargs", {"group_norm_groups": 0}, r"group_norm_groups must be in \[1"),
    ("init_norm_kwargs", {"group_norm_groups": 3}, "does not divide"),
    ("init_norm_kwargs", {"bogus": 1}, "unknown keys"),
    ("impala_kwargs", "x", "impala_kwargs must be a dict"),
    ("impala_kwargs", {"post_pool_groups": 5}, "does not divide"),
    ("img_shape", [0, 0, 3], r"img_shape\[0\] must be in \[1"),
    ("img_shape", [32, 32], r"img_shape must be \(height, width, 3\)"),
    ("img_shape", [32, 32, 4], r"img_shape must be \(height, width, 3\)"),
    ("img_shape", 32, "img_shape must be a list"),
    ("impala_width", 0, "impala_width must be a positive number"),
    ("impala_width", float("nan"), "impala_width must be a positive number"),
    ("impala_width", 0.01, "channel counts"),
    ("impala_chans", [4] * 9, "impala_chans must be a list of at most 8"),
    ("impala_chans", [16, "32"], r"impala_chans\[1\] must be an integer"),
    ("timesteps", None, "needs 'timesteps'"),
    ("timesteps", 12, "must be > 0"),
    ("timesteps", 13, "must be > 0"),
    ("img_shape", None, "img_shape .* is required"),
    ("impala_kwargs", {"nblock": 1}, r"impala_kwargs may not set \['nblock'\]"),
    ("impala_kwargs", {"pool": 0}, "impala_kwargs.pool must be true or false"),
    ("init_norm_kwargs", {"use_activation": 0}, "init_norm_kwargs.use_activation must be true or false"),
    ("single_output", 1, "single_output must be true or false"),
    ("attention_memory_size", 10 ** 9, r"attention_memory_size must be in \[1"),
    ("pointwise_ratio", 0, r"pointwise_ratio must be in \[1"),
    ("use_pointwise_layer", "yes", "use_pointwise_layer must be true or false"),
    ("attention_mask_style", "causal", "attention_mask_style must be"),
])
def test_out_of_range_settings_are_one_line_value_errors(key, value, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        PolicyConfig.from_kwargs(dict(SMALL, **{key: value}))
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_parameter_limit_is_checked_before_allocation():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="parameters, more than the limit") as e:
        PolicyConfig.from_kwargs(dict(VPT_NET_KWARGS, hidsize=16384, attention_heads=16))
    assert f"{MAX_PARAMETERS:,}" in str(e.value)
    assert time.perf_counter() - start < 1.0
    for size in VPT_SIZES:  # the released models are well inside the limit
        assert PolicyConfig.official(size).num_parameters() < MAX_PARAMETERS / 2


def test_unsupported_settings_stay_not_implemented():
    for kind in ("lstm", "multi_masked_lstm", "none", "Transformer", None, ["transformer"]):
        # "multi_masked_lstm" and "none" pass the official assertion but build blocks without a recurrence.
        with pytest.raises(UnsupportedConfigError, match="recurrence_type") as e:
            PolicyConfig.from_kwargs(dict(SMALL, recurrence_type=kind))
        assert "multi_layer_bilstm" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(NotImplementedError, match="batch_norm"):
        PolicyConfig.from_kwargs(dict(SMALL, init_norm_kwargs={"batch_norm": True}))


@pytest.mark.parametrize("change", [
    {},
    {"init_norm_kwargs": {}},
    {"init_norm_kwargs": {"layer_norm": True, "group_norm_groups": 1}, "first_conv_norm": True},
    {"init_norm_kwargs": {"layer_norm": True}, "impala_chans": []},
    {"impala_chans": []},
    {"impala_chans": [], "first_conv_norm": True, "init_norm_kwargs": {"group_norm_groups": 2}},  # no conv to norm
    {"init_norm_kwargs": {"group_norm_groups": 2}, "first_conv_norm": False},
    {"impala_kwargs": {}},
    {"impala_kwargs": {"pool": False, "post_pool_groups": 1}, "img_shape": [8, 8, 3]},
    {"use_pointwise_layer": False},
    {"use_pre_lstm_ln": True, "pointwise_ratio": 2},
    {"impala_width": 2, "impala_chans": [8, 16], "img_shape": [20, 12, 3]},
    {"attention_mask_style": "none", "attention_memory_size": 5},
    {"attention_mask_style": "none", "attention_memory_size": 4},  # no memory at all
    {"impala_kwargs": {"pool": False, "post_pool_groups": 2}, "img_shape": [6, 5, 3]},
    {"recurrence_type": "multi_layer_lstm"},
    {"recurrence_type": "multi_layer_bilstm", "n_recurrence_layers": 3, "use_pointwise_layer": False},
])
def test_num_parameters_equals_the_built_network(change):
    cfg = PolicyConfig.from_kwargs(dict(SMALL, **change))
    with torch.device("meta"):
        policy = VPTPolicy(cfg)
    assert cfg.num_parameters() == sum(t.numel() for t in policy.state_dict().values())


def test_size_names_come_from_the_size_table():
    assert {size_name(h) for h, _ in VPT_SIZES.values()} == set(VPT_SIZES)
    assert size_name(128) == "custom"
    assert official_net_kwargs("1x")["hidsize"] == VPT_SIZES["1x"][0]


@pytest.mark.parametrize("kind", ["multi_layer_lstm", "multi_layer_bilstm"])
def test_lstm_recurrences_are_accepted_without_attention_settings(kind):
    """The official LSTM blocks read no attention setting nor timesteps: any value (even one a transformer would
    refuse) is accepted and ignored, as by the official constructor."""
    unused = {"timesteps": None, "attention_heads": 3, "attention_memory_size": 0, "attention_mask_style": "x"}
    cfg = PolicyConfig.from_kwargs(dict(SMALL, recurrence_type=kind, **unused))
    assert cfg.is_lstm and cfg.recurrence_type == kind
    with torch.device("meta"):
        policy = VPTPolicy(cfg)
    keys = [k for k in policy.state_dict() if k.startswith("net.recurrent_layer.blocks.1.")]
    assert keys == ["net.recurrent_layer.blocks.1." + k for k in (
        "mlp0.norm.weight", "mlp0.norm.bias", "mlp0.layer.weight", "mlp1.layer.weight", "mlp1.layer.bias",
        "pre_r_ln.weight", "pre_r_ln.bias", "r.weight_ih_l0", "r.weight_hh_l0", "r.bias_ih_l0", "r.bias_hh_l0")]
    H = SMALL["hidsize"]
    assert policy.state_dict()["net.recurrent_layer.blocks.1.r.weight_hh_l0"].shape == (4 * H, H)
    with pytest.raises(ConfigError, match=r"hidsize must be in \[1"):  # the LSTM's own settings stay checked
        PolicyConfig.from_kwargs(dict(SMALL, recurrence_type=kind, hidsize=0))


@pytest.mark.parametrize("change, expected", [
    ({"recurrence_type": "multi_masked_lstm"}, "recurrence_type='multi_masked_lstm'"),
    ({"recurrence_type": "none"}, "recurrence_type='none'"),
    ({"single_output": True}, "single_output=True"),
    ({"init_norm_kwargs": {"batch_norm": True}}, "init_norm_kwargs.batch_norm=True"),
    # Official convolutions without a GroupNorm would get a LayerNorm over the image width.
    ({"init_norm_kwargs": {"layer_norm": True}}, "init_norm_kwargs.layer_norm=True"),
    ({"init_norm_kwargs": {"layer_norm": True, "group_norm_groups": 1}}, "init_norm_kwargs.layer_norm=True"),
    ({"img_statistics": "stats.npz"}, "img_statistics"),
])
def test_official_settings_we_do_not_implement_are_refused_by_name(change, expected):
    """Settings the official constructors accept but this package does not compute: one line naming them."""
    with pytest.raises(UnsupportedConfigError, match=expected) as e:
        PolicyConfig.from_kwargs(dict(SMALL, **change))
    assert isinstance(e.value, NotImplementedError) and "\n" not in str(e.value)


def test_unknown_pi_head_opts_are_refused(tmp_path):
    """The official make_action_head takes only ``temperature``."""
    path = tmp_path / "p.model"
    args = {"net": {"args": SMALL}, "pi_head_opts": {"temperature": 2.0, "tempreature": 1.0}}
    path.write_bytes(pickle.dumps({"model": {"args": args}}))
    with pytest.raises(ModelFileError, match=r"pi_head_opts has unknown keys \['tempreature'\]"):
        load_model_config(path)


def test_settings_the_official_network_ignores_are_ignored():
    """Unknown net kwargs and impala_kwargs change nothing (the official code drops them as well)."""
    plain = PolicyConfig.from_kwargs(SMALL)
    noisy = PolicyConfig.from_kwargs(dict(SMALL, only_img_input=False, diff_mlp_embedding=True, bogus=1,
                                          impala_kwargs={"post_pool_groups": 1, "bogus": 2}))
    with torch.device("meta"):
        a, b = VPTPolicy(plain), VPTPolicy(noisy)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_no_memory_needs_the_unmasked_attention():
    """memory == timesteps: valid with mask "none" (each chunk attends within itself), not with the causal mask."""
    cfg = PolicyConfig.from_kwargs(dict(SMALL, attention_mask_style="none", attention_memory_size=4))
    assert cfg.maxlen == 0
    with pytest.raises(ConfigError, match="attention_memory_size - timesteps must be > 0"):
        PolicyConfig.from_kwargs(dict(SMALL, attention_memory_size=4))
