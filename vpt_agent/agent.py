"""``VPTAgent``: MineRL observations in, MineRL actions out, for one env or a batch of envs."""
from __future__ import annotations

import contextlib
import logging
import operator
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import action_mapping
from .attention import LayerMemory
from .config import PolicyConfig
from .errors import VPTError
from .frames import check_batch, preprocess_pov, resize_batch  # noqa: F401  (preprocess_pov: re-exported as vpt_agent.preprocess_pov)
from .inference import EngineError, StepEngine, cast_for_inference, compile_mode, supports
from .loading import LoadReport, PathLike, load_model_config, load_state_dict, read_state_dict
from .policy import VPTPolicy

logger = logging.getLogger(__name__)

Action = Dict[str, Any]
DTypeLike = Union[torch.dtype, str]


class AgentError(VPTError, ValueError):
    """Bad agent arguments: an unknown or unavailable device or dtype, malformed ``first`` flags, a batch size
    changed mid-episode."""


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu. Unknown or unavailable devices raise ``ValueError``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise AgentError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from e
    if dev.type not in ("cpu", "cuda"):  # checked before anything is moved there (e.g. a policy to "meta")
        raise AgentError(f"device {device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AgentError("device 'cuda' requested but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return dev


def resolve_dtype(dtype: DTypeLike) -> torch.dtype:
    """``torch.float32``/``"float32"`` or ``torch.bfloat16``/``"bfloat16"``."""
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    dt = names.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if dt not in (torch.float32, torch.bfloat16):
        raise AgentError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    return dt


@dataclass
class AgentStep:
    """Everything one batched step produced. ``actions`` are MineRL dicts; the rest are per-env arrays."""

    actions: List[Action]
    buttons: np.ndarray  # (B,) joint button index
    camera: np.ndarray  # (B,) joint camera index
    logp_buttons: np.ndarray  # (B, 8641) tempered log-probs, float32
    logp_camera: np.ndarray  # (B, 121)
    value: np.ndarray  # (B,) de-normalised value estimate


class PendingActions:
    """A step started by :meth:`VPTAgent.submit`: the joint actions, once the device has computed them.

    On CUDA the step runs on the agent's own stream and its actions are copied to pinned host memory
    asynchronously; :meth:`ready` asks without blocking, :meth:`joint` waits. On CPU the step is already done.
    """

    def __init__(self, ids: torch.Tensor, event: Optional["torch.cuda.Event"]):
        self._ids = ids  # (2, B) int64 on the host: joint button and camera indices
        self._event = event

    def ready(self) -> bool:
        """Whether :meth:`joint` would return without waiting."""
        return self._event is None or self._event.query()

    def wait(self) -> None:
        """Block until the device has finished the step."""
        if self._event is not None:
            self._event.synchronize()
            self._event = None

    def joint(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(buttons, camera)``: (B,) joint indices (waits for the device)."""
        self.wait()
        ids = self._ids.numpy()
        return ids[0].copy(), ids[1].copy()

    def actions(self) -> List[Action]:
        """The MineRL action dicts (waits for the device)."""
        return action_mapping.policy_to_env(*self.joint())


class VPTAgent:
    """A VPT policy with its recurrent memory, acting in MineRL-style environments.

    Use :meth:`from_files` (or :meth:`from_pretrained`) to build one. :meth:`get_action` drives one env;
    :meth:`get_actions` drives N envs with one batched forward pass and per-env memory.

    Steps run through :class:`~vpt_agent.inference.StepEngine` (memory kept in place as a ring buffer); on CUDA
    each step is a replayed CUDA graph unless ``cuda_graph=False``, queued on the agent's own CUDA stream (so the
    steps of several agents can run at the same time). ``dtype=torch.bfloat16`` converts the weights once (the
    value head stays float32; log-probs are float32).

    ``compile=True`` (CPU only) runs each step through ``torch.compile`` with frozen weights
    (:func:`~vpt_agent.inference.compile_frozen`); ``compile="max-autotune"`` also autotunes each matrix product
    between PyTorch's kernel and inductor's C++ ones on the pre-packed weights. The first step of each batch size
    compiles (about a minute for 1x, two with autotuning; inductor caches the code on disk, so later processes take
    less). It is off by default; docs/performance.md has the measured speeds (on a CPU with AMX, bf16 with
    ``compile=True`` is the fast setting: 2.4x eager fp32 at B=1 with 2 threads). The compiled step holds a copy of the
    weights: :meth:`load_weights` refreshes it; after changing :attr:`policy`'s parameters yourself, call
    :meth:`rebuild`.
    """

    def __init__(self, policy: VPTPolicy, device: Union[str, torch.device] = "auto",
                 dtype: DTypeLike = torch.float32, seed: Optional[int] = None, cuda_graph: Optional[bool] = None,
                 compile: Union[bool, str, None] = False):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if cuda_graph and self.device.type != "cuda":
            raise AgentError(f"cuda_graph=True needs device='cuda', got {self.device}")
        try:
            mode = compile_mode(compile)
        except EngineError as err:
            raise AgentError(str(err)) from None
        if mode and self.device.type != "cpu":
            raise AgentError(f"compile is for CPU steps (CUDA steps replay a CUDA graph), got {self.device}")
        #: Whether steps replay a captured CUDA graph (default: on CUDA, when the engine supports the config).
        self.cuda_graph = (self.device.type == "cuda" if cuda_graph is None else bool(cuda_graph)) and supports(policy)
        #: ``"default"``/``"max-autotune"`` when CPU steps run compiled with frozen weights, else None (``compile``;
        #: needs the engine's config too).
        self.compile_mode: Optional[str] = mode if supports(policy) else None
        if (cuda_graph or mode) and not supports(policy):
            logger.warning("cuda_graph/compile have no effect for this config: the step engine runs transformers "
                           "with the clipped-causal mask; this agent steps eagerly")
        # Frames arrive as NHWC, so convolutions see channels-last inputs; channels-last conv weights spare a
        # weight re-layout on every call (same results, ~1.8 ms less per 1x step on CPU).
        self.policy = policy.to(self.device, memory_format=torch.channels_last)
        if self.dtype != torch.float32:
            cast_for_inference(self.policy, self.dtype)
        self.config: PolicyConfig = policy.cfg
        if self.dtype == torch.bfloat16 and self.device.type == "cpu" and not _cpu_has_fast_bf16():
            logger.warning("bfloat16 on a CPU without native bf16 support (AVX-512 BF16 / AMX): PyTorch falls back "
                           "to slow reference kernels and this agent will be much slower than float32")
        self.generator = torch.Generator(device=self.device)
        self.seed(seed)
        self._batch: Optional[int] = None  # envs the memory holds; None after reset()
        self._engine: Optional[StepEngine] = None  # in-place memory (configs the engine supports)
        self._state: Optional[List[LayerMemory]] = None  # eager-path memory (other configs)
        self._host_frames: Optional[torch.Tensor] = None  # pinned staging buffer for CUDA uploads
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pending: Optional[PendingActions] = None  # the last submitted step (it may still use _host_frames)

    @property
    def compiled(self) -> bool:
        """Whether CPU steps run compiled (:attr:`compile_mode` is set)."""
        return self.compile_mode is not None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(cls, model_path: PathLike, weights_path: PathLike, device: Union[str, torch.device] = "auto",
                   dtype: DTypeLike = torch.float32, seed: Optional[int] = None,
                   allow_missing: bool = False, cuda_graph: Optional[bool] = None,
                   compile: Union[bool, str] = False) -> "VPTAgent":
        """Build from an official ``.model`` config and a ``.weights``/``.safetensors`` file."""
        agent = cls.from_config(model_path, device=device, dtype=dtype, seed=seed, cuda_graph=cuda_graph,
                                compile=compile)
        agent.load_weights(weights_path, allow_missing=allow_missing)
        return agent

    @classmethod
    def from_config(cls, model_path: Union[PathLike, PolicyConfig], device: Union[str, torch.device] = "auto",
                    dtype: DTypeLike = torch.float32, seed: Optional[int] = None,
                    cuda_graph: Optional[bool] = None, compile: Union[bool, str] = False) -> "VPTAgent":
        """Build with *randomly initialised* weights (smoke tests, benchmarks). ``seed`` also seeds the init."""
        cfg = model_path if isinstance(model_path, PolicyConfig) else load_model_config(model_path)
        with _fork_rng(None if seed is None else _checked_seed(seed)):
            policy = VPTPolicy(cfg)
        return cls(policy, device=device, dtype=dtype, seed=seed, cuda_graph=cuda_graph, compile=compile)

    @classmethod
    def from_pretrained(cls, name: str, device: Union[str, torch.device] = "auto", **kwargs: Any) -> "VPTAgent":
        """Download (or take from the cache) a model-zoo entry and build it. See ``python -m vpt_agent.zoo list``."""
        from . import zoo

        model_path, weights_path = zoo.fetch(name, kind="policy")  # an IDM entry is refused by name
        return cls.from_files(model_path, weights_path, device=device, **kwargs)

    def load_weights(self, path: PathLike, allow_missing: bool = False) -> LoadReport:
        """Load weights into :attr:`policy`; returns a :class:`LoadReport`. Resets the memory."""
        sd = read_state_dict(path)
        if self._pending is not None:  # a submitted step may still be reading the parameters
            self._pending.wait()
        report = load_state_dict(self.policy, sd, allow_missing=allow_missing, source=str(path))
        if self.compiled:
            self.rebuild()  # the compiled step holds the old weights
        else:
            self.reset()
        return report

    def rebuild(self) -> None:
        """Like :meth:`reset`, and drop the step engine, so the next step builds (compiles, captures) a new one
        from the current parameters. Needed with ``compile`` after changing :attr:`policy`'s parameters."""
        if self._pending is not None:
            self._pending.wait()
            self._pending = None
        self._engine = None
        self.reset()

    def sibling(self, seed: Optional[int] = None) -> "VPTAgent":
        """Another agent on the same network (no copy of the weights) with its own memory and sampling seed.

        On CUDA it queues its steps on this agent's stream: the two agents' steps run one after the other on the
        GPU, while the host is free between them (the evaluator's pipelined groups overlap env steps this way).
        """
        other = type(self)(self.policy, device=self.device, dtype=self.dtype, seed=seed,
                           cuda_graph=self.cuda_graph, compile=self.compile_mode)
        other._stream = self._stream
        return other

    def seed(self, seed: Optional[int]) -> None:
        """Seed stochastic action sampling (``None``: nondeterministic; else an integer in 0..2**64-1)."""
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(_checked_seed(seed))

    # ------------------------------------------------------------------ acting
    def reset(self) -> None:
        """Forget everything: the next step starts a new episode for every env."""
        self._batch = None

    def get_action(self, obs: Mapping[str, Any], deterministic: bool = False) -> Action:
        """One env: MineRL observation dict -> MineRL action dict (all 24 keys).

        Only ``obs["pov"]`` is read: RGB HxWx3 of any size and memory layout (MineRL's flipped read-only view
        included), uint8, or float32/float64 holding 0..255 intensities (resized in float, as the official agent
        does). Other keys are ignored. The first call after construction or :meth:`reset` starts an episode.
        """
        if self._batch not in (None, 1):
            raise AgentError("this agent holds memory for a batch of envs; call reset() before get_action()")
        return self.submit([obs], [self._batch is None], deterministic).actions()[0]

    def get_actions(self, obs_list: Sequence[Mapping[str, Any]], first: Sequence[bool],
                    deterministic: bool = False) -> List[Action]:
        """N envs at once. ``first[i]``: env i starts a new episode at this step (its memory is cleared first)."""
        return self.submit(obs_list, first, deterministic).actions()

    def act(self, obs_list: Sequence[Mapping[str, Any]], first: Sequence[bool],
            deterministic: bool = False) -> AgentStep:
        """Like :meth:`get_actions`, also returning joint actions, log-probs and value estimates."""
        with self._on_stream():
            ids, logp, value = self._launch(obs_list, first, deterministic)
            ids = ids.cpu().numpy()
            logp_buttons, logp_camera = logp["buttons"].cpu().numpy(), logp["camera"].cpu().numpy()
            value = value.float().cpu().numpy()
        return AgentStep(actions=action_mapping.policy_to_env(ids[0], ids[1]), buttons=ids[0], camera=ids[1],
                         logp_buttons=logp_buttons, logp_camera=logp_camera, value=value)

    def submit(self, obs_list: Sequence[Mapping[str, Any]], first: Sequence[bool],
               deterministic: bool = False) -> PendingActions:
        """Start one step for N envs (like :meth:`get_actions`) without waiting for the device.

        The frames are pre-processed on the host now; on CUDA the forward pass, the sampling and the copy of the
        actions to the host are queued on the agent's stream, and the call returns at once. Read the actions from
        the returned :class:`PendingActions` before submitting this agent's next step (a new submit waits for the
        previous one first), and do not change the policy's parameters in place while a step is pending
        (:meth:`load_weights` waits for it).
        """
        with self._on_stream():
            ids, _, _ = self._launch(obs_list, first, deterministic)
            if self._stream is None:
                self._pending = PendingActions(ids, None)
            else:
                host = torch.empty(ids.shape, dtype=ids.dtype, pin_memory=True)
                host.copy_(ids, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self._stream)
                self._pending = PendingActions(host, event)
        return self._pending

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        """Inference mode, on the agent's CUDA stream (ordered after the caller's stream) when on CUDA."""
        with torch.inference_mode():
            if self._stream is None:
                yield
                return
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                yield

    def _launch(self, obs_list: Sequence[Mapping[str, Any]], first: Sequence[bool], deterministic: bool
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Queue one step for every env: (2, B) sampled joint indices, log-probs and values, on the device.

        No host sync: on CUDA everything after the frame upload is queued on the current stream.
        """
        if self._pending is not None:  # its upload may still read the pinned frame buffer we are about to fill
            self._pending.wait()
            self._pending = None
        frames = self._frames(obs_list)
        first_t = self._first(first, len(obs_list))
        self._ensure_memory(len(obs_list), first)
        if self._engine is not None:
            logp, value = self._engine(frames, first_t)
        else:
            out = self.policy(frames[:, None].to(self.device), first_t[:, None].to(self.device), self._state)
            self._state = out.state
            logp, value = {k: v[:, 0] for k, v in out.logp.items()}, out.value[:, 0]
        sampled = self.policy.pi_head.sample(logp, deterministic, self.generator)
        return torch.stack([sampled["buttons"], sampled["camera"]]), logp, value

    def _ensure_memory(self, batch: int, first: Sequence[bool]) -> None:
        """Memory for ``batch`` envs: kept if the batch is unchanged, fresh if every env starts an episode."""
        if self._batch == batch:
            return
        if self._batch is not None and not all(first):
            raise AgentError(f"batch size changed from {self._batch} to {batch} mid-episode; "
                             "call reset() or pass first=True for every env")
        if supports(self.policy):
            if self._engine is None or self._engine.batch_size != batch:
                self._engine = None  # free the old buffers (and graph) before allocating new ones
                self._engine = StepEngine(self.policy, batch, cuda_graph=self.cuda_graph, compile=self.compile_mode)
            else:
                self._engine.reset()
        else:
            self._state = self.policy.initial_state(batch, self.device)
        self._batch = batch

    # ------------------------------------------------------------------ helpers
    def _first(self, first: Sequence[bool], n: int) -> torch.Tensor:
        arr = np.asarray(first)
        if arr.shape != (n,) or arr.dtype.kind not in "bui":
            raise AgentError(f"first must be a sequence of {n} bools, got {arr.dtype} {arr.shape}")
        t = torch.from_numpy(arr.astype(bool))
        return t.pin_memory() if self.device.type == "cuda" else t

    def _frames(self, obs_list: Sequence[Mapping[str, Any]]) -> torch.Tensor:
        """Validated, resized frames (B, h, w, 3) on the host: uint8 (a reused pinned buffer on CUDA), or float32
        when a pov is float (taken as the official agent takes it: 0..255 intensities)."""
        if isinstance(obs_list, Mapping) or len(obs_list) == 0:
            raise AgentError("obs_list must be a non-empty list of observation dicts")
        h, w = self.config.img_shape[:2]
        povs = check_batch(obs_list, allow_float=True)
        if self.device.type != "cuda" or any(p.dtype != np.uint8 for p in povs):
            return torch.from_numpy(resize_batch(povs, (h, w)))
        shape = (len(obs_list), h, w, 3)
        if self._host_frames is None or tuple(self._host_frames.shape) != shape:
            self._host_frames = torch.empty(shape, dtype=torch.uint8).pin_memory()
        # Safe to overwrite: _launch waited for the previous step (and so for its upload) first.
        resize_batch(povs, (h, w), out=self._host_frames.numpy())
        return self._host_frames


def _cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _checked_seed(seed: Any) -> int:
    """``seed`` as a Python int if it is an integer (numpy ones too, not bools) in 0..2**64-1; else AgentError."""
    try:
        value = operator.index(seed)
    except TypeError:
        value = None
    if value is None or isinstance(seed, bool) or not 0 <= value < 2**64:
        raise AgentError(f"seed must be None or an integer in 0..2**64-1, got {seed!r}")
    return value


@contextlib.contextmanager
def _fork_rng(seed: Optional[int]):
    """Seed torch's global RNG inside the block only (parameter init), leaving the caller's RNG untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
