"""``python -m vpt_agent.data`` (``vpt-data``): check VPT recordings before training on them.

    python -m vpt_agent.data data/treechop                        # the jsonl files and the videos' frame counts
    python -m vpt_agent.data data/treechop --decode --json check.json  # every frame decoded too

Reads every recording as ``python -m vpt_agent.train`` would (:mod:`vpt_agent.data.check`), reports what the
data holds and every recording it could not use. Exit code 0: all usable; 1: some are not; 2: bad arguments or
nothing found.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from .. import cli
from ..atomic import atomic_path

PROG = "python -m vpt_agent.data"


def _default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass
class CheckConfig:
    """The options of ``python -m vpt_agent.data``."""

    paths: List[str] = cli.option(cli=False, default_factory=list)  # positional, added by build_parser
    decode: bool = cli.option(False, "decode every frame of every video too (slow: finds truncated or corrupt "
                                     "videos, which training would otherwise meet when it gets to them)")
    jobs: int = cli.option(default_factory=_default_jobs, minimum=1, metavar="N",
                           help="processes checking recordings in parallel (one per CPU core, at most 8)")
    official_loader: bool = cli.option(False, "read as train --official-loader does (camera degrees truncated "
                                              "toward zero, frame/line count mismatches truncated)")
    json: Optional[str] = cli.option(None, "also write the totals and one entry per recording to this JSON file",
                                     metavar="PATH")
    no_progress: bool = cli.option(False, "no progress bar")


def build_parser():
    parser = cli.build_parser(CheckConfig, PROG, "Check VPT recordings (NAME.mp4 + NAME.jsonl) before training: "
                                                 "read each as training does, report what the data holds and every "
                                                 "recording that cannot be used.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="directories of recordings and/or .mp4/.jsonl files")
    return parser


def _json_problem(path: Path) -> Optional[str]:
    """Why the report cannot be written to ``path`` (its directory must exist and be writable), or None."""
    if path.is_dir():
        return f"--json {path}: is a directory"
    if not path.parent.is_dir():
        return f"--json {path}: {path.parent} is not a directory"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"--json {path}: {path.parent} is not writable"
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code."""
    config = CheckConfig(**vars(build_parser().parse_args(argv)))
    try:
        cli.check_fields(config, ValueError)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .check import check_recordings, format_summary, summarize
    from .options import ReadOptions
    from .recording import no_recordings, path_problem
    from .video import quiet_ffmpeg

    problems = [path_problem(p) for p in config.paths]  # bad arguments, not bad recordings
    if config.json:  # found now, not after a long check
        problems.append(_json_problem(Path(config.json)))
    for problem in filter(None, problems):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    quiet_ffmpeg()
    options = ReadOptions.official() if config.official_loader else ReadOptions()
    try:
        checks = check_recordings(config.paths, options, config.decode, config.jobs,
                                  progress=not config.no_progress)
    except BrokenProcessPool:
        print("error: a checking process died (OpenCV crashed on a video?); nothing was reported", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if not checks:
        print(f"error: {no_recordings(config.paths)}", file=sys.stderr)
        return 2
    summary = summarize(checks)
    print(format_summary(summary))
    if summary["usable"] and not summary["steps"]:
        print("error: no training steps in the usable recordings (every action is a null action)", file=sys.stderr)
    if config.json:
        try:
            with atomic_path(config.json) as tmp:
                tmp.write_text(json.dumps(summary, indent=1) + "\n")
        except OSError as err:
            print(f"error: cannot write {config.json}: {err.strerror or err}", file=sys.stderr)
            return 2
    return 1 if summary["unusable"] or not summary["steps"] else 0
