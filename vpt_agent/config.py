"""The network configuration stored in a ``.model`` file, validated into a dataclass."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

logger = logging.getLogger(__name__)

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
        raise ValueError(f"unknown model size {size!r}; expected one of {sorted(VPT_SIZES)}")
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
    temperature: float = 1.0  # from pi_head_opts

    @property
    def chans(self) -> Tuple[int, ...]:
        return tuple(int(self.impala_width * c) for c in self.impala_chans)

    @property
    def maxlen(self) -> int:
        """Attention context L = memory size - timesteps (frames each query sees, itself included)."""
        return self.attention_memory_size - self.timesteps

    @property
    def head_dim(self) -> int:
        return self.hidsize // self.attention_heads

    @classmethod
    def from_model_dict(cls, model: Mapping[str, Any]) -> "PolicyConfig":
        """Build from the dict stored in a ``.model`` file (``{"model": {"args": {"net": {"args": ...}}}}``)."""
        try:
            args = model["model"]["args"]
            net = dict(args["net"]["args"])
        except (KeyError, TypeError) as e:
            raise ValueError("not a VPT .model config: expected model['model']['args']['net']['args']") from e
        pi_opts = dict(args.get("pi_head_opts") or {})
        return cls.from_kwargs(net, temperature=float(pi_opts.get("temperature", 1.0)))

    @classmethod
    def official(cls, size: str) -> "PolicyConfig":
        """The config of the released ``"1x"``, ``"2x"`` or ``"3x"`` models (temperature 2)."""
        return cls.from_kwargs(official_net_kwargs(size), temperature=2.0)

    @classmethod
    def from_kwargs(cls, net: Mapping[str, Any], temperature: float = 1.0) -> "PolicyConfig":
        """Build from policy kwargs; unknown keys are ignored (as the official ``**unused_kwargs``)."""
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = sorted(set(net) - known)
        if ignored:
            logger.debug("ignoring policy kwargs the network does not use: %s", ignored)
        if net.get("img_statistics") is not None:
            raise NotImplementedError("img_statistics (mean/std image normalisation) is not supported; "
                                      "no released VPT model uses it")
        kw = {k: v for k, v in net.items() if k in known}
        for k in ("impala_chans", "img_shape"):
            if k in kw and kw[k] is not None:
                kw[k] = tuple(kw[k])
        cfg = cls(**kw, temperature=temperature)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ``ValueError``/``NotImplementedError`` for configurations this package cannot build."""
        if self.recurrence_type != "transformer":
            raise NotImplementedError(
                f"recurrence_type={self.recurrence_type!r} is not supported; every released VPT model uses 'transformer'"
            )
        if self.attention_mask_style not in ("clipped_causal", "none"):
            raise ValueError(f"attention_mask_style must be 'clipped_causal' or 'none', got {self.attention_mask_style!r}")
        if self.timesteps is None:
            raise ValueError("a transformer config needs 'timesteps'")
        if self.maxlen <= 0:
            raise ValueError(f"attention_memory_size - timesteps must be > 0, got {self.maxlen}")
        if self.hidsize % self.attention_heads:
            raise ValueError(f"hidsize {self.hidsize} is not divisible by attention_heads {self.attention_heads}")
        if self.init_norm_kwargs.get("batch_norm"):
            raise NotImplementedError("batch_norm=True convolution layers are not supported")
        if len(self.img_shape) != 3 or self.img_shape[2] != 3:
            raise ValueError(f"img_shape must be (height, width, 3), got {self.img_shape}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
