"""Checking recordings before a long training run: every problem at once, and what the data holds.

Training stops at the first bad recording it meets (a bad jsonl line before it starts, a corrupt video when it
gets there, maybe hours in). :func:`check_recordings` reads every recording as training reads it and keeps
going past problems:

    paths --list_recordings--> recordings (a missing path or an mp4 without its jsonl: a problem in its place)
          --load_actions-----> jsonl parsed with the official semantics, the mp4's frame count (training's checks)
          --decode=True------> every frame of the mp4 decoded: at least the frames training reads must decode
          --action_targets---> which kept steps are null in the agent's action space (``--null-actions skip``)

The result (:class:`RecordingCheck` per recording) counts steps, GUI-open steps, camera moves and presses per
button; :func:`summarize` adds them up. ``python -m vpt_agent.data`` prints that and exits 1 if any recording
is unusable.
"""
from __future__ import annotations

import concurrent.futures
import logging
import signal
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ..action_mapping import MINERL_ACTION_KEYS
from .errors import DataError
from .options import ReadOptions
from .recording import PathLike, RecordingFiles, list_recordings, load_actions
from .video import FPS, count_frames

logger = logging.getLogger(__name__)

BUTTONS = tuple(key for key in MINERL_ACTION_KEYS if key != "camera")


@dataclass
class RecordingCheck:
    """One recording as training would see it; ``error`` is None when it is usable.

    Counts are of the jsonl's lines (``lines``), the mp4's frames (``frames``; ``decoded`` with ``decode=True``),
    the null actions the reader skips (``null_skipped``), the training steps it keeps (``steps``) and, of those,
    the ones null in the agent's action space (``agent_null``: a camera move within the null bin and no button),
    the GUI-open ones, the ones with the camera moving, and per button the ones pressing it.
    """

    name: str
    error: Optional[str] = None
    lines: int = 0
    frames: int = 0
    decoded: Optional[int] = None
    null_skipped: int = 0
    steps: int = 0
    agent_null: int = 0
    gui_open: int = 0
    camera_moving: int = 0
    buttons: Dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def check_recording(files: Union[RecordingFiles, DataError], options: ReadOptions = ReadOptions(),
                    decode: bool = False) -> RecordingCheck:
    """Read one recording as training does (and, with ``decode``, decode all its frames); never raises a
    :class:`DataError`: the problem is the result's ``error``."""
    if isinstance(files, DataError):
        return RecordingCheck(name=str(files).split(": ")[0], error=str(files))
    check = RecordingCheck(name=str(files.video.with_suffix("")))
    try:
        read = load_actions(files, options)
        check.lines, check.frames, check.null_skipped, check.steps = (
            read.num_lines, read.num_frames, read.num_null, len(read))
        if decode:
            check.decoded = count_frames(files.video, decode=True)
            needed = min(read.num_lines, read.num_frames)  # what training reads (the two agree unless truncating)
            if check.decoded < needed:
                raise DataError(f"{files.video}: {check.decoded} frames decode, the container announces "
                                f"{read.num_frames} and training reads {needed} (truncated or corrupt video)")
    except DataError as err:
        check.error = str(err)
        return check
    check.gui_open = int(read.gui_open.sum())
    check.camera_moving = sum(bool(np.any(a["camera"])) for a in read.actions)
    check.buttons = {b: n for b in BUTTONS if (n := sum(int(a[b]) for a in read.actions))}
    check.agent_null = _agent_null_steps(read.actions)
    return check


def _agent_null_steps(actions: Sequence[Dict[str, Any]]) -> int:
    from ..train.targets import action_targets  # numpy only; the definition training uses

    return int(action_targets(actions).null.sum())


def check_recordings(paths: Union[PathLike, Sequence[PathLike]], options: ReadOptions = ReadOptions(),
                     decode: bool = False, jobs: int = 1, progress: bool = False) -> List[RecordingCheck]:
    """:func:`check_recording` for every recording in ``paths`` (directories and/or files, as
    :func:`~vpt_agent.data.find_recordings` takes them), in their order, ``jobs`` processes at a time
    (``progress``: a tqdm bar). A path without recordings adds nothing; a missing one is a problem entry."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    from tqdm import tqdm

    entries = list_recordings(paths)
    with tqdm(total=len(entries), unit="recording", desc="check", disable=not progress) as bar:
        results = []
        for result in _map(entries, options, decode, jobs):
            results.append(result)
            bar.update()
    return results


def _map(entries: List[Union[RecordingFiles, DataError]], options: ReadOptions, decode: bool,
         jobs: int) -> Iterator[RecordingCheck]:
    if jobs == 1 or len(entries) < 2:
        yield from (check_recording(e, options, decode) for e in entries)
        return
    pool = concurrent.futures.ProcessPoolExecutor(min(jobs, len(entries)), initializer=_ignore_sigint)
    # submit, not map: map cancels the pending futures when interrupted, and the pool's manager thread then
    # fails on them (InvalidStateError) once it sees its workers terminated
    futures = [pool.submit(check_recording, entry, options, decode) for entry in entries]
    try:
        for future in futures:
            yield future.result()
    except BaseException:  # Ctrl-C, a dead worker: stop now, not after the recordings already handed out
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()  # the pool then fails the pending futures itself
        pool.shutdown(wait=False)
        raise
    pool.shutdown()


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (no traceback from each)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def summarize(checks: Sequence[RecordingCheck]) -> Dict[str, Any]:
    """Totals over the usable recordings (and the problems of the others) as a JSON-ready dict."""
    good = [c for c in checks if c.ok]
    totals = {key: sum(getattr(c, key) for c in good)
              for key in ("lines", "frames", "null_skipped", "steps", "agent_null", "gui_open", "camera_moving")}
    buttons = {b: sum(c.buttons.get(b, 0) for c in good) for b in BUTTONS}
    return {
        "recordings": len(checks), "usable": len(good), "unusable": len(checks) - len(good),
        **totals, "minutes": totals["steps"] / FPS / 60,
        "decoded": sum(c.decoded for c in good) if good and all(c.decoded is not None for c in good) else None,
        "buttons": dict(sorted(buttons.items(), key=lambda kv: -kv[1])),
        "problems": [c.error for c in checks if not c.ok],
        "per_recording": [asdict(c) for c in checks],
    }


def format_summary(summary: Dict[str, Any]) -> str:
    """The summary as a few lines of text (the per-recording rows are left to the JSON)."""
    steps = summary["steps"]

    def share(n: int) -> str:
        return f"{100 * n / steps:.1f}%" if steps else "-"

    lines = [f"{summary['recordings']} recordings: {summary['usable']} usable, {summary['unusable']} not"]
    if summary["usable"]:
        lines += [
            f"steps: {steps:,} for training ({summary['minutes']:.1f} min at {FPS} Hz) from {summary['lines']:,} "
            f"jsonl lines; {summary['null_skipped']:,} null actions skipped when read",
            f"  null in the agent's action space: {share(summary['agent_null'])} (train --null-actions skip "
            f"drops them); GUI open: {share(summary['gui_open'])}; camera moving: {share(summary['camera_moving'])}",
        ]
        if summary["decoded"] is not None:
            lines.append(f"videos: {summary['decoded']:,} of the {summary['frames']:,} frames they announce decode")
        pressed = [f"{b} {share(n)}" for b, n in summary["buttons"].items() if n]
        never = [b for b, n in summary["buttons"].items() if not n]
        lines.append("buttons (share of steps): " + (", ".join(pressed) or "none pressed"))
        if never:
            lines.append("never pressed: " + ", ".join(never))
    if summary["problems"]:
        lines.append("unusable:")
        lines += [f"  {problem}" for problem in summary["problems"]]
    return "\n".join(lines)
