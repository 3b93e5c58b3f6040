"""The options of ``python -m vpt_agent.train``: one dataclass; the argparse parser is generated from it."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from .. import cli


def _opt(default: Any, help: str, choices: Optional[Sequence[str]] = None, metavar: Optional[str] = None,
         minimum: Optional[float] = None, maximum: Optional[float] = None) -> Any:
    return cli.option(default, help, choices=choices, metavar=metavar, minimum=minimum, maximum=maximum)


@dataclass
class TrainConfig:
    """Everything that defines a training run. Saved in each checkpoint; ``--resume`` reuses it."""

    model: Optional[str] = _opt(None, "the .model config of the network (copied to OUT)", metavar="M")
    weights: Optional[str] = _opt(None, "initial weights (.weights/.safetensors), or 'random'", metavar="W")
    data: Optional[str] = _opt(None, "directory of VPT recordings (NAME.mp4 + NAME.jsonl)", metavar="DIR")
    out: Optional[str] = _opt(None, "output directory", metavar="OUT")
    steps: Optional[int] = _opt(None, "optimizer steps (default: until --epochs are done)", metavar="N",
                                minimum=1)
    epochs: Optional[int] = _opt(None, "passes over the data (default 1 unless --steps is given)",
                                 metavar="E", minimum=1)
    seq_len: int = _opt(64, "T: frames per window (truncated BPTT length)", metavar="T", minimum=1)
    batch: int = _opt(8, "B: parallel sequences (lanes) per step, of all processes together under torchrun",
                      metavar="B", minimum=1)
    lr: float = _opt(1.81e-4, "Adam learning rate (the official behavioural_cloning.py value)", minimum=0)
    weight_decay: float = _opt(0.039428, "Adam L2 weight decay (the official behavioural_cloning.py value and kind)",
                               minimum=0)
    null_actions: str = _opt("keep", "keep | skip steps whose action is null in the agent's action space "
                             "(skip: the VPT paper's rule; keep: what the official behavioural_cloning.py does)",
                             choices=("keep", "skip"))
    official_loader: bool = _opt(False, "read recordings as the official data_loader.py does, accidents included: "
                                 "camera degrees truncated toward zero (every move under 1 degree becomes the "
                                 "null camera), frame/line count mismatches truncated instead of refused")
    grad_clip: float = _opt(5.0, "clip the global gradient norm to this (0: off)", minimum=0)
    warmup: int = _opt(0, "linear learning-rate warm-up over this many steps", metavar="N", minimum=0)
    device: str = _opt("auto", "auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    dtype: Optional[str] = _opt(None, "float32 | bfloat16 autocast (default: bfloat16 on GPU, float32 on CPU)",
                                choices=("float32", "bfloat16"))
    grad_checkpoint: bool = _opt(False, "recompute activations in backward (the CNN in chunks of 32 frames, "
                                        "each transformer block): far less memory, ~1/3 more compute")
    freeze_trunk: bool = _opt(False, "train only the policy and value heads")
    resume: bool = _opt(False, "continue the run in OUT from its last checkpoint")
    val_data: Optional[str] = _opt(None, "directory of held-out recordings for the validation loss", metavar="DIR")
    val_every: Optional[int] = _opt(None, "validation interval in steps (default: --checkpoint-every)",
                                    metavar="N", minimum=1)
    checkpoint_every: int = _opt(200, "checkpoint interval in steps (kill -9 loses at most this much)",
                                 metavar="N", minimum=1)
    log_every: int = _opt(10, "metrics.jsonl interval in steps", metavar="N", minimum=1)
    snapshot_every: Optional[int] = _opt(None, "also keep the weights every N steps, in the official layout: "
                                         "OUT/snapshots/step_NNNNNNN.weights (to evaluate or pick later)",
                                         metavar="N", minimum=1)
    workers: int = _opt(2, "video decoding processes (0: decode in the training process)", metavar="N",
                        minimum=0)
    seed: int = _opt(0, "seed of the data order and of a random initialisation", minimum=0, maximum=2**32 - 1)
    threads: Optional[int] = _opt(None, "torch CPU threads (default: torch's choice)", metavar="N",
                                  minimum=1)
    no_progress: bool = _opt(False, "no progress bar")

    #: options the command line may change when resuming (they do not change what is computed)
    RESUMABLE_OVERRIDES = ("steps", "epochs", "checkpoint_every", "log_every", "val_every", "snapshot_every",
                           "workers", "no_progress", "threads", "resume")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PROG = "python -m vpt_agent.train"

# The files of a run directory (written by .checkpoint; named here, torch-free, for the command line too).
CHECKPOINT = "checkpoint.pt"
FINAL_WEIGHTS = "final.weights"
FINAL_SAFETENSORS = "final.safetensors"
FINAL_MODEL = "final.model"
METRICS = "metrics.jsonl"
PLOT = "loss.png"


def build_parser() -> argparse.ArgumentParser:
    """``--flag-name`` per :class:`TrainConfig` field, with its default, type and help from the dataclass."""
    return cli.build_parser(TrainConfig, PROG, "Behavioural cloning (fine-tuning) of a VPT model on recordings.")


def parse_config(argv: Optional[List[str]] = None) -> TrainConfig:
    """Parse arguments into a :class:`TrainConfig` (exits 2 on a syntax error). The names of the options given on
    the command line are kept as ``given`` (so that ``--resume`` can tell an explicit default from no option)."""
    given = vars(build_parser().parse_args(argv))  # options not given are absent (argparse.SUPPRESS)
    cfg = TrainConfig(**given)
    cfg.given = frozenset(given)  # an attribute, not a field: never saved in a checkpoint
    return cfg
