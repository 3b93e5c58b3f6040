"""Inference-only single-frame steps: a ring-buffer memory updated in place, optionally in a CUDA graph.

``VPTPolicy.forward`` (the training/eager path) concatenates each layer's memory with the new keys and slices
the last ``L`` back out, allocating fresh tensors every step. For acting one frame at a time, :class:`StepEngine`
keeps the same memory in preallocated buffers instead:

* per layer, keys and values ``(B, L, H)`` are a ring: slot ``pos`` holds the oldest frame, which is exactly the
  one a clipped-causal query can no longer see. The new frame's key/value overwrites it *before* attending, so the
  query attends over all ``L`` slots, the distance of slot ``s`` being ``(pos - s) mod L``. This is the eager path's
  attention with its one always-masked column dropped: the same softmax, summed in another order (fp32 results
  agree to rounding, ~1e-6).
* one validity row ``(B, L)`` is shared by all layers (they are identical in the eager path); ``first`` clears it.
* the write index ``pos`` is a device tensor advanced in place, so a step never reads anything back to the host.

Because every buffer is static, the whole step can be captured once in a CUDA graph and replayed: one launch
instead of hundreds of small kernels (``cuda_graph=True``, the default on CUDA). Sampling and the host read-back
stay outside the graph, in the caller.

On a CPU the step can instead be compiled (``compile=True``, or ``compile="max-autotune"``): see
:func:`compile_frozen`. The compiled code holds its own copy of the weights: changing the policy's parameters
afterwards needs a new engine.

Only transformers with the ``clipped_causal`` attention mask (every released VPT model) are supported; the
``"none"`` mask sees one more column than the ring holds, and the agent uses the eager path for it (as for LSTMs).
"""
from __future__ import annotations

import logging
import time
import types
import warnings
from typing import Callable, Dict, NamedTuple, Optional, Union

import torch
from torch.nn import functional as F

from .config import UnsupportedConfigError
from .errors import VPTError
from .policy import VPTPolicy

logger = logging.getLogger(__name__)


class EngineError(VPTError, ValueError):
    """A step engine used with inputs or a device it was not built for."""


class StepOutput(NamedTuple):
    """One in-place step of B envs (:class:`StepEngine`): the heads' outputs, the memory kept in the engine."""

    logp: Dict[str, torch.Tensor]  # "camera": (B, 121), "buttons": (B, 8641) tempered log-probs, float32
    value: torch.Tensor  # (B,) float32


def supports(policy: VPTPolicy) -> bool:
    """Whether :class:`StepEngine` can run this policy: a transformer with the clipped-causal mask (every released
    model). LSTM configs and the ``"none"`` mask run the eager path."""
    return not policy.cfg.is_lstm and policy.cfg.attention_mask_style == "clipped_causal"


def cast_for_inference(policy: VPTPolicy, dtype: torch.dtype) -> VPTPolicy:
    """Convert the weights once to ``dtype`` (in place), keeping the value head in float32.

    Norm layers follow ``dtype`` too (their kernels accumulate in float32); log-softmax runs in float32
    (``CategoricalHead``), and the tiny value head with its de-normalising statistics stays float32.
    """
    policy.net.to(dtype)
    policy.pi_head.to(dtype)
    return policy


#: ``compile=`` values (``True`` means ``"default"``): inductor's default code generation, or ``"max-autotune"``,
#: which also generates C++ matrix-product kernels for the pre-packed weights and keeps, per product, the faster of
#: them and PyTorch's own (AMX kernels for bf16 on CPUs that have AMX). See :func:`compile_frozen`.
COMPILE_MODES = ("default", "max-autotune")


def compile_mode(compile: Union[bool, str, None]) -> Optional[str]:
    """The mode a ``compile=`` argument asks for (None or False: eager); a clear error for anything else."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if compile not in COMPILE_MODES:
        raise EngineError(f"compile must be a bool or one of {', '.join(COMPILE_MODES)}, got {compile!r}")
    return compile


def compile_from_flag(flag: str) -> Union[bool, str]:
    """The ``compile=`` argument a command line's ``--compile off|on|<mode>`` stands for."""
    return {"off": False, "on": True}.get(flag, flag)


def compile_frozen(fn: Callable, mode: str = "default") -> Callable:
    """``torch.compile`` a CPU inference function with inductor's *freezing*: the parameters ``fn`` reads become
    constants of the compiled code, folded and pre-packed once (and copied: later changes to them are not seen),
    and the norms and activations fuse into a few C++ loops. ``mode="max-autotune"`` also autotunes every matrix
    product between PyTorch's kernel and inductor's C++ templates on the pre-packed weights (minutes at first).

    Two details make the freezing real, and each would otherwise fail silently:

    * Dynamo decides whether parameters become constants from the *global* inductor switch while it traces;
      ``torch.compile(options={"freezing": True})`` alone leaves them graph inputs and folds nothing (seen with
      torch 2.13). So every call runs with the global switch on (and restores it).
    * Dynamo caches compiled code on the function's code object and guards frozen parameters by identity only: a
      second compile of the same method after new weights were copied *into the same parameters* would reuse the
      old constants. A bound method ``fn`` is compiled from its own copy of the code object, so its cache lives
      and dies with it (pass methods, not modules, where the weights may change between compiles).
    """
    from torch._inductor import config as inductor_config  # imported here: most processes never compile

    if isinstance(fn, types.MethodType):
        func = fn.__func__
        own = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                                 func.__closure__)
        fn = types.MethodType(own, fn.__self__)
    # fullgraph: a graph break would silently leave part of the function eager.
    compiled = torch.compile(fn, fullgraph=True, dynamic=False,
                             mode="max-autotune-no-cudagraphs" if mode == "max-autotune" else None)
    switches = {"freezing": True}
    if mode == "max-autotune":  # inductor writes a table per autotuned product to stderr: keep the user's clean
        quiet = {"autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}
        switches.update((name, value) for name, value in quiet.items() if hasattr(inductor_config, name))  # by version

    def run(*args):
        previous = {name: getattr(inductor_config, name) for name in switches}
        for name, value in switches.items():
            setattr(inductor_config, name, value)
        try:
            with warnings.catch_warnings():  # autotuning code of torch 2.13 still calls the deprecated storage()
                warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
                return compiled(*args)
        finally:
            for name, value in previous.items():
                setattr(inductor_config, name, value)

    return run


class StepEngine:
    """One frame per env per call, for a fixed batch of ``B`` envs, with the memory kept in place.

    Call it with ``frames`` (B, h, w, 3) uint8 and ``first`` (B,) bool (on any device); it returns
    :class:`StepOutput` on the policy's device. With ``cuda_graph=True`` the returned tensors are static
    buffers overwritten by the next call: read or copy them before calling again.
    """

    def __init__(self, policy: VPTPolicy, batch_size: int, cuda_graph: bool = False,
                 compile: Union[bool, str, None] = False):
        if not supports(policy):
            raise UnsupportedConfigError("StepEngine needs a transformer with attention_mask_style='clipped_causal' "
                                         "(other configs run eagerly)")
        cfg = policy.cfg
        self.policy = policy
        self.batch_size = B = batch_size
        weight = policy.net.img_process.linear.layer.weight
        self.device, self.dtype = weight.device, weight.dtype
        L, H = cfg.maxlen, cfg.hidsize
        n_layers = len(policy.net.recurrent_layer.blocks)
        dev = self.device
        self.keys = torch.zeros(n_layers, B, L, H, device=dev, dtype=self.dtype)
        self.values = torch.zeros(n_layers, B, L, H, device=dev, dtype=self.dtype)
        self.valid = torch.zeros(B, L, dtype=torch.bool, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)  # ring slot the next frame overwrites
        self._slots = torch.arange(L, device=dev)
        h, w = cfg.img_shape[:2]
        self.frames = torch.zeros(B, h, w, 3, dtype=torch.uint8, device=dev)  # static inputs (graph mode)
        self.first = torch.zeros(B, dtype=torch.bool, device=dev)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self._capture_stream: Optional[torch.cuda.Stream] = None
        self._out: Optional[StepOutput] = None
        self.capture_s = 0.0
        self._run = self._step
        #: ``"default"``/``"max-autotune"`` when CPU steps run compiled (:func:`compile_frozen`), else None.
        self.compile_mode = mode = compile_mode(compile)
        if cuda_graph and mode:
            raise EngineError("cuda_graph=True and compile are exclusive (compile is for CPU steps)")
        if cuda_graph:
            if dev.type != "cuda":
                raise EngineError("cuda_graph=True needs the policy on a CUDA device")
            self._capture()
        if mode:
            if dev.type != "cpu":
                raise EngineError("compile is for CPU steps (on CUDA, steps replay a CUDA graph)")
            # Compiled lazily, at the first call (~1 min for 1x; inductor caches the generated code on disk).
            self._run = compile_frozen(self._step, mode)

    def reset(self) -> None:
        """Empty memory for every env (the next step behaves as a fresh episode even without ``first``)."""
        self.keys.zero_()
        self.values.zero_()
        self.valid.zero_()
        self.pos.zero_()

    def __call__(self, frames: torch.Tensor, first: torch.Tensor) -> StepOutput:
        if frames.shape[0] != self.batch_size or first.shape != (self.batch_size,):
            raise EngineError(f"this engine steps {self.batch_size} envs, got frames {tuple(frames.shape)} "
                             f"and first {tuple(first.shape)}")
        if self.graph is None or frames.dtype != self.frames.dtype:  # float frames: an eager step, not the graph
            return self._run(frames.to(self.device, non_blocking=True), first.to(self.device, non_blocking=True))
        self.frames.copy_(frames, non_blocking=True)
        self.first.copy_(first, non_blocking=True)
        self.graph.replay()
        return self._out

    # ------------------------------------------------------------------ the step
    def _step(self, frames: torch.Tensor, first: torch.Tensor) -> StepOutput:
        net = self.policy.net
        L = self.policy.cfg.maxlen
        x = net.encode(frames)  # (B, hidsize)
        # Slot `pos` now takes the new frame; every slot is in band, the new one at distance 0.
        self.valid.logical_and_(~first[:, None])
        self.valid.index_fill_(1, self.pos, True)
        distance = torch.remainder(self.pos - self._slots, L)  # (L,)
        mask = torch.zeros(self.valid.shape, dtype=torch.float32, device=self.device)
        mask.masked_fill_(~self.valid, float("-inf"))  # (B, L)
        for i, block in enumerate(net.recurrent_layer.blocks):
            y = block.pre_r_ln(x)
            a = self._attend(block.r.orc_block, y, i, distance, mask)
            x = block.after_attention(y, a)
        h = net.decode(x)
        self.pos.add_(1).remainder_(L)
        return StepOutput(self.policy.pi_head(h), self.policy.value_head(h)[..., 0])

    def _attend(self, attn, y: torch.Tensor, layer: int, distance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Write this frame's key/value into the ring, then attend over the ring: (B, H) -> (B, H)."""
        B, H = y.shape
        q, k, v = attn.q_layer(y), attn.k_layer(y), attn.v_layer(y)
        keys, values = self.keys[layer], self.values[layer]
        keys.index_copy_(1, self.pos, k[:, None].to(keys.dtype))
        values.index_copy_(1, self.pos, v[:, None].to(values.dtype))
        bias = attn.distance_bias(y[:, None])[:, :, 0].index_select(-1, distance)  # (B, nh, L) float32
        bias = (bias + mask[:, None]).to(q.dtype)[:, :, None]  # (B, nh, 1, L)
        split = attn.split_heads
        a = F.scaled_dot_product_attention(split(q[:, None]), split(keys), split(values), attn_mask=bias,
                                           scale=attn.scale)
        return attn.proj_layer(a.reshape(B, H))

    # ------------------------------------------------------------------ CUDA graph
    def _capture(self) -> None:
        """Warm up on a side stream (kernel selection, workspaces), capture one step on it, then clear the memory.

        Each engine captures on its own stream: PyTorch keys cuBLAS workspaces by stream, so graphs captured on one
        shared stream (``torch.cuda.graph``'s default) embed the same workspace. Replayed at the same time (the
        evaluator's pipelined groups, each on its agent's stream) they would race on it, and destroying one such
        graph frees the workspace the others still use (pytorch/pytorch#193402).
        """
        start = time.perf_counter()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(self.frames, self.first)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            self._out = self._step(self.frames, self.first)
        self.graph, self._capture_stream = graph, side  # the stream stays with the graph (see above)
        self.reset()
        torch.cuda.synchronize(self.device)
        self.capture_s = time.perf_counter() - start
        logger.debug("captured a CUDA graph for B=%d in %.2f s", self.batch_size, self.capture_s)
