"""Zero-shot evaluation of a VPT agent: N episodes in an env, a report that survives crashes.

Command line: ``python -m vpt_agent.evaluate --zoo foundation-model-1x --episodes 100`` (or ``vpt-evaluate``;
see ``--help``). Programmatic: :func:`evaluate` with an :class:`EvalConfig`, returns the summary dict.
The code lives in :mod:`vpt_agent.eval`; this module is the stable entry point.
"""
from __future__ import annotations

import sys

from .eval.cli import build_parser, config_from_args, main
from .eval.config import EMBEDDED_ENV, MINERL_ENV, RANDOM_WEIGHTS, EvalConfig, EvalError, default_env
from .eval.rollout import RolloutAborted
from .eval.runner import evaluate

__all__ = ["EMBEDDED_ENV", "MINERL_ENV", "RANDOM_WEIGHTS", "EvalConfig", "EvalError", "RolloutAborted",
           "build_parser", "config_from_args", "default_env", "evaluate", "main"]

if __name__ == "__main__":
    sys.exit(main())
