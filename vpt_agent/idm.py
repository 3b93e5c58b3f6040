"""VPT's inverse dynamics model (IDM): state_dict-identical to the official ``InverseActionPolicy``.

The IDM watches a clip and says, for every frame, which keys and mouse moves produced it. Unlike the
policy it sees the future too:

    frames (B, T, H, W, 3) uint8
      -> /255 -> 3D conv over time (kernel 5, same padding, ReLU)      net.conv3d_layer
      -> ImpalaCNN -> dense (256) -> linear (hidsize)                  net.img_process
      -> transformer blocks, attention mask "none" (every frame of     net.recurrent_layer
         the chunk sees every other, past and future), or LSTMs
      -> ReLU -> final_ln                                              net.final_ln
      -> pi_head: 20 independent buttons (2-way), camera 2 x 11 bins   pi_head.buttons, pi_head.camera

Official quirks reproduced: ``lastlayer`` and ``pre_lstm_ln`` exist in the state_dict but are never applied;
stack 0's first conv is normalised whenever a 3D conv is configured. The released ``4x_idm.model`` has
``attention_memory_size == timesteps``, i.e. no memory between calls: each call of ``predict`` is one official
forward pass over all its frames (attention over all of them, also beyond ``timesteps``).

The official ``InverseActionNet`` is built on ``MinecraftPolicy``, so it also takes the policy's LSTM
recurrences ("multi_layer_lstm", "multi_layer_bilstm"; :mod:`vpt_agent.lstm`); ours does the same, with the
``(h, c)`` state carried from call to call. The official ``IDMAgent`` cannot carry it: it passes ``first`` as
(N, 1) zeros, which the LSTM reads as N videos, so every call after a video's first fails unless it has one
frame. Ours computes what the official ``InverseActionPolicy.predict`` computes with ``first`` of shape (B, N).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import MAX_CHANNELS, ConfigError, PolicyConfig, UnsupportedConfigError, _check_int
from .errors import VPTError
from .frames import preprocess_pov
from .heads import CategoricalHead
from .idm_actions import IDM_HEADS, idm_to_env
from .layers import NormedLayer
from .loading import (LoadReport, PathLike, WeightsMismatchError, load_model_config,
                      load_state_dict, read_state_dict)
from .policy import BlockState, MinecraftPolicy

logger = logging.getLogger(__name__)

Action = Dict[str, Any]

#: ``net.args`` of the official ``4x_idm.model`` (as public code that loads the file embeds it; see
#: docs/idm.md). Used for layout tests and synthetic-weight benchmarks; real use reads the .model file.
IDM_4X_NET_KWARGS: Dict[str, Any] = dict(
    attention_heads=32, attention_mask_style="none", attention_memory_size=128,
    conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 128, "padding": [2, 0, 0]},
    hidsize=4096, img_shape=[128, 128, 128], impala_kwargs={"post_pool_groups": 1}, impala_width=16,
    init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=2, only_img_input=True,
    pointwise_ratio=4, pointwise_use_activation=False, recurrence_is_residual=True, recurrence_type="transformer",
    single_output=True, timesteps=128, use_pointwise_layer=True, use_pre_lstm_ln=False,
)


@dataclass(frozen=True)
class IDMConfig(PolicyConfig):
    """The official ``InverseActionNet`` arguments: the policy's, plus ``conv3d_params``.

    ``first_conv_norm`` is not an argument (the official constructor sets it to ``conv3d_params is not None``);
    ``img_shape[2]`` is the channel count the ImpalaCNN sees, i.e. the 3D conv's ``outchan``.
    """

    conv3d_params: Optional[Mapping[str, Any]] = None

    @classmethod
    def from_kwargs(cls, net: Mapping[str, Any], temperature: float = 1.0) -> "IDMConfig":
        if "first_conv_norm" in net:
            raise ConfigError("an IDM config must not set first_conv_norm (it follows from conv3d_params)")
        return super().from_kwargs(dict(net, first_conv_norm=net.get("conv3d_params") is not None), temperature)

    @classmethod
    def official_4x(cls) -> "IDMConfig":
        """The released ``4x_idm`` network (temperature 1, which does not change argmax predictions)."""
        return cls.from_kwargs(IDM_4X_NET_KWARGS)

    @property
    def conv3d(self) -> Optional[Tuple[int, int, Tuple[int, int, int]]]:
        """``(inchan, outchan, kernel (t, h, w))`` of the 3D conv, or None."""
        if self.conv3d_params is None:
            return None
        p = self.conv3d_params
        return int(p["inchan"]), int(p["outchan"]), _triple(p["kernel_size"])

    def _cnn_in_channels(self) -> int:
        """The 3D convolution's output channels, which the image encoder reads (3 without one)."""
        return self.conv3d[1] if self.conv3d_params is not None else 3

    def validate(self) -> None:
        if self.conv3d_params is not None:  # its shape first: the policy's checks below read outchan
            if not isinstance(self.conv3d_params, Mapping):
                raise ConfigError(f"conv3d_params must be a dict, got {type(self.conv3d_params).__name__}")
            missing = {"inchan", "outchan", "kernel_size"} - set(self.conv3d_params)
            if missing:
                raise ConfigError(f"conv3d_params lacks {sorted(missing)}")
            unknown = set(self.conv3d_params) - {"inchan", "outchan", "kernel_size", "padding"}
            if unknown:
                raise UnsupportedConfigError(f"unsupported conv3d_params: {sorted(map(str, unknown))}")
            for key in ("inchan", "outchan"):
                _check_int(f"conv3d_params.{key}", self.conv3d_params[key], 1, MAX_CHANNELS)
        # The policy's checks, on a copy without the IDM-specific differences: the frames are RGB (the CNN input
        # has the 3D conv's channel count, see _cnn_in_channels), and single_output is harmless (the official
        # InverseActionNet ignores it).
        PolicyConfig.validate(dataclasses.replace(self, img_shape=(*self.img_shape[:2], 3), single_output=False))
        if self.conv3d_params is None:
            if self.img_shape[2] != 3:
                raise ConfigError(f"img_shape must be (height, width, 3) without conv3d_params, got {self.img_shape}")
            return
        if self.init_norm_kwargs.get("layer_norm"):
            # Officially the 3D conv keeps layer_norm: a LayerNorm(3) over the frames' width axis.
            raise UnsupportedConfigError("init_norm_kwargs.layer_norm=True is not supported with conv3d_params")
        inchan, outchan, kernel = self.conv3d
        if inchan != 3:
            raise ConfigError(f"conv3d_params inchan must be 3 (RGB frames), got {inchan}")
        if outchan != self.img_shape[2]:
            raise ConfigError(f"img_shape[2] ({self.img_shape[2]}) must equal conv3d_params outchan ({outchan})")
        if _triple(self.conv3d_params.get("padding", 0)) != tuple((k - 1) // 2 for k in kernel) or \
                any(k % 2 == 0 for k in kernel):
            raise UnsupportedConfigError(
                f"conv3d_params must be odd kernels with 'same' padding, got {self.conv3d_params}")


def _triple(v: Union[int, Sequence[int]]) -> Tuple[int, int, int]:
    t = (int(v),) * 3 if isinstance(v, (int, np.integer)) else tuple(int(x) for x in v)
    if len(t) != 3:
        raise ValueError(f"expected an int or three ints, got {v!r}")
    return t  # type: ignore[return-value]


def load_idm_config(path: PathLike) -> IDMConfig:
    """Read an IDM ``.model`` file (safely, see :mod:`vpt_agent.loading`) into a validated :class:`IDMConfig`."""
    return load_model_config(path, IDMConfig)


class IDMError(VPTError, ValueError):
    """A request the IDM cannot serve (e.g. a zoo name that is a policy, not an IDM)."""


# ----------------------------------------------------------------------------- network
class IDMOutput(NamedTuple):
    """What the IDM network returns for B clips of T frames."""

    logp: Dict[str, torch.Tensor]  # "buttons": (B, T, 20, 2), "camera": (B, T, 2, 11); tempered log-probs
    state: List[BlockState]  # per block: attention memory or LSTM (h, c)


class FactoredHead(CategoricalHead):
    """Several independent categoricals from one linear layer: logits reshaped to ``(..., *shape, n)``."""

    def __init__(self, n_in: int, shape: Tuple[int, ...], n_choices: int, temperature: float = 1.0):
        super().__init__(n_in, math.prod(shape) * n_choices, temperature)
        self.out_shape = (*shape, n_choices)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.linear_layer(h).float().reshape(*h.shape[:-1], *self.out_shape)
        return F.log_softmax(logits / self.temperature, dim=-1)


class IDMActionHead(nn.ModuleDict):
    """``buttons`` (20 x 2) and ``camera`` (2 x 11), as the official ``IDMActionMapping`` space."""

    def __init__(self, n_in: int, temperature: float = 1.0):
        super().__init__({k: FactoredHead(n_in, shape, n, temperature) for k, (shape, n) in IDM_HEADS.items()})

    def forward(self, h: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {k: head(h) for k, head in self.items()}


class InverseActionNet(MinecraftPolicy):
    """The trunk (``net.*``): the policy trunk's modules plus ``conv3d_layer``; frames -> latent (B, T, hidsize)."""

    def __init__(self, cfg: IDMConfig):
        super().__init__(cfg)
        self.time_pad = 0
        self.conv3d_layer: Optional[NormedLayer] = None
        if cfg.conv3d is not None:
            inchan, outchan, kernel = cfg.conv3d
            # Time is zero-padded by hand (so chunks of frames can be convolved apart); space is padded by the conv.
            self.time_pad = (kernel[0] - 1) // 2
            conv = nn.Conv3d(inchan, outchan, kernel, padding=(0, (kernel[1] - 1) // 2, (kernel[2] - 1) // 2))
            self.conv3d_layer = NormedLayer(conv, norm=None, activation=cfg.layer_relu)  # raw pixels in: no norm

    def forward(self, frames: torch.Tensor, state: List[BlockState], first: Optional[torch.Tensor] = None,
                frame_batch: Optional[int] = None) -> Tuple[torch.Tensor, List[BlockState]]:
        """``frames`` (B, T, H, W, 3) uint8 -> (latent (B, T, hidsize), new state).

        ``frame_batch`` bounds how many frames go through the CNN at once (memory); results do not depend on it.
        ``first`` (B,): videos that start with this chunk (their memory is reset); it matters only for LSTMs and
        under a "clipped_causal" mask. The official IDM agent never sets it.
        """
        B, T = frames.shape[:2]
        x = frames.permute(0, 4, 1, 2, 3).float() / self.scale  # (B, 3, T, H, W); a true division, as officially
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad))
        step = T if frame_batch is None else max(1, frame_batch // B)
        feats = [self._encode(x, s, min(T, s + step)) for s in range(0, T, step)]
        h = torch.cat(feats, dim=1)
        if first is None:
            first = torch.zeros(B, dtype=torch.bool, device=frames.device)
        h, state = self.recurrent_layer(h, first, state)
        # Official quirk: no pre_lstm_ln, and lastlayer's output is discarded: the latent is final_ln(relu(h)).
        return self.final_ln(F.relu(h)), state

    def _encode(self, x: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """Frames s..e-1 of the (time-padded) clip ``x`` -> (B, e-s, hidsize)."""
        B = x.shape[0]
        y = x[:, :, s:e + 2 * self.time_pad]
        if self.conv3d_layer is not None:
            # One clip at a time, as the official code: a batched Conv3d picks other kernels (last-ulp differences
            # that the CNN's norms amplify to ~1e-5).
            y = torch.cat([self.conv3d_layer(clip) for clip in y.split(1)])  # (B, C, e-s, H, W)
        # (B, C, t, H, W) -> (B*t, H, W, C) -> an NCHW view of channels-last memory, the layout the official code
        # hands its ImpalaCNN (the convolution kernels, and so the rounding, depend on the layout).
        y = y.permute(0, 2, 3, 4, 1).reshape(B * (e - s), *y.shape[3:], y.shape[1]).permute(0, 3, 1, 2)
        return self.img_process(y).view(B, e - s, -1)


class InverseActionPolicy(nn.Module):
    """``net`` + ``pi_head``; keys and shapes equal the official ``InverseActionPolicy``."""

    def __init__(self, cfg: IDMConfig):
        super().__init__()
        self.cfg = cfg
        self.net = InverseActionNet(cfg)
        self.pi_head = IDMActionHead(cfg.hidsize, cfg.temperature)

    def initial_state(self, batch_size: int, device: Optional[torch.device] = None,
                      dtype: torch.dtype = torch.float32) -> List[BlockState]:
        """Empty memory for ``batch_size`` videos (no tensors of length > 0 for the 4x IDM; zero (h, c) for an
        LSTM, which gives the official initial state's outputs)."""
        if device is None:
            device = next(self.parameters()).device
        return self.net.recurrent_layer.initial_state(batch_size, device, dtype)

    def forward(self, frames: torch.Tensor, state: List[BlockState], first: Optional[torch.Tensor] = None,
                frame_batch: Optional[int] = None) -> IDMOutput:
        """``frames``: (B, T, H, W, 3) uint8 RGB at the config's image size; one official forward per call."""
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (B, T, H, W, 3), got {tuple(frames.shape)}")
        h, state = self.net(frames, state, first, frame_batch)
        return IDMOutput(self.pi_head(h), state)


# ----------------------------------------------------------------------------- library API
@dataclass
class IDMPrediction:
    """What :meth:`VPTIDM.predict_arrays` returns for N frames (numpy)."""

    buttons: np.ndarray  # (N, 20) uint8, argmax per button
    camera_bins: np.ndarray  # (N, 2) int64, argmax bin per axis [pitch, yaw]
    logp_buttons: np.ndarray  # (N, 20, 2) float32
    logp_camera: np.ndarray  # (N, 2, 11) float32

    def actions(self) -> List[Action]:
        return idm_to_env(self.buttons, self.camera_bins)


class VPTIDM:
    """An inverse dynamics model: video frames in, the MineRL actions that produced them out.

    ``predict(frames)`` labels consecutive frames of one video; later calls continue the same video (memory
    carried, as the official ``predict_actions``); ``reset()`` starts a new one. Each call is one forward pass
    over all its frames, exactly the official ``IDMAgent.predict_actions`` call: every frame attends to every
    other of the call, so results depend on how a video is cut into calls (the official script uses 128 frames;
    the model was trained on ``config.timesteps``, 128 for 4x). An LSTM IDM carries its ``(h, c)`` from call to
    call instead (its backwards blocks of "multi_layer_bilstm" see only the frames of their call). For whole videos
    use ``python -m vpt_agent.label`` (see docs/idm.md).
    """

    def __init__(self, policy: InverseActionPolicy, device: Union[str, torch.device] = "auto",
                 frame_batch: Optional[int] = None):
        from .agent import resolve_device  # the agent's device rules ("auto" -> cuda if available)

        if frame_batch is not None and (isinstance(frame_batch, bool) or not isinstance(frame_batch, int)
                                        or frame_batch < 1):
            raise IDMError(f"frame_batch must be None or an integer >= 1, got {frame_batch!r}")
        self.device = resolve_device(device)
        self.policy = policy.to(self.device).eval()
        self.config: IDMConfig = policy.cfg
        self.frame_batch = frame_batch
        self._state: Optional[List[BlockState]] = None

    @classmethod
    def from_config(cls, model: Union[PathLike, IDMConfig], device: Union[str, torch.device] = "auto",
                    seed: Optional[int] = None, **kwargs: Any) -> "VPTIDM":
        """Randomly initialised weights (tests, benchmarks). ``seed`` seeds the init only."""
        cfg = model if isinstance(model, IDMConfig) else load_idm_config(model)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            policy = InverseActionPolicy(cfg)
        return cls(policy, device=device, **kwargs)

    @classmethod
    def from_files(cls, model: PathLike, weights: PathLike, device: Union[str, torch.device] = "auto",
                   allow_missing: bool = False, **kwargs: Any) -> "VPTIDM":
        """Build from an IDM ``.model`` config and its ``.weights``/``.safetensors`` (safe, strict loading)."""
        idm = cls.from_config(model, device=device, **kwargs)
        idm.load_weights(weights, allow_missing=allow_missing)
        return idm

    @classmethod
    def from_pretrained(cls, name: str = "4x-idm", device: Union[str, torch.device] = "auto",
                        **kwargs: Any) -> "VPTIDM":
        """From the model zoo (downloaded once, checksummed): ``VPTIDM.from_pretrained("4x-idm")``."""
        from . import zoo

        kind = getattr(zoo.get_model(name), "kind", "idm")
        if kind != "idm":
            raise IDMError(f"zoo model {name!r} is a {kind}, not an inverse dynamics model (use e.g. '4x-idm'; "
                           "see python -m vpt_agent.zoo list)")
        model_path, weights_path = zoo.fetch(name)
        return cls.from_files(model_path, weights_path, device=device, **kwargs)

    def load_weights(self, path: PathLike, allow_missing: bool = False) -> LoadReport:
        """Load weights (missing keys are an error with a diagnosis, as for the policy). Resets the memory."""
        sd = read_state_dict(path)
        try:
            report = load_state_dict(self.policy, sd, allow_missing=allow_missing, source=str(path))
        except WeightsMismatchError as e:
            if any(k.startswith("value_head.") for k in sd):
                raise WeightsMismatchError(f"{e}\n{path} holds a policy (it has a value_head), not an inverse "
                                           "dynamics model; pass the IDM's .weights (e.g. 4x_idm.weights)") from e
            raise
        self.reset()
        return report

    def reset(self) -> None:
        """The next :meth:`predict` starts a new video."""
        self._state = None

    def predict(self, frames: np.ndarray) -> List[Action]:
        """Frames ``(N, H, W, 3)`` uint8 RGB of one video -> N MineRL action dicts (24 keys, as the agent's)."""
        return self.predict_arrays(frames).actions()

    @torch.inference_mode()
    def predict_arrays(self, frames: np.ndarray) -> IDMPrediction:
        """As :meth:`predict`, returning arrays (argmax buttons/camera bins and log-probs)."""
        x = self.prepare(frames)
        if not self.config.is_lstm and len(x) > self.config.timesteps:
            logger.info("IDM call on %d frames, more than the %d it was trained on: one forward pass over all of "
                        "them, as the official predict_actions", len(x), self.config.timesteps)
        if self._state is None:
            self._state = self.policy.initial_state(1, self.device)
        out = self.policy(torch.from_numpy(x).to(self.device)[None], self._state, frame_batch=self.frame_batch)
        self._state = out.state
        return self.prediction({k: v[0] for k, v in out.logp.items()})

    @torch.inference_mode()
    def predict_windows(self, windows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Independent clips ``(B, T, h, w, 3)`` uint8 at the model's image size, each from a fresh memory
        (the labeller's batched call) -> log-probs ``{"buttons": (B, T, 20, 2), "camera": (B, T, 2, 11)}``."""
        state = self.policy.initial_state(windows.shape[0], self.device)
        return self.policy(windows.to(self.device), state, frame_batch=self.frame_batch).logp

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Validate ``(N, H, W, 3)`` uint8 RGB frames and resize them (cv2 INTER_LINEAR, as the official IDM)."""
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            shape = getattr(frames, "shape", None)
            raise IDMError(f"frames must be a numpy array of shape (N, H, W, 3) with N >= 1, got "
                           f"{type(frames).__name__} {shape}")
        if frames.dtype != np.uint8:
            raise IDMError(f"frames must be RGB uint8, got dtype {frames.dtype}")
        size = self.config.img_shape[:2]
        return np.stack([preprocess_pov({"pov": f}, size) for f in frames])

    @staticmethod
    def prediction(logp: Mapping[str, torch.Tensor]) -> IDMPrediction:
        """Log-probs for N frames -> :class:`IDMPrediction` (argmax per button and per camera axis)."""
        lb, lc = logp["buttons"].float().cpu(), logp["camera"].float().cpu()
        return IDMPrediction(buttons=lb.argmax(-1).numpy().astype(np.uint8), camera_bins=lc.argmax(-1).numpy(),
                             logp_buttons=lb.numpy(), logp_camera=lc.numpy())
