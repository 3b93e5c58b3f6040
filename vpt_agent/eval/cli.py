"""``python -m vpt_agent.evaluate`` (and ``vpt-evaluate``): the parser is generated from :class:`EvalConfig`.

Each flag, default and help text is written once, in the dataclass; this module only turns fields into options.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import typing
from typing import Any, Dict, Optional, Sequence

from .config import EvalConfig, EvalError, flag

PROG = "python -m vpt_agent.evaluate"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _json_object(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_no_constant)  # NaN/Infinity are not JSON
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"log_goal\": 5}'")
    return value


def _base_type(annotation: Any) -> Any:
    """``Optional[int]`` -> ``int``; other annotations unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation


def _help(f: dataclasses.Field) -> str:
    text = f.metadata["help"]
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is not None and not isinstance(default, bool):
        text += f" (default {default})"
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one option per :class:`EvalConfig` field, plus ``--log-level``."""
    parser = _Parser(prog=PROG, description="Evaluate a VPT agent for N episodes and write a crash-safe reward "
                                            "report.")
    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        kind = _base_type(hints[f.name])
        names = [flag(f.name)] + ([meta["short"]] if "short" in meta else [])
        if kind is bool:
            if meta.get("negate"):
                parser.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                                    default=argparse.SUPPRESS, help=_help(f))
            else:
                parser.add_argument(*names, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                                    help=_help(f))
            continue
        options: Dict[str, Any] = {"dest": f.name, "help": _help(f), "default": argparse.SUPPRESS}
        if "choices" in meta:
            options["choices"] = meta["choices"]
        if "metavar" in meta:
            options["metavar"] = meta["metavar"]
        if typing.get_origin(kind) in (dict, typing.Dict):
            options["type"] = _json_object
        else:
            options["type"] = _finite_float if kind is float else kind
        parser.add_argument(*names, **options)
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
        print(f"error: {err}", file=sys.stderr)
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
