"""The behavioural-cloning loop: windows of recordings -> VPTPolicy -> NLL -> Adam, with checkpoints.

Per step: B lanes x T frames go through the policy in one call, with each lane's recurrent state (transformer
memory or LSTM (h, c)) carried over from its previous window (detached: truncated BPTT) and reset where a lane
starts an episode (``first``). The loss is the mean NLL of the recorded joint actions over the real (unpadded)
steps. Under torchrun the B lanes are shared among the processes (:mod:`.distributed`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..agent import resolve_device, resolve_dtype
from ..atomic import out_dir_problem
from ..cli import as_config, check_fields, flag
from ..errors import VPTError
from ..loading import load_model_config, load_state_dict, read_state_dict
from ..policy import BlockState, VPTPolicy
from . import checkpoint as ckpt
from . import distributed
from .batches import Batch, EpisodeSource, RecordingSource, TrainDataError, WindowLoader
from .config import TrainConfig
from .loss import action_nll, bc_loss
from .optim import make_optimizer

logger = logging.getLogger(__name__)


class TrainConfigError(TrainDataError):
    """Options that do not make a run (missing/contradicting flags, an occupied output directory)."""


class TrainingDiverged(VPTError, FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    """Where a finished run is: OUT, the steps done, the last logged and validation losses, the output files."""

    out: Path
    steps: int
    last_loss: Optional[float]
    val_loss: Optional[float]
    files: Dict[str, Path]


# ----------------------------------------------------------------------------- building blocks
def build_policy(model: str, weights: str, seed: int) -> VPTPolicy:
    """The network of ``model``; initial weights from ``weights`` or a seeded random init (``"random"``)."""
    cfg = load_model_config(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = VPTPolicy(cfg)
    if weights != "random":
        load_state_dict(policy, read_state_dict(weights), source=str(weights))
    return policy


def trainable_parameters(policy: VPTPolicy, freeze_trunk: bool) -> List[torch.nn.Parameter]:
    """All parameters, or only the heads' (``pi_head``, ``value_head``) with the trunk frozen."""
    for name, p in policy.named_parameters():
        p.requires_grad_(not (freeze_trunk and name.startswith("net.")))
    return [p for p in policy.parameters() if p.requires_grad]


def enable_grad_checkpointing(policy: VPTPolicy, cnn_chunk: int = 32) -> None:
    """Recompute activations in backward instead of storing them (results are identical).

    The image encoder runs on chunks of ``cnn_chunk`` frames, each checkpointed, so backward holds the
    CNN activations of one chunk at a time (1x, fp32: ~1.5 GB for a 32-frame chunk, instead of ~24 GB
    for all of B=8 x T=64); each transformer block is checkpointed too. Done by wrapping the instances'
    ``forward``: the network code is unchanged.
    """
    encoder = policy.net.img_process
    if not getattr(encoder, "_vpt_checkpointed", False):
        encode = encoder.forward

        @functools.wraps(encode)
        def chunked(x: torch.Tensor) -> torch.Tensor:
            if not torch.is_grad_enabled():
                return encode(x)
            return torch.cat([_checkpoint(encode, part, use_reentrant=False) for part in x.split(cnn_chunk)])

        encoder.forward = chunked
        encoder._vpt_checkpointed = True
    for block in policy.net.recurrent_layer.blocks:
        if getattr(block, "_vpt_checkpointed", False):
            continue
        original = block.forward

        @functools.wraps(original)
        def forward(*args: Any, _f: Any = original) -> Any:
            if torch.is_grad_enabled():
                return _checkpoint(_f, *args, use_reentrant=False)
            return _f(*args)

        block.forward = forward
        block._vpt_checkpointed = True


def read_options(cfg: TrainConfig) -> Any:
    """How recordings are read: as intended (default), or with ``--official-loader`` as the official
    ``data_loader.py`` reads them (:meth:`vpt_agent.data.ReadOptions.official`)."""
    from ..data import ReadOptions

    return ReadOptions.official() if cfg.official_loader else ReadOptions()


def autocast_for(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Mixed precision for ``dtype`` (bf16 autocast on the device; fp32: nothing)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def batch_tensors(batch: Batch, device: torch.device) -> Dict[str, torch.Tensor]:
    """numpy batch -> tensors on ``device``; ``first`` becomes (B, T) with only column 0 set."""
    first = torch.zeros(batch.mask.shape, dtype=torch.bool)
    first[:, 0] = torch.from_numpy(batch.first)
    nb = device.type == "cuda"
    return {
        "frames": torch.from_numpy(batch.frames).to(device, non_blocking=nb),
        "buttons": torch.from_numpy(batch.buttons).to(device, non_blocking=nb),
        "camera": torch.from_numpy(batch.camera).to(device, non_blocking=nb),
        "mask": torch.from_numpy(batch.mask).to(device, non_blocking=nb),
        "first": first.to(device),
    }


def detach_state(state: List[BlockState]) -> List[BlockState]:
    """Each block's state (a LayerMemory or an LSTMState, kept as such) cut from the autograd graph."""
    return [type(mem)(*(t.detach() for t in mem)) for mem in state]


def train_step(policy: VPTPolicy, optimizer: torch.optim.Optimizer, params: List[torch.nn.Parameter],
               t: Dict[str, torch.Tensor], state: List[BlockState], grad_clip: float,
               autocast: contextlib.AbstractContextManager, group: distributed.Group = distributed.Group(),
               count: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, List[BlockState]]:
    """One optimizer step on one batch. Returns (loss, pre-clip gradient norm, detached next state).

    With a parallel ``group`` the batch is this process's lanes; loss and gradients are those of all lanes
    (``count``: their real steps, from :func:`all_lanes_steps`, if the caller has it already).
    """
    optimizer.zero_grad(set_to_none=True)
    if count is None:
        count = all_lanes_steps(t["mask"], group)
    with autocast:
        out = policy(t["frames"], t["first"], state)
    loss = bc_loss(out.logp, t["buttons"], t["camera"], t["mask"], count)
    loss.backward()
    loss = group.sum_gradients(params, loss.detach())
    if grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)  # a list: the clip really sees the params
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    optimizer.step()
    return loss.detach(), norm.detach(), detach_state(out.state)


def all_lanes_steps(mask: torch.Tensor, group: distributed.Group) -> Optional[torch.Tensor]:
    """The real steps of every process's lanes (one all-reduce), or None when this process holds them all."""
    return group.sum(mask.sum()) if group.parallel else None


@torch.no_grad()
def evaluate_loss(policy: VPTPolicy, loader: WindowLoader, device: torch.device,
                  dtype: torch.dtype = torch.float32, group: distributed.Group = distributed.Group()) -> float:
    """Mean NLL per real step over one pass of ``loader`` (memory carried across windows, as in training;
    with a parallel ``group``, over every process's lanes)."""
    was_training = policy.training
    policy.eval()
    loader.load_state_dict({**loader.state_dict(), "next_step": 0})  # a full pass every time
    state = policy.initial_state(len(loader.lanes), device)
    total, count = 0.0, 0
    try:
        for batch in loader:
            t = batch_tensors(batch, device)
            with autocast_for(device, dtype):
                out = policy(t["frames"], t["first"], state)
            nll = action_nll(out.logp, t["buttons"], t["camera"])
            total += float((nll * t["mask"]).sum())
            count += int(t["mask"].sum())
            state = out.state
    finally:
        policy.train(was_training)
    if group.parallel:
        total, count = group.sum(torch.tensor([total, count], dtype=torch.float64, device=device)).tolist()
    return total / max(count, 1)


# ----------------------------------------------------------------------------- options and output dir
def resolve_config(cli: TrainConfig) -> tuple[TrainConfig, Optional[Dict[str, Any]]]:
    """Check the options; with ``--resume`` and a checkpoint in OUT, take the saved options (see RESUMABLE_OVERRIDES).

    Returns ``(config, checkpoint or None)``.
    """
    if not cli.out:
        raise TrainConfigError("--out is required")
    out = Path(cli.out)
    problem = out_dir_problem(out)
    if problem:
        raise TrainConfigError(problem)
    saved = None
    if cli.resume and (out / ckpt.CHECKPOINT).exists():
        saved = ckpt.load_checkpoint(out)
        base = TrainConfig.from_dict(saved["config"])
        defaults = TrainConfig()
        given = getattr(cli, "given", None)  # the command line's options; None: a TrainConfig built in Python
        changes = {}
        for f in dataclasses.fields(TrainConfig):
            mine, theirs, default = getattr(cli, f.name), getattr(base, f.name), getattr(defaults, f.name)
            not_asked = f.name not in given if given is not None else mine == default
            if not_asked or mine == theirs or f.name == "out":  # the checkpoint was found there: it is this run's
                continue
            if f.name not in TrainConfig.RESUMABLE_OVERRIDES:
                raise TrainConfigError(f"{flag(f.name)} {mine} differs from the run in {out} "
                                       f"({theirs}); a resumed run keeps its options")
            changes[f.name] = mine
        changes.update(resume=True, out=cli.out)  # a run keeps working where it is now, if it was moved
        merged = dataclasses.replace(base, **changes)
        check_fields(merged, TrainConfigError)  # the merged options are checked like a new run's
        return merged, saved
    if not cli.resume:
        for name in (ckpt.CHECKPOINT, ckpt.FINAL_WEIGHTS):
            if (out / name).exists():
                raise TrainConfigError(f"{out / name} exists: pass --resume to continue that run, "
                                       "or choose another --out")
    elif (out / ckpt.FINAL_WEIGHTS).exists():  # --resume without a checkpoint would start over and replace them
        raise TrainConfigError(f"--resume: {out} holds {ckpt.FINAL_WEIGHTS} but no {ckpt.CHECKPOINT} to continue "
                               "from; choose another --out")
    for name in ("model", "weights"):
        if not getattr(cli, name):
            why = f" (--resume: {out} holds no {ckpt.CHECKPOINT} to continue from)" if cli.resume else ""
            raise TrainConfigError(f"{flag(name)} is required{why}")
    check_fields(cli, TrainConfigError)  # types, choices and bounds, from the fields' metadata
    return cli, None


# ----------------------------------------------------------------------------- the run
class _Meter:
    """Loss and throughput over the current logging interval."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.frames, self.steps, self.t0 = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, frames: int) -> None:
        self.loss_sum += loss * frames
        self.frames += frames
        self.steps += 1

    def row(self) -> Dict[str, Any]:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return {"loss": self.loss_sum / max(self.frames, 1), "frames_per_s": self.frames / dt}


def train(cli: Union[TrainConfig, Mapping[str, Any]], source: Optional[EpisodeSource] = None,
          val_source: Optional[EpisodeSource] = None) -> TrainResult:
    """Run (or resume) a training run described by ``cli`` (a :class:`TrainConfig` or a dict of its fields; paths
    may be ``pathlib.Path``); returns where the results are.

    ``source``/``val_source`` replace ``--data``/``--val-data`` (in-memory episodes in tests).
    """
    cfg, saved = resolve_config(as_config(TrainConfig, cli, TrainConfigError))
    out = Path(cfg.out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    group = distributed.from_environment(device)
    try:
        return _train(cfg, saved, out, device, dtype, group, source, val_source)
    finally:
        group.close()


def _train(cfg: TrainConfig, saved: Optional[Dict[str, Any]], out: Path, device: torch.device, dtype: torch.dtype,
           group: distributed.Group, source: Optional[EpisodeSource], val_source: Optional[EpisodeSource]
           ) -> TrainResult:
    if group.parallel:
        if cfg.batch % group.world:
            raise TrainConfigError(f"--batch {cfg.batch} does not split into {group.world} processes' equal shares")
        if device.type == "cuda":
            device = torch.device("cuda", group.local_rank)
    lanes = group.lanes(cfg.batch)
    policy = build_policy(cfg.model, "random" if saved else cfg.weights, cfg.seed)
    img_shape = policy.cfg.img_shape
    if source is None:
        if not cfg.data:
            raise TrainConfigError("--data is required")
        source = RecordingSource(cfg.data, img_shape, read_options(cfg))
    if val_source is None and cfg.val_data:
        val_source = RecordingSource(cfg.val_data, img_shape, read_options(cfg))
    for s in (source, val_source):
        if s is not None and tuple(s.frame_shape) != tuple(img_shape):
            raise TrainDataError(f"{s.name(0)}: frames are {tuple(s.frame_shape)}, the model wants {tuple(img_shape)}")
    epochs = cfg.epochs if (cfg.epochs or cfg.steps) else 1
    skip = cfg.null_actions == "skip"
    loader = WindowLoader(source, cfg.batch, cfg.seq_len, cfg.seed, epochs, cfg.workers, skip_null=skip, lanes=lanes)
    val_loader = (WindowLoader(val_source, cfg.batch, cfg.seq_len, cfg.seed, 1, cfg.workers, skip_null=skip,
                               lanes=lanes) if val_source is not None else None)

    out.mkdir(parents=True, exist_ok=True)
    # Frames arrive NHWC: channels-last conv weights spare a re-layout per call (same maths; saved files are
    # made contiguous again).
    policy.to(device, memory_format=torch.channels_last).train()
    params = trainable_parameters(policy, cfg.freeze_trunk)
    if cfg.grad_checkpoint:
        enable_grad_checkpointing(policy)
    optimizer, scheduler = make_optimizer(params, cfg)
    state = policy.initial_state(len(lanes), device)
    step = 0
    meter = _Meter()
    last: Dict[str, Any] = {"epoch": None, "grad_norm": None}  # of the latest step, for the next metrics row
    if saved is not None:
        policy.load_state_dict(saved["policy"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        loader.load_state_dict(saved["loader"])
        state = ckpt.state_from_saved(group.share_of(saved["state"], cfg.batch), device, like=state)
        step = int(saved["step"])
        meter.loss_sum, meter.frames, meter.steps = saved["meter"]
        last.update(saved.get("last", {}))
        logger.info("resumed %s at step %d", out, step)
    if group.main:  # rows of steps to be redone (after the checkpoint, or all of a run killed before its first)
        ckpt.truncate_metrics(out, step)
    group.broadcast_parameters(policy)

    total = cfg.steps or loader.steps_per_epoch_estimate() * epochs
    bar = _progress(cfg, total, step, group.main)
    val_every = cfg.val_every or cfg.checkpoint_every
    last_loss = val_loss = None
    metrics = open(out / ckpt.METRICS, "a") if group.main else contextlib.nullcontext()

    def checkpoint() -> None:
        all_lanes = group.gather_state(state)  # every process takes part; process 0 writes
        if group.main:
            ckpt.save_checkpoint(out, {
                "config": cfg.to_dict(), "step": step, "policy": policy.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "loader": loader.state_dict(), "state": all_lanes,
                "meter": [meter.loss_sum, meter.frames, meter.steps], "last": dict(last),
            })

    def write_row(extra: Dict[str, Any]) -> None:
        """One metrics.jsonl row for the steps since the last one (``extra``: the validation loss, if run)."""
        row = {"step": step, "epoch": last["epoch"], **meter.row(), **extra, "lr": scheduler.get_last_lr()[0],
               "grad_norm": last["grad_norm"]}
        if group.main:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
        meter.reset()

    try:
        with metrics:
            for batch in _batches(loader, cfg.steps, step):
                t = batch_tensors(batch, device)
                count = all_lanes_steps(t["mask"], group)
                loss, gnorm, state = train_step(policy, optimizer, params, t, state, cfg.grad_clip,
                                                autocast_for(device, dtype), group, count)
                scheduler.step()
                step += 1
                last.update(epoch=batch.epoch, grad_norm=float(gnorm))
                last_loss = float(loss)
                if not math.isfinite(last_loss):
                    raise TrainingDiverged(f"the loss became {last_loss} at step {step}; lower --lr")
                meter.add(last_loss, int(batch.mask.sum()) if count is None else int(count))
                row: Dict[str, Any] = {}
                if val_loader is not None and step % val_every == 0:
                    val_loss = evaluate_loss(policy, val_loader, device, dtype, group)
                    row["val_loss"] = val_loss
                if step % cfg.log_every == 0 or row:
                    write_row(row)
                if cfg.snapshot_every and step % cfg.snapshot_every == 0 and group.main:
                    ckpt.save_snapshot(out, policy, step)  # before the checkpoint: a resume never skips one
                if step % cfg.checkpoint_every == 0:
                    checkpoint()
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
            if meter.steps:  # the last, partial logging interval
                row = {}
                if val_loader is not None:
                    val_loss = evaluate_loss(policy, val_loader, device, dtype, group)
                    row["val_loss"] = val_loss
                write_row(row)
        checkpoint()
    finally:
        bar.close()
    if group.main:
        ckpt.save_final(out, policy, Path(cfg.model))
        ckpt.plot_losses(out)
    group.barrier()  # the others return once the final files exist
    return TrainResult(out, step, last_loss, val_loss, ckpt.output_paths(out))


def _batches(loader: WindowLoader, steps: Optional[int], done: int) -> Iterable[Batch]:
    if steps is not None and done >= steps:
        return
    for batch in loader:
        yield batch
        done += 1
        if steps is not None and done >= steps:
            return


def _progress(cfg: TrainConfig, total: int, initial: int, show: bool = True) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=cfg.no_progress or not show, unit="step", desc="train",
                dynamic_ncols=True)
