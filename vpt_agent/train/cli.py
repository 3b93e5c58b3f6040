"""``python -m vpt_agent.train`` / ``vpt-train``: behavioural cloning of a VPT model on recordings."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

from ..errors import VPTError, one_line
from .config import CHECKPOINT, parse_config


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; returns the exit code."""
    cfg = parse_config(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:  # the imports too: a Ctrl-C while torch loads is an interrupt like any other
        from ..data.video import quiet_ffmpeg
        from .distributed import is_main_process
        from .trainer import train  # torch is imported only after the options parsed

        quiet_ffmpeg()
        result = train(cfg)
    except (VPTError, FileNotFoundError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if (Path(cfg.out or ".") / CHECKPOINT).exists():
            print("interrupted: resume with --resume (the last checkpoint is kept)", file=sys.stderr)
        else:
            print(f"interrupted before the first checkpoint (--checkpoint-every {cfg.checkpoint_every}): nothing to "
                  "resume; run the same command again", file=sys.stderr)
        return 130
    if not is_main_process():  # under torchrun, process 0 reports
        return 0
    loss = "n/a" if result.last_loss is None else f"{result.last_loss:.4f}"
    val = "" if result.val_loss is None else f", val loss {result.val_loss:.4f}"
    print(f"trained {result.steps} steps (last loss {loss}{val}); weights: {result.files['weights']}")
    return 0
