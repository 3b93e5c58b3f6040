"""Atomic files: training checkpoints (resume) and the final weights in the official layout.

Everything is written to a temporary file in the destination directory, flushed to disk and renamed over
the destination, so a killed process leaves either the previous file or the new one, never half of one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence

import torch

from ..atomic import atomic_path
from ..policy import BlockState
from .config import CHECKPOINT, FINAL_MODEL, FINAL_SAFETENSORS, FINAL_WEIGHTS, METRICS, PLOT  # noqa: F401


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through an open file: the zip's inner folder is then always ``archive`` (given a path, torch
    names it after the file, here a random temporary name), so identical tensors give identical file bytes."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``; the file then replaces ``path`` whole (:func:`vpt_agent.atomic.atomic_path`)."""
    with atomic_path(path) as tmp:
        write(str(tmp))


def official_state_dict(policy: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The policy's parameters and buffers as contiguous CPU tensors (keys = official MinecraftAgentPolicy)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in policy.state_dict().items()}


def state_to_cpu(state: Sequence[BlockState]) -> List[List[torch.Tensor]]:
    """Each block's state as a plain list of tensors (what ``torch.load(weights_only=True)`` reads back)."""
    return [[t.detach().to("cpu") for t in mem] for mem in state]


def state_from_saved(saved: List[List[torch.Tensor]], device: torch.device, like: Sequence[BlockState]
                     ) -> List[BlockState]:
    """The saved state on ``device``, each block's tensors in the type of ``like``'s (the policy's initial state:
    ``LayerMemory`` for a transformer, ``LSTMState`` for an LSTM), shapes checked against it."""
    from .batches import TrainDataError

    if len(saved) != len(like) or any(len(s) != len(ref) for s, ref in zip(saved, like)):
        raise TrainDataError(f"the checkpoint's recurrent state ({len(saved)} blocks) does not fit this network "
                             f"({len(like)} blocks of {type(like[0]).__name__ if like else 'nothing'})")
    restored = []
    for s, ref in zip(saved, like):
        if any(t.shape != r.shape for t, r in zip(s, ref)):
            raise TrainDataError(f"the checkpoint's recurrent state has shapes {[tuple(t.shape) for t in s]}, "
                                 f"this run's are {[tuple(r.shape) for r in ref]}")
        restored.append(type(ref)(*(t.to(device) for t in s)))
    return restored


def save_checkpoint(out: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``OUT/checkpoint.pt`` atomically (tensors and plain data only: read back with ``weights_only``)."""
    path = Path(out) / CHECKPOINT
    atomic_write(path, lambda tmp: save_torch(dict(payload), tmp))
    return path


def load_checkpoint(out: Path) -> Dict[str, Any]:
    """Read ``OUT/checkpoint.pt`` (tensors and plain data only: ``weights_only=True``)."""
    from .batches import TrainDataError

    path = Path(out) / CHECKPOINT
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainDataError(f"{path}: cannot read the checkpoint ({e!r:.200})") from e


SNAPSHOTS = "snapshots"


def snapshot_path(out: Path, step: int) -> Path:
    """``OUT/snapshots/step_NNNNNNN.weights``: the weights after ``step`` steps (``--snapshot-every``)."""
    return Path(out) / SNAPSHOTS / f"step_{step:07d}.weights"


def save_snapshot(out: Path, policy: torch.nn.Module, step: int) -> Path:
    """The weights after ``step`` steps in the official layout (atomic), loadable like ``final.weights``."""
    path = snapshot_path(out, step)
    path.parent.mkdir(exist_ok=True)
    sd = official_state_dict(policy)
    atomic_write(path, lambda tmp: save_torch(sd, tmp))
    return path


def output_paths(out: Path) -> Dict[str, Path]:
    """What a finished run leaves in ``out``, by kind."""
    out = Path(out)
    return {"model": out / FINAL_MODEL, "safetensors": out / FINAL_SAFETENSORS, "weights": out / FINAL_WEIGHTS,
            "plot": out / PLOT, "metrics": out / METRICS}


def save_final(out: Path, policy: torch.nn.Module, model_file: Path) -> Dict[str, Path]:
    """``final.weights`` (torch), ``final.safetensors`` and ``final.model`` (a copy of the config), each atomic."""
    from safetensors.torch import save_file

    sd = official_state_dict(policy)
    paths = output_paths(out)
    atomic_write(paths["model"], lambda tmp: shutil.copyfile(model_file, tmp))
    atomic_write(paths["safetensors"], lambda tmp: save_file(sd, tmp))
    atomic_write(paths["weights"], lambda tmp: save_torch(sd, tmp))  # last: its presence means "done"
    return {k: paths[k] for k in ("model", "safetensors", "weights")}


def read_metrics(out: Path) -> List[Dict[str, Any]]:
    """The rows of ``OUT/metrics.jsonl`` (none if it does not exist yet)."""
    path = Path(out) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: drop it
            continue
    return rows


def truncate_metrics(out: Path, last_step: int) -> None:
    """Keep only the metrics of steps <= ``last_step`` (what a resumed run has not redone)."""
    rows = [r for r in read_metrics(out) if r.get("step", 0) <= last_step]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    atomic_write(Path(out) / METRICS, lambda tmp: Path(tmp).write_text(text))


def plot_losses(out: Path) -> Path:
    """``loss.png``: training (and validation) loss per step, from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(out)
    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL of the recorded action (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(out) / PLOT
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
