"""The network configuration stored in a ``.model`` file, validated into a dataclass.

Validation checks every value's type and range *before* anything is allocated, so a hostile or mistaken
``.model`` fails with one line naming the setting, instead of a ZeroDivisionError deep in the network, a NaN
policy, or a multi-gigabyte allocation. The limits below are generous: the released models (1x/2x/3x policies,
the 4x IDM) use a small fraction of each.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import VPTError

logger = logging.getLogger(__name__)

#: Upper bound on the tensors' total element count (parameters and buffers), checked before allocation:
#: ~6 GB in float32, about 3x the largest released model (3x: 531,520,958).
MAX_PARAMETERS = 1_500_000_000
MAX_HIDSIZE = 32_768  # released: 1024 / 2048 / 3072 (4096 for the IDM)
MAX_RECURRENCE_LAYERS = 64  # released: 4 (2 for the IDM)
MAX_ATTENTION_MEMORY = 16_384  # released: 256 (128 for the IDM); memory per env grows with it
MAX_CHANNELS = 8_192  # any ImpalaCNN stack (released: at most 32 * 12 = 384)
MAX_STACKS = 8  # ImpalaCNN stacks (released: 3)
MAX_POINTWISE_RATIO = 64  # released: 4
MAX_IMAGE_SIDE = 4_096  # img_shape height/width (released: 128)
#: The policy head's softmax temperature (released: 2.0). Outside this range logits/temperature overflows
#: (too small) or the policy is uniform to float precision (too large).
TEMPERATURE_RANGE = (1e-3, 1e3)
#: ``impala_kwargs`` the network reads; the official ImpalaCNN passes any other key down to its residual blocks,
#: which ignore it, unless the key names an argument those constructors are already given (a TypeError there).
IMPALA_KWARGS = ("pool", "post_pool_groups")
IMPALA_KWARGS_TAKEN = ("cnn_outsize", "output_size", "inshape", "chans", "outsize", "nblock", "init_norm_kwargs",
                       "dense_init_norm_kwargs", "first_conv_norm", "inchan", "outchan", "init_scale", "log_scope")
#: ``recurrence_type`` values this package builds: the released models' transformer and the official LSTM stacks
#: (one single-layer ``nn.LSTM`` per residual block; "bilstm" runs every second block backwards in time). The
#: official code also names "multi_masked_lstm" and "none", but its blocks then have no recurrence to run.
LSTM_RECURRENCES = ("multi_layer_lstm", "multi_layer_bilstm")
RECURRENCES = ("transformer",) + LSTM_RECURRENCES
#: ``init_norm_kwargs`` keys: the norms (``layer_norm``, ``batch_norm_kwargs`` are checked separately).
INIT_NORM_KWARGS = ("batch_norm", "batch_norm_kwargs", "group_norm_groups", "layer_norm", "use_activation")


class ConfigError(VPTError, ValueError):
    """A network setting has the wrong type or is out of range."""


class UnsupportedConfigError(VPTError, NotImplementedError):
    """A valid official setting that this package does not implement (e.g. batch-normed convolutions)."""


#: The released models' ``net.args`` (the official ``POLICY_KWARGS``, which is the 2x config).
VPT_NET_KWARGS: Dict[str, Any] = dict(
    attention_heads=16, attention_mask_style="clipped_causal", attention_memory_size=256, diff_mlp_embedding=False,
    hidsize=2048, img_shape=[128, 128, 3], impala_chans=[16, 32, 32], impala_kwargs={"post_pool_groups": 1},
    impala_width=8, init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=4,
    only_img_input=True, pointwise_ratio=4, pointwise_use_activation=False, recurrence_is_residual=True,
    recurrence_type="transformer", timesteps=128, use_pointwise_layer=True, use_pre_lstm_ln=False,
)
#: 1x / 2x / 3x differ only in (hidsize, impala_width).
VPT_SIZES: Dict[str, Tuple[int, int]] = {"1x": (1024, 4), "2x": (2048, 8), "3x": (3072, 12)}


def official_net_kwargs(size: str) -> Dict[str, Any]:
    """``net.args`` of the released 1x/2x/3x models (what their ``.model`` files hold)."""
    if size not in VPT_SIZES:
        raise ConfigError(f"unknown model size {size!r}; expected one of {sorted(VPT_SIZES)}")
    hidsize, width = VPT_SIZES[size]
    return dict(VPT_NET_KWARGS, hidsize=hidsize, impala_width=width)


@dataclass(frozen=True)
class PolicyConfig:
    """Arguments of the official ``MinecraftPolicy`` (``.model`` -> ``model.args.net.args``).

    Defaults are the official constructor defaults (not the VPT models' values), so a config
    built from a ``.model`` file means the same as it does for the official code.
    """

    recurrence_type: str = "lstm"
    impala_width: float = 1
    impala_chans: Tuple[int, ...] = (16, 32, 32)
    hidsize: int = 512
    img_shape: Tuple[int, int, int] = (128, 128, 3)
    scale_input_img: bool = True
    init_norm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    impala_kwargs: Mapping[str, Any] = field(default_factory=dict)
    first_conv_norm: bool = False
    attention_mask_style: str = "clipped_causal"
    attention_heads: int = 8
    attention_memory_size: int = 2048
    use_pointwise_layer: bool = True
    pointwise_ratio: int = 4
    pointwise_use_activation: bool = False
    n_recurrence_layers: int = 1
    recurrence_is_residual: bool = True
    timesteps: Optional[int] = None
    use_pre_lstm_ln: bool = True
    single_output: bool = False
    temperature: float = 1.0  # from pi_head_opts

    @property
    def chans(self) -> Tuple[int, ...]:
        return tuple(int(self.impala_width * c) for c in self.impala_chans)

    @property
    def maxlen(self) -> int:
        """Attention context L = memory size - timesteps (frames each query sees, itself included)."""
        return self.attention_memory_size - self.timesteps

    @property
    def is_lstm(self) -> bool:
        """Whether the recurrence is an LSTM stack (``attention_*`` and ``timesteps`` are then unused)."""
        return self.recurrence_type in LSTM_RECURRENCES

    @classmethod
    def from_model_dict(cls, model: Mapping[str, Any]) -> "PolicyConfig":
        """Build from the dict stored in a ``.model`` file (``{"model": {"args": {"net": {"args": ...}}}}``)."""
        try:
            args = model["model"]["args"]
            net = args["net"]["args"]
        except (KeyError, TypeError, IndexError):
            found = ", ".join(repr(k)[:40] for k in list(model)[:8]) if isinstance(model, Mapping) else ""
            raise ConfigError("not a VPT .model config: expected model['model']['args']['net']['args']"
                              + (f" (top-level keys: {found})" if found else "")) from None
        if not isinstance(net, Mapping):
            raise ConfigError(f"not a VPT .model config: net.args is a {type(net).__name__}, not a dict")
        pi_opts = args.get("pi_head_opts") if isinstance(args, Mapping) else None
        if pi_opts is not None and not isinstance(pi_opts, Mapping):
            raise ConfigError(f"pi_head_opts must be a dict, got {type(pi_opts).__name__}")
        unknown = sorted(str(k) for k in set(pi_opts or {}) - {"temperature"})
        if unknown:  # the official make_action_head takes no other argument (a TypeError there)
            raise ConfigError(f"pi_head_opts has unknown keys {unknown}; only 'temperature' is an option")
        temperature = (pi_opts or {}).get("temperature", 1.0)
        if not _is_real(temperature):
            raise ConfigError(f"temperature must be a number, got {_short(temperature)}")
        return cls.from_kwargs(net, temperature=float(temperature))

    @classmethod
    def official(cls, size: str) -> "PolicyConfig":
        """The config of the released ``"1x"``, ``"2x"`` or ``"3x"`` models (temperature 2)."""
        return cls.from_kwargs(official_net_kwargs(size), temperature=2.0)

    @classmethod
    def from_kwargs(cls, net: Mapping[str, Any], temperature: float = 1.0) -> "PolicyConfig":
        """Build from policy kwargs; unknown keys are ignored (as the official ``**unused_kwargs``).

        Raises :class:`ConfigError` (a ``ValueError``) for a wrong type or an out-of-range value and
        :class:`UnsupportedConfigError` (a ``NotImplementedError``) for settings this package does not implement.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(str(k) for k in set(net) - known)
        if ignored:
            logger.debug("ignoring policy kwargs the network does not use: %s", ignored)
        if net.get("img_statistics") is not None:
            raise UnsupportedConfigError("img_statistics (mean/std image normalisation) is not supported; "
                                         "no released VPT model uses it")
        if net.get("img_shape") is None:  # the official default (None) fails in ImpalaCNN
            raise ConfigError("img_shape (height, width, 3) is required")
        kw = {k: v for k, v in net.items() if k in known}
        for k in ("impala_chans", "img_shape"):
            if k in kw and kw[k] is not None:
                if not isinstance(kw[k], (list, tuple)):
                    raise ConfigError(f"{k} must be a list of integers, got {_short(kw[k])}")
                kw[k] = tuple(kw[k])
        cfg = cls(**kw, temperature=temperature)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError`/:class:`UnsupportedConfigError` for configurations this package cannot build.

        Checks types and ranges first, then the total tensor size against :data:`MAX_PARAMETERS`; nothing is
        allocated.
        """
        if not isinstance(self.recurrence_type, str) or self.recurrence_type not in RECURRENCES:
            raise UnsupportedConfigError(f"recurrence_type={_short(self.recurrence_type)} is not supported; "
                                         f"expected one of {', '.join(RECURRENCES)} (every released VPT model "
                                         "uses 'transformer')")
        for name in ("scale_input_img", "first_conv_norm", "use_pointwise_layer", "pointwise_use_activation",
                     "recurrence_is_residual", "use_pre_lstm_ln", "single_output"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {_short(getattr(self, name))}")
        if self.single_output:
            # The official MinecraftAgentPolicy then unpacks the one latent (B, t, hidsize) as a (pi, value) pair.
            raise UnsupportedConfigError("single_output=True is not supported for a policy (the official "
                                         "MinecraftAgentPolicy cannot run it either)")
        _check_int("hidsize", self.hidsize, 1, MAX_HIDSIZE)
        _check_int("n_recurrence_layers", self.n_recurrence_layers, 1, MAX_RECURRENCE_LAYERS)
        if not self.is_lstm:  # the official LSTM blocks never read the attention settings nor timesteps
            self._validate_attention()
        if self.use_pointwise_layer:
            _check_int("pointwise_ratio", self.pointwise_ratio, 1, MAX_POINTWISE_RATIO)
        lo, hi = TEMPERATURE_RANGE
        if not _is_real(self.temperature) or not lo <= self.temperature <= hi:  # also NaN and inf
            raise ConfigError(f"temperature must be a number in [{lo:g}, {hi:g}], got {_short(self.temperature)}")
        self._validate_cnn()
        n = self.num_parameters()
        if n > MAX_PARAMETERS:
            raise ConfigError(f"this config describes a network of {n:,} parameters, more than the limit of "
                              f"{MAX_PARAMETERS:,} (vpt_agent.config.MAX_PARAMETERS; the 3x model has 531,520,958)")

    def _validate_attention(self) -> None:
        if self.attention_mask_style not in ("clipped_causal", "none"):
            raise ConfigError(f"attention_mask_style must be 'clipped_causal' or 'none', "
                              f"got {_short(self.attention_mask_style)}")
        _check_int("attention_heads", self.attention_heads, 1, self.hidsize)
        if self.hidsize % self.attention_heads:
            raise ConfigError(f"hidsize {self.hidsize} is not divisible by attention_heads {self.attention_heads}")
        if self.timesteps is None:
            raise ConfigError("a transformer config needs 'timesteps'")
        _check_int("timesteps", self.timesteps, 1, MAX_ATTENTION_MEMORY)
        _check_int("attention_memory_size", self.attention_memory_size, 1, MAX_ATTENTION_MEMORY)
        if self.maxlen < 0 or (self.maxlen == 0 and self.attention_mask_style != "none"):
            # No memory (0) is valid without a mask: each chunk then attends within itself.
            raise ConfigError(f"attention_memory_size - timesteps must be > 0 (>= 0 with attention_mask_style "
                              f"'none'), got {self.maxlen}")

    @property
    def layer_relu(self) -> bool:
        """Whether the convolutions and dense layers end in a ReLU (``init_norm_kwargs.use_activation``, on unless
        set false; the official code passes it to every conv and dense ``FanInInitReLULayer``)."""
        return self.init_norm_kwargs.get("use_activation", True)

    def _cnn_in_channels(self) -> int:
        """Channels of the image encoder's input: the frame's (an IDM's 3D convolution changes them)."""
        return self.img_shape[2]

    def _validate_cnn(self) -> None:
        if not isinstance(self.img_shape, tuple) or len(self.img_shape) != 3:
            raise ConfigError(f"img_shape must be (height, width, 3), got {_short(self.img_shape)}")
        for i, side in enumerate(self.img_shape[:2]):
            _check_int(f"img_shape[{i}]", side, 1, MAX_IMAGE_SIDE)
        if self.img_shape[2] != 3 or isinstance(self.img_shape[2], bool):
            raise ConfigError(f"img_shape must be (height, width, 3), got {_short(self.img_shape)}")
        if not isinstance(self.impala_chans, tuple) or len(self.impala_chans) > MAX_STACKS:
            # An empty list is valid: no conv stacks, the dense layer reads the pixels.
            raise ConfigError(f"impala_chans must be a list of at most {MAX_STACKS} integers, got "
                              f"{_short(self.impala_chans)}")
        for i, c in enumerate(self.impala_chans):
            _check_int(f"impala_chans[{i}]", c, 1, MAX_CHANNELS)
        if not _is_real(self.impala_width) or not 0 < self.impala_width <= MAX_CHANNELS:
            raise ConfigError(f"impala_width must be a positive number, got {_short(self.impala_width)}")
        if any(not 1 <= c <= MAX_CHANNELS for c in self.chans):
            raise ConfigError(f"impala_width {self.impala_width} x impala_chans {list(self.impala_chans)} gives "
                              f"channel counts {list(self.chans)}; each must be in [1, {MAX_CHANNELS}]")
        norm = self.init_norm_kwargs
        if not isinstance(norm, Mapping):
            raise ConfigError(f"init_norm_kwargs must be a dict, got {_short(norm)}")
        unknown = set(norm) - set(INIT_NORM_KWARGS)
        if unknown:
            raise ConfigError(f"init_norm_kwargs has unknown keys {sorted(map(str, unknown))}")
        if norm.get("batch_norm"):
            raise UnsupportedConfigError("init_norm_kwargs.batch_norm=True (BatchNorm2d convolution layers) is "
                                         "not supported")
        for key in ("layer_norm", "use_activation"):
            if not isinstance(norm.get(key, False), bool):
                raise ConfigError(f"init_norm_kwargs.{key} must be true or false, got {_short(norm[key])}")
        groups = norm.get("group_norm_groups")
        if norm.get("layer_norm") and self.chans and (groups is None or not self.first_conv_norm):
            # Officially a convolution without a GroupNorm then gets nn.LayerNorm(in_channels) over the image's
            # *width* axis (an error unless the width equals the channel count). Dense layers are fine.
            raise UnsupportedConfigError("init_norm_kwargs.layer_norm=True is not supported unless "
                                         "group_norm_groups is set and first_conv_norm=True (the official "
                                         "convolutions would normalise the image width)")
        if groups is not None:
            _check_int("init_norm_kwargs.group_norm_groups", groups, 1, MAX_CHANNELS)
            # The first convolution's input is normalised too with first_conv_norm (no convolutions: nothing is).
            normed_inputs = list(self.chans) + ([self._cnn_in_channels()] if self.first_conv_norm and self.chans
                                                else [])
            if any(c % groups for c in normed_inputs):
                raise ConfigError(f"init_norm_kwargs.group_norm_groups={groups} does not divide the channel counts "
                                  f"{normed_inputs}")
        extra = self.impala_kwargs
        if not isinstance(extra, Mapping):
            raise ConfigError(f"impala_kwargs must be a dict, got {_short(extra)}")
        taken = sorted(str(k) for k in extra if k in IMPALA_KWARGS_TAKEN)
        if taken:
            raise ConfigError(f"impala_kwargs may not set {taken}: the network sets them itself")
        ignored = sorted(str(k) for k in extra if k not in IMPALA_KWARGS)
        if ignored:
            logger.debug("ignoring impala_kwargs the network does not use (as the official code): %s", ignored)
        if not isinstance(extra.get("pool", True), bool):
            raise ConfigError(f"impala_kwargs.pool must be true or false, got {_short(extra['pool'])}")
        post = extra.get("post_pool_groups")
        if post is not None:
            _check_int("impala_kwargs.post_pool_groups", post, 1, MAX_CHANNELS)
            if any(c % post for c in self.chans):
                raise ConfigError(f"impala_kwargs.post_pool_groups={post} does not divide the channel counts "
                                  f"{list(self.chans)}")

    def num_parameters(self) -> int:
        """Total element count of the network's state dict (parameters and buffers), computed without building it.

        Valid only for a config that passed the type checks of :meth:`validate`; equals
        ``sum(t.numel() for t in VPTPolicy(cfg).state_dict().values())`` (a test pins this).
        """
        H, groups = self.hidsize, self.init_norm_kwargs.get("group_norm_groups")
        dense_ln = groups is not None or bool(self.init_norm_kwargs.get("layer_norm"))

        def linear(n_in: int, n_out: int, ln: bool) -> int:  # NormedLayer: a bias only without a norm
            return n_in * n_out + (2 * n_in if ln else n_out)

        def conv(c_in: int, c_out: int, normed: bool) -> int:
            return 9 * c_in * c_out + (2 * c_in if normed else c_out)

        pool = self.impala_kwargs.get("pool", True)
        post = self.impala_kwargs.get("post_pool_groups")
        h, w, c = self.img_shape
        n = 0
        for i, c_out in enumerate(self.chans):
            n += conv(c, c_out, groups is not None and (self.first_conv_norm if i == 0 else True))
            n += 2 * c_out if post is not None else 0  # the post-pool GroupNorm exists even without pooling
            n += 4 * conv(c_out, c_out, groups is not None)  # two residual blocks of two convs
            c = c_out
            if pool:
                h, w = (h + 1) // 2, (w + 1) // 2
        n += linear(c * h * w, 256, dense_ln) + linear(256, H, dense_ln)
        n += 2 * H if self.use_pre_lstm_ln else 0
        block = 2 * H  # pre_r_ln
        if self.is_lstm:
            block += 2 * (4 * H * H + 4 * H)  # nn.LSTM: weight_ih and weight_hh (4 gates each), their biases
        else:
            block += 4 * H * H + 2 * H  # q (bias), k, v, proj (bias)
            block += H * 10 * self.attention_heads + 10 * self.attention_heads + 10 * self.maxlen  # r_layer, b_nd
        if self.use_pointwise_layer:
            r = self.pointwise_ratio
            block += linear(H, H * r, True) + linear(H * r, H, False)
        n += self.n_recurrence_layers * block
        n += linear(H, H, dense_ln) + 2 * H  # lastlayer, final_ln
        n += (H + 1) + 3  # value head and its normaliser (3 buffers)
        n += (121 + 8641) * (H + 1)  # pi_head: camera, buttons
        return n

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def size_name(hidsize: int) -> str:
    """``"1x"``/``"2x"``/``"3x"`` for a released model's hidsize (from :data:`VPT_SIZES`), else ``"custom"``."""
    return next((name for name, (h, _) in VPT_SIZES.items() if h == hidsize), "custom")


def _is_real(x: Any) -> bool:
    """An int or float (not a bool), finite."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, int) or math.isfinite(x)


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {_short(value)}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")


def _short(value: Any) -> str:
    """A bounded repr for messages (a hostile config may hold huge or deeply nested values)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 3, 60, 60
    return r.repr(value)
