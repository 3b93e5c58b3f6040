"""Evaluation report: the episode log, return statistics, item success rates, plot and table.

The episode log (``episodes.jsonl``) is the source of truth of an evaluation run: one JSON object
per finished episode attempt, appended, flushed and fsync'd as soon as the episode ends. Everything
else (``summary.json``, ``returns.png``, the printed table) is derived from it, so a summary can be
rebuilt at any time, including after a crash or a kill.
"""
from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from .records import CRASHED, EpisodeRecord, EpisodeTask
from .rollout import RolloutListener

logger = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "returns.png"
SMOKE_TEST_LABEL = "SMOKE TEST: random (untrained) weights, not a real evaluation"

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


class EpisodeLog:
    """Append-only JSON-lines log of finished episodes that survives kills.

    Every :meth:`append` writes one complete line, then flushes and fsyncs, so a line on disk is
    either complete or (if the process died mid-write) the truncated last line, which
    :meth:`load` detects, logs and removes.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def load(self) -> List[EpisodeRecord]:
        """Read all records; a corrupt (truncated) last line is logged and dropped from the file.

        A corrupt line anywhere else means the file was edited or damaged by something other than
        an interrupted write; that raises ``ValueError`` instead of silently losing data.
        """
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        records: List[EpisodeRecord] = []
        good_bytes = 0
        last_content = max((i for i, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            is_last = number == last_content
            if not line.strip():
                good_bytes += len(line) + 1
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "index" not in record:
                    raise ValueError("not an episode record")
            except ValueError:
                if not is_last:
                    raise ValueError(
                        f"{self.path}: line {number} is not a valid episode record and is not the "
                        f"last line; refusing to guess (fix or remove that line)") from None
                logger.warning("%s: dropping corrupt last line %d (%d bytes, an interrupted write)",
                               self.path, number, len(line))
                self._truncate(good_bytes)
                return records
            records.append(record)
            good_bytes += len(line) + 1
        if raw and not raw.endswith(b"\n"):
            # Last record is valid JSON but lacks its newline: complete it so appends stay aligned.
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def _truncate(self, size: int) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        data = self.path.read_bytes()[:size]
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def append(self, record: EpisodeRecord) -> None:
        """Append one record as a line, flushed and fsync'd before returning."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(record, sort_keys=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file handle (appending again reopens it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class EpisodeStatus:
    """What the log says about the episode indices of a run."""

    done: Dict[int, EpisodeRecord] = field(default_factory=dict)  # index -> successful record
    gave_up: Dict[int, int] = field(default_factory=dict)  # index -> crashed attempts (retries exhausted)
    attempts: Dict[int, int] = field(default_factory=dict)  # index -> crashed attempts so far


def episode_status(records: Iterable[EpisodeRecord], max_retries: int) -> EpisodeStatus:
    """Classify indices: finished, given up (more than ``max_retries`` crashes) or still to run."""
    status = EpisodeStatus()
    for record in records:
        index = int(record["index"])
        if record.get("outcome") == CRASHED:
            status.attempts[index] = status.attempts.get(index, 0) + 1
        elif index in status.done:
            logger.warning("duplicate record for episode %d ignored", index)
        else:
            status.done[index] = record
    for index, crashes in status.attempts.items():
        if index not in status.done and crashes > max_retries:
            status.gave_up[index] = crashes
    return status


def t_quantile_975(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054  # Cornish-Fisher expansion around the normal quantile
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def return_stats(returns: Sequence[float]) -> Dict[str, Any]:
    """n, mean, std (sample, ddof=1), 95% Student-t confidence interval of the mean, median, min, max."""
    n = len(returns)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None, "median": None, "min": None, "max": None}
    mean = statistics.fmean(returns)
    std = statistics.stdev(returns) if n > 1 else 0.0
    if n > 1:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        ci = [mean - half, mean + half]
    else:
        ci = [mean, mean]
    return {"n": n, "mean": mean, "std": std, "ci95": ci, "median": statistics.median(returns),
            "min": min(returns), "max": max(returns)}


def item_success_rates(records: Sequence[EpisodeRecord]) -> Dict[str, float]:
    """Share of episodes in which each item was obtained (count > 0), as in the VPT paper's tables."""
    with_items = [r for r in records if isinstance(r.get("items"), dict)]
    if not with_items:
        return {}
    names = sorted({name for r in with_items for name in r["items"]})
    return {name: sum(1 for r in with_items if r["items"].get(name, 0) > 0) / len(with_items)
            for name in names}


def throughput(finished: Sequence[EpisodeRecord], session: Mapping[str, Any]) -> Dict[str, Any]:
    """Env, agent and overall steps/s, and the share of the bound ``min(K x env, agent)`` the run achieved.

    ``env`` is one env's speed (steps per second of time inside the env, over finished episodes), ``agent`` the
    policy's (frames per second of forward time, at this session's batch sizes), ``overall`` env steps per
    wall-clock second of this session with all K envs. A loop that hid every wait would reach the bound.
    """
    steps = sum(int(r["length"]) for r in finished)
    env_time = sum(float(r.get("env_time_s", 0.0)) for r in finished)
    env_rate = steps / env_time if env_time > 0 else None
    agent_rate = session.get("agent_steps_per_s")
    overall = session.get("overall_steps_per_s")
    num_envs = session.get("num_envs")
    bound = None
    if env_rate and agent_rate and num_envs:
        bound = min(num_envs * env_rate, agent_rate)
    return {
        "env_steps_per_s": env_rate,
        "agent_steps_per_s": agent_rate,
        "overall_steps_per_s": overall,
        "num_envs": num_envs,
        "bound_steps_per_s": bound,
        "share_of_bound": overall / bound if bound and overall else None,
        "note": "env: steps per second of env time summed over finished episodes (one env); agent: frames per "
                "second of policy forward time (this session's batch sizes); overall: env steps per wall-clock "
                "second of this session (all envs together); bound: min(num_envs x env, agent); "
                "share_of_bound: overall / bound",
    }


def build_summary(records: Sequence[EpisodeRecord], *, episodes_requested: int, max_retries: int,
                  smoke_test: bool, config: Mapping[str, Any], versions: Mapping[str, Optional[str]],
                  session: Mapping[str, Any]) -> Dict[str, Any]:
    """Summarise the log: statistics over finished (non-crashed) episodes with index < N.

    Crashed attempts are counted separately and never enter the statistics.
    """
    in_range = [r for r in records if int(r["index"]) < episodes_requested]
    status = episode_status(in_range, max_retries)
    finished = [status.done[i] for i in sorted(status.done)]
    returns = [float(r["return"]) for r in finished]
    steps = sum(int(r["length"]) for r in finished)
    outcomes: Dict[str, int] = {}
    for r in finished:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    summary: Dict[str, Any] = {
        "env": config.get("env"),
        "policy": config.get("policy_label"),
        "smoke_test": smoke_test,
        **({"warning": SMOKE_TEST_LABEL} if smoke_test else {}),
        "episodes_requested": episodes_requested,
        "episodes_finished": len(finished),
        "complete": len(finished) + len(status.gave_up) == episodes_requested,
        "returns": return_stats(returns),
        "outcomes": outcomes,
        "crashed_attempts": sum(status.attempts.values()),
        "episodes_given_up": sorted(status.gave_up),
        "item_success_rates": item_success_rates(finished),
        "mean_length": (steps / len(finished)) if finished else None,
        "throughput": throughput(finished, session),
        "session": dict(session),
        "config": dict(config),
        "versions": dict(versions),
    }
    return summary


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename, so readers never see half a file."""
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def plot_returns(records: Sequence[EpisodeRecord], path: Path, title: str) -> None:
    """Save per-episode returns (crashed attempts marked) and their histogram as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    status = episode_status(records, max_retries=10 ** 9)
    finished = sorted(status.done.items())
    crashed = sorted(status.attempts)
    fig, (ax_ep, ax_hist) = plt.subplots(1, 2, figsize=(10, 3.8))
    try:
        xs = [i for i, _ in finished]
        ys = [float(r["return"]) for _, r in finished]
        ax_ep.plot(xs, ys, "o-", markersize=3, linewidth=0.8, label="return")
        if crashed:
            ax_ep.plot(crashed, [0.0] * len(crashed), "rx", label="crashed attempt(s)")
        if ys:
            mean = statistics.fmean(ys)
            ax_ep.axhline(mean, color="gray", linestyle="--", linewidth=0.8, label=f"mean {mean:.3g}")
        ax_ep.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_ep.set_xlabel("episode index")
        ax_ep.set_ylabel("return")
        ax_ep.legend(fontsize=7)
        ax_hist.hist(ys if ys else [0.0], bins=min(30, max(5, len(ys) // 3 or 1)), color="tab:blue")
        ax_hist.set_xlabel("return")
        ax_hist.set_ylabel("episodes")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def format_table(summary: Mapping[str, Any], out_dir: Path) -> str:
    """A compact, human-readable table of the summary for the terminal."""
    stats = summary["returns"]
    thr = summary["throughput"]
    rows = [
        ("env", summary["env"]),
        ("policy", summary["policy"]),
    ]
    if summary.get("smoke_test"):
        rows.append(("WARNING", SMOKE_TEST_LABEL))
    rows += [
        ("episodes", f"{summary['episodes_finished']}/{summary['episodes_requested']} finished, "
                     f"{summary['crashed_attempts']} crashed attempt(s), "
                     f"{len(summary['episodes_given_up'])} given up"),
        ("return", f"mean {_fmt(stats['mean'])} ± std {_fmt(stats['std'])}  (95% CI "
                   f"{_fmt(stats['ci95'][0]) if stats['ci95'] else '-'} .. "
                   f"{_fmt(stats['ci95'][1]) if stats['ci95'] else '-'})"),
        ("", f"median {_fmt(stats['median'])}  min {_fmt(stats['min'])}  max {_fmt(stats['max'])}"),
        ("length", f"mean {_fmt(summary['mean_length'])}  outcomes "
                   + (", ".join(f"{k} {v}" for k, v in sorted(summary["outcomes"].items())) or "-")),
        ("steps/s", f"env {_fmt(thr['env_steps_per_s'])} | agent {_fmt(thr['agent_steps_per_s'])} | "
                    f"overall {_fmt(thr['overall_steps_per_s'])}"
                    + (f" = {thr['share_of_bound']:.0%} of the bound {_fmt(thr['bound_steps_per_s'])}"
                       if thr.get("share_of_bound") else "")),
    ]
    items = summary.get("item_success_rates") or {}
    if items:
        shown = sorted(items.items(), key=lambda kv: (-kv[1], kv[0]))[:12]
        rows.append(("items", ", ".join(f"{name} {rate:.0%}" for name, rate in shown)))
    session = summary.get("session") or {}
    if session.get("interrupted") or session.get("error"):
        why = "INTERRUPTED" if session.get("interrupted") else f"FAILED ({session['error'][:80]})"
        rows.append(("status", f"{why}: continue with --resume --out {out_dir}"))
    rows.append(("report", str(out_dir)))
    width = max(len(name) for name, _ in rows)
    rule = "-" * 72
    body = "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
    return f"{rule}\n{body}\n{rule}"


class Progress(RolloutListener):
    """A rollout listener showing a tqdm bar: episodes done, running mean return, crashed attempts, env steps/s."""

    def __init__(self, total: int, done_returns: List[float], enabled: bool):
        self.returns = list(done_returns)
        self.crashes = 0
        self.start = time.perf_counter()
        self.steps = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=len(self.returns), unit="ep", dynamic_ncols=True,
                            desc="episodes")
            self._postfix()

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        """Update the bar with a finished or crashed episode record."""
        if record["outcome"] == CRASHED:
            self.crashes += 1
        else:
            self.returns.append(float(record["return"]))
            self.steps += int(record["length"])
            if self.bar is not None:
                self.bar.update(1)
        self._postfix()

    def _postfix(self) -> None:
        if self.bar is None:
            return
        mean = sum(self.returns) / len(self.returns) if self.returns else float("nan")
        rate = self.steps / max(1e-9, time.perf_counter() - self.start)
        self.bar.set_postfix(mean_return=f"{mean:.3g}", crashed=self.crashes, steps_s=f"{rate:.1f}")

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
