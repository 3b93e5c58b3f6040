"""``python -m vpt_agent.evaluate`` (and ``vpt-evaluate``): the parser is generated from :class:`EvalConfig`.

Each flag, default and help text is written once, in the dataclass; this module only turns fields into options.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .. import cli
from ..errors import one_line
from .config import EvalConfig, EvalError

PROG = "python -m vpt_agent.evaluate"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one option per :class:`EvalConfig` field (:mod:`vpt_agent.cli`), plus ``--log-level``."""
    parser = cli.build_parser(EvalConfig, PROG, "Evaluate a VPT agent for N episodes and write a crash-safe reward "
                                                "report.")
    parser.add_argument("--log-level", default="WARNING", choices=LOG_LEVELS, help="logging verbosity")
    return parser


def config_from_args(argv: Optional[Sequence[str]] = None) -> EvalConfig:
    """Parse command-line arguments into an :class:`EvalConfig` (exits 2 on a syntax error); sets up logging."""
    args = vars(build_parser().parse_args(argv))
    level = args.pop("log_level")
    logging.basicConfig(level=getattr(logging, level), format="%(levelname)s %(name)s: %(message)s")
    return EvalConfig(**args)  # flags not given are absent (SUPPRESS), so the dataclass defaults apply


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the process exit code."""
    from .rollout import RolloutAborted
    from .runner import evaluate

    config = config_from_args(argv)
    try:
        evaluate(config)
    except EvalError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except RolloutAborted as err:
        print(f"error: run aborted: {err} (finished episodes are on disk)", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, a read-only or vanished --out, ...: one line, not a traceback
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"error: {err.strerror or err}{where} (finished episodes are on disk; fix this and continue with "
              f"--resume --out {config.out or 'DIR'})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished episodes and their summary are on disk; continue with --resume",
              file=sys.stderr)
        return 130
    return 0
