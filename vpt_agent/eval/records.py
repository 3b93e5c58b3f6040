"""The episode record (one line of ``episodes.jsonl``) and the episode task: one home for their schema.

The rollout builds every record with :func:`episode_record`; the runner stamps the run-level keys
(``smoke_test``, ``finished_at``); the report reads them. Outcomes are the constants below, never literals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, TypedDict

TERMINATED = "terminated"  # the env ended the episode (e.g. the agent died)
TRUNCATED = "truncated"  # the time limit (or the env) cut the episode short
CRASHED = "crashed"  # the worker failed mid-episode; the attempt never enters the statistics
OUTCOMES = (TERMINATED, TRUNCATED, CRASHED)


@dataclass(frozen=True)
class EpisodeTask:
    """One episode to run: its index in the run, its env seed, and which attempt this is (0 = first)."""

    index: int
    seed: int
    attempt: int = 0

    def retry(self) -> "EpisodeTask":
        """The next attempt of the same episode (same index, same seed)."""
        return EpisodeTask(self.index, self.seed, self.attempt + 1)


class EpisodeEnd(TypedDict, total=False):
    """What a worker knows at the end of an episode besides rewards: env time and item counts."""

    env_time_s: float  # seconds inside env.reset/env.step
    items: Dict[str, int]  # per-item counts: info["items"] when the env reports them, else max inventory
    items_source: str  # "info" or "inventory"


# ``return`` is a Python keyword, hence the functional TypedDict syntax.
_RecordCore = TypedDict("_RecordCore", {
    "index": int, "seed": int, "attempt": int, "outcome": str, "return": float, "length": int,
    "wall_time_s": float, "worker": int,
})


class EpisodeRecord(_RecordCore, EpisodeEnd, total=False):
    """One finished or crashed episode attempt, as written to ``episodes.jsonl``."""

    error: str  # crashed attempts only: what failed
    will_retry: bool  # crashed attempts only: whether the same seed runs again
    smoke_test: bool  # stamped by the runner: random (untrained) weights
    finished_at: str  # stamped by the runner: ISO time the attempt ended


def episode_record(task: EpisodeTask, outcome: str, episode_return: float, length: int, wall_time_s: float,
                   worker: int, end: Optional[EpisodeEnd] = None, error: Optional[str] = None,
                   will_retry: Optional[bool] = None) -> EpisodeRecord:
    """Build the record of an episode attempt (``end`` for finished episodes, ``error`` for crashed ones).

    A finished attempt whose return is NaN or infinite becomes a crashed one (see :func:`nonfinite_as_crash`).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    record: EpisodeRecord = {"index": task.index, "seed": task.seed, "attempt": task.attempt, "outcome": outcome,
                             "return": float(episode_return), "length": int(length),
                             "wall_time_s": round(wall_time_s, 4), "worker": worker}
    if end:
        record.update(end)
    if error is not None:
        record["error"] = error[:2000]
        record["will_retry"] = bool(will_retry)
    return nonfinite_as_crash(record)


def is_finite_number(value: Any) -> bool:
    """A real, finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def nonfinite_as_crash(record: EpisodeRecord) -> EpisodeRecord:
    """The record with a NaN/Inf ``return`` made JSON-safe: ``return`` null, and a finished attempt made crashed.

    A non-finite reward means the env is broken; its episode has no meaningful return, so it is treated like any
    env fault: a crashed attempt that never enters the statistics (``--resume`` runs that index again). JSON has
    no NaN, so the value is kept only as text in ``error``. Other records are returned unchanged.
    """
    value = record.get("return")
    if value is None or is_finite_number(value):
        return record
    fixed: EpisodeRecord = dict(record)  # type: ignore[assignment]
    fixed["return"] = None  # type: ignore[typeddict-item]
    why = f"non-finite return {value!r}: the env paid a NaN or infinite reward"
    if fixed.get("outcome") != CRASHED:
        fixed["outcome"] = CRASHED
        fixed["error"] = why
        fixed["will_retry"] = False
    else:
        fixed["error"] = f"{fixed.get('error', '')} ({why})".strip()
    return fixed
