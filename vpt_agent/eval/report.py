"""Evaluation report: the episode log, return statistics, item success rates, plots and table.

The episode log (``episodes.jsonl``) is the source of truth of an evaluation run: one JSON object
per finished episode attempt, appended, flushed and fsync'd as soon as the episode ends. Everything
else (``summary.json``, ``returns.png``, the printed table) is derived from it, so a summary can be
rebuilt at any time, including after a crash or a kill.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..atomic import atomic_path
from .config import EvalError, registered_id
from .records import CRASHED, OUTCOMES, EpisodeRecord, EpisodeTask, is_finite_number, nonfinite_as_crash
from .rollout import RolloutListener

logger = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
PLOT_FILE = "returns.png"
ITEMS_PLOT_FILE = "items.png"
SMOKE_TEST_LABEL = "SMOKE TEST: random (untrained) weights, not a real evaluation"

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def record_problem(record: Any) -> Optional[str]:
    """Why ``record`` (one parsed line of ``episodes.jsonl``) is not a usable episode record, or ``None``."""
    if not isinstance(record, dict):
        return "not a JSON object"
    index = record.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return f"'index' must be an integer >= 0, got {index!r}"
    if record.get("outcome") not in OUTCOMES:
        return f"'outcome' must be one of {', '.join(OUTCOMES)}, got {record.get('outcome')!r}"
    value = record.get("return")
    if not (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
        return f"'return' must be a number, got {value!r}"
    if value is None and record["outcome"] != CRASHED:
        return "'return' is missing"
    length = record.get("length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        return f"'length' must be an integer >= 0, got {length!r}"
    if "items" in record and not isinstance(record["items"], dict):
        return "'items' must be an object"
    return None


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/Inf float replaced by ``None`` (JSON has no NaN) and numpy scalars made Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        return json_safe(value.item())  # a numpy scalar or 0-d array
    return value


class EpisodeLog:
    """Append-only JSON-lines log of finished episodes that survives kills.

    Every :meth:`append` writes one complete line, then flushes and fsyncs, so a line on disk is
    either complete or (if the process died mid-write) the truncated last line, which
    :meth:`load` detects, logs and removes.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def load(self, repair: bool = True) -> List[EpisodeRecord]:
        """Read all records; a truncated last line (an interrupted write) is logged and dropped.

        With ``repair`` (only while holding the run directory's lock) the file itself is fixed: the truncated line
        removed, a missing final newline added. A line anywhere else that is not a valid episode record means the
        file was edited or damaged by something other than an interrupted write: :class:`EvalError` (a
        ``ValueError``) naming the line, instead of silently losing data. A record with a NaN/Inf return (written
        by an older version) is read as a crashed attempt (:func:`~vpt_agent.eval.records.nonfinite_as_crash`).
        """
        if not self.path.exists():
            return []
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            raise EvalError(f"{self.path}: cannot read: {err.strerror or err}") from None
        lines = raw.split(b"\n")
        records: List[EpisodeRecord] = []
        good_bytes = 0
        last_content = max((i for i, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                good_bytes += len(line) + 1
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number != last_content:
                    raise EvalError(f"{self.path}: line {number} is not valid JSON and is not the last line; "
                                    "refusing to guess (fix or remove that line)") from None
                if repair:  # only then is anything dropped from the file: say so
                    logger.warning("%s: dropping corrupt last line %d (%d bytes, an interrupted write)",
                                   self.path, number, len(line))
                    self._truncate(raw[:good_bytes])
                return records
            problem = record_problem(record)
            if problem:
                raise EvalError(f"{self.path}: line {number} is not a valid episode record ({problem}); "
                                "refusing to guess (fix or remove that line)")
            records.append(nonfinite_as_crash(record))
            good_bytes += len(line) + 1
        if repair and raw and not raw.endswith(b"\n"):
            # Last record is valid JSON but lacks its newline: complete it so appends stay aligned.
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def _truncate(self, data: bytes) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(data)

    def append(self, record: EpisodeRecord) -> None:
        """Append one record as a line, fsync'd before returning.

        If the write fails (disk full, a file-size limit), the partial line is cut off again before the error
        propagates, so the log on disk stays a sequence of complete records.
        """
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab", buffering=0)  # unbuffered: a failed write is seen here, not at close
        line = json.dumps(json_safe(nonfinite_as_crash(record)), allow_nan=False) + "\n"  # strict JSON, one line
        data = memoryview(line.encode("utf-8"))
        start = os.fstat(self._fh.fileno()).st_size
        try:
            while data:
                data = data[self._fh.write(data):]
            os.fsync(self._fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fh.fileno(), start)
            raise

    def close(self) -> None:
        """Close the file handle (appending again reopens it)."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()


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


Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def t_quantile_975(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95  # Cornish-Fisher expansion around the normal quantile
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


def wilson_interval(successes: int, n: int, z: float = Z95) -> Optional[Tuple[float, float]]:
    """Wilson score interval of a binomial proportion (95% by default); ``None`` when ``n == 0``.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes, which is
    where the interesting tech-tree items (diamonds) live.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges (no rounding to 0.9999...)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _count(value: Any) -> float:
    return float(value) if is_finite_number(value) else 0.0


def _reports_items(records: Sequence[EpisodeRecord]) -> bool:
    """Whether the env reports items at all (some finished episode carries an ``items`` object)."""
    return any(isinstance(r.get("items"), dict) for r in records)


def _tree_order(names: Iterable[str]) -> List[str]:
    """Names in tech-tree order (``vpt_envs.protocols.TECH_TREE``), the others after them by name."""
    tree = _tech_tree()
    rank = {name: i for i, name in enumerate(tree)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(tree)), name))


def item_success_rates(records: Sequence[EpisodeRecord]) -> Dict[str, float]:
    """Share of finished episodes in which each reported item name was obtained (count > 0), tech-tree first.

    The denominator is every finished episode (an episode that obtained nothing may carry no ``items``), as long
    as the env reports items at all; otherwise the result is empty.
    """
    if not records or not _reports_items(records):
        return {}
    names = {name for r in records if isinstance(r.get("items"), dict) for name in r["items"]}
    return {name: sum(1 for r in records if _count((r.get("items") or {}).get(name)) > 0) / len(records)
            for name in _tree_order(names)}


def _tech_tree() -> Tuple[str, ...]:
    try:
        from vpt_envs.protocols import TECH_TREE
    except ImportError:  # the env package is part of this distribution; be robust anyway
        return ()
    return TECH_TREE


def _item_groups() -> Mapping[str, Tuple[str, ...]]:
    try:
        from vpt_envs.rewards import ITEM_GROUPS
    except ImportError:
        return {}
    return ITEM_GROUPS


def obtained(items: Mapping[str, Any], name: str) -> bool:
    """Whether an episode's ``items`` show ``name`` obtained: the name itself, or any member of its group
    (``"log"`` = any of the six ``*_log`` items when counts come from the inventory)."""
    members = (name, *_item_groups().get(name, ()))
    return any(_count(items.get(member)) > 0 for member in members)


def _protocol(name: Optional[str]):
    if not name:
        return None
    try:
        from vpt_envs.protocols import get_protocol

        return get_protocol(name)
    except (ImportError, ValueError):
        return None


def _is_minerl_env(env_id: Optional[str]) -> bool:
    try:
        from vpt_envs.minerl import MINERL_ENVS
    except ImportError:
        return False
    bare = registered_id(env_id)
    return bare.startswith("vpt/") and bare.removeprefix("vpt/") in MINERL_ENVS


def report_items(records: Sequence[EpisodeRecord], config: Mapping[str, Any]) -> Tuple[List[str], str]:
    """The items the report's table lists, and why: the protocol's items (``config["protocol"]``), the whole tech
    tree for MineRL envs, else the tech-tree items (groups resolved) then the other item names the env reported."""
    protocol = _protocol(config.get("protocol"))
    if protocol is not None:
        return list(protocol.items), f"the items of protocol {protocol.name}, tech-tree order"
    if _is_minerl_env(config.get("env")):
        return list(_tech_tree()), "VPT's tech tree (vpt_envs.protocols.TECH_TREE)"
    reported = {name for r in records if isinstance(r.get("items"), dict) for name in r["items"]}
    groups = _item_groups()
    grouped = {member for members in groups.values() for member in members}
    # a reported item no episode obtained is a result too (0%): listed in its tech-tree place
    tree = [name for name in _tech_tree() if name in reported or any(m in reported for m in groups.get(name, ()))]
    others = sorted(reported - set(tree) - grouped)
    return tree + others, "items the env reported: tech-tree items first (in its order), then the others by name"


def reference_results(config: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Public results for the run's zoo model (``config["zoo"]``), from ``vpt_envs.protocols``.

    With ``config["protocol"]``, that protocol's references; without one, those of every protocol played in the
    run's env (each marked with its protocol, so the table can say the run did not use it).
    """
    model = config.get("zoo")
    if not model:
        return []
    try:
        from vpt_envs.protocols import PROTOCOLS
    except ImportError:
        return []
    chosen = config.get("protocol")
    candidates = ([PROTOCOLS[chosen]] if chosen in PROTOCOLS else
                  [p for p in PROTOCOLS.values() if registered_id(p.env_id) == registered_id(config.get("env"))])
    out: List[Dict[str, Any]] = []
    seen = set()
    for protocol in candidates:
        for ref in protocol.references_for(model):
            if ref.source in seen:
                continue
            seen.add(ref.source)
            out.append({"label": ref.label, "source": ref.source, "url": ref.url, "model": ref.model,
                        "episodes": ref.episodes, "episodes_approx": ref.episodes_approx,
                        "approx_rates": ref.approx_rates, "conditions": ref.conditions,
                        "protocol": protocol.name, "run_used_protocol": chosen == protocol.name,
                        "success_rates": dict(ref.success_rates)})
    return out


def item_table(records: Sequence[EpisodeRecord], items: Sequence[str],
               references: Sequence[Mapping[str, Any]] = ()) -> List[Dict[str, Any]]:
    """One row per item: successes (finished episodes that obtained it at least once), n, rate, Wilson 95% CI,
    and the reference rate of each reference that reports the item (by label; ``None`` where it does not)."""
    n = len(records)
    rows = []
    for name in items:
        k = sum(1 for r in records if obtained(r.get("items") or {}, name))
        ci = wilson_interval(k, n)
        rows.append({"item": name, "successes": k, "episodes": n, "rate": k / n if n else None,
                     "ci95": list(ci) if ci else None,
                     "references": {ref["label"]: ref["success_rates"].get(name) for ref in references}})
    return rows


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


def requested(records: Iterable[EpisodeRecord], episodes: int) -> List[EpisodeRecord]:
    """The records of episodes 0..N-1 (a run resumed with a smaller ``--episodes`` keeps the others on disk,
    outside its statistics)."""
    return [r for r in records if int(r["index"]) < episodes]


def build_summary(records: Sequence[EpisodeRecord], *, episodes_requested: int, max_retries: int,
                  smoke_test: bool, config: Mapping[str, Any], versions: Mapping[str, Optional[str]],
                  session: Mapping[str, Any]) -> Dict[str, Any]:
    """Summarise the log: statistics over finished (non-crashed) episodes with index < N.

    Crashed attempts are counted separately and never enter the statistics.
    """
    in_range = requested(records, episodes_requested)
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
        "protocol": _protocol_section(config),
        "item_success_rates": item_success_rates(finished),
        **item_section(finished, config),
        "mean_length": (steps / len(finished)) if finished else None,
        "throughput": throughput(finished, session),
        "session": dict(session),
        "config": dict(config),
        "versions": dict(versions),
    }
    return summary


def _protocol_section(config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    if not config.get("protocol"):
        return None
    from .protocol import protocol_section

    try:
        return protocol_section(config)
    except EvalError as err:  # an unknown name in an old run's config: say so instead of failing the summary
        return {"name": config["protocol"], "note": str(err), "comparable": False, "overridden": []}


def item_section(finished: Sequence[EpisodeRecord], config: Mapping[str, Any]) -> Dict[str, Any]:
    """The summary's item keys: ``items`` (the per-item table, see :func:`item_table`) and ``references``.

    ``items`` is ``None`` when the env reports no items. ``items.note`` says which items are listed and where the
    counts come from.
    """
    references = reference_results(config)
    listed = _protocol(config.get("protocol")) is not None or _is_minerl_env(config.get("env"))
    if not finished or not (listed or _reports_items(finished)):
        return {"items": None, "references": references}
    names, why = report_items(finished, config)
    sources = sorted({str(r.get("items_source")) for r in finished if r.get("items_source")})
    how = {"info": "the env's info['items'] (units obtained)",
           "inventory": "the largest inventory count seen (items held at the start count too)"}
    note = (f"share of the {len(finished)} finished episodes that obtained each item at least once, with Wilson "
            f"95% intervals; {why}; counts from " + (" and ".join(how.get(s, s) for s in sources) or "the env"))
    return {"items": {"note": note, "rows": item_table(finished, names, references)}, "references": references}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (NaN/Inf as ``null``) via a unique temporary file and a rename, so readers
    never see half a file and a failed write leaves no temporary file behind."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


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
        _save_png(fig, path)
    finally:
        plt.close(fig)


def _save_png(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _pct(value: Optional[float]) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.1f}".rstrip("0").rstrip(".")
    return f"{text}%"


def plot_items(summary: Mapping[str, Any], path: Path, title: str) -> bool:
    """Save the per-item success rates (bars, Wilson 95% intervals) with the reference rates as markers.

    Returns False (and writes nothing) when the summary has no item table.
    """
    section = summary.get("items")
    if not section or not section.get("rows"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = section["rows"]
    refs = summary.get("references") or []
    ys = list(range(len(rows)))[::-1]  # the first item on top
    rates = [100 * (row["rate"] or 0.0) for row in rows]
    lows = [rate - 100 * (row["ci95"] or [0, 0])[0] for rate, row in zip(rates, rows)]
    highs = [100 * (row["ci95"] or [0, 0])[1] - rate for rate, row in zip(rates, rows)]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(rows)))
    try:
        n = rows[0]["episodes"]
        ax.barh(ys, rates, xerr=[lows, highs], color="tab:blue", alpha=0.8, capsize=2,
                label=f"this run (n={n}, Wilson 95% CI)")
        for j, ref in enumerate(refs):
            points = [(100 * ref["success_rates"][row["item"]], y) for row, y in zip(rows, ys)
                      if ref["success_rates"].get(row["item"]) is not None]
            if points:
                ax.plot([x for x, _ in points], [y for _, y in points], "os^Dv"[j % 5], color=f"C{j + 1}",
                        markersize=6, linestyle="none", label=ref["label"][:90])
        ax.set_yticks(ys)
        ax.set_yticklabels([row["item"] for row in rows], fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel("episodes that obtained the item at least once (%)")
        stats = summary.get("returns") or {}
        if stats.get("mean") is not None and stats.get("ci95"):
            title += f" | mean return {stats['mean']:.3g} [{stats['ci95'][0]:.3g}, {stats['ci95'][1]:.3g}]"
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.5 / (1 + 0.3 * len(rows))))
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return True


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
    protocol = summary.get("protocol")
    if protocol:
        rows.append(("protocol", protocol["note"]))
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
    section = summary.get("items")
    if not section:
        items = summary.get("item_success_rates") or {}
        if items:
            rows.append(("items", ", ".join(f"{name} {rate:.0%}" for name, rate in list(items.items())[:12])))
    session = summary.get("session") or {}
    if session.get("interrupted") or session.get("error"):
        why = "INTERRUPTED" if session.get("interrupted") else f"FAILED ({session['error'][:80]})"
        rows.append(("status", f"{why}: continue with --resume --out {out_dir}"))
    rows.append(("report", str(out_dir)))
    width = max(len(name) for name, _ in rows)
    rule = "-" * 72
    body = "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
    items = format_item_table(summary)
    return f"{rule}\n{body}\n{rule}" + (f"\n{items}\n{rule}" if items else "")


def format_item_table(summary: Mapping[str, Any]) -> str:
    """The per-item success table (ours with its Wilson 95% CI, then one column per reference, legend below)."""
    section = summary.get("items")
    if not section or not section.get("rows"):
        return ""
    refs = summary.get("references") or []
    width = max(len("item"), *(len(row["item"]) for row in section["rows"]))
    head = f"{'item':<{width}}  {'ours':>6}  {'95% CI':<15}" + "".join(f"  {f'ref[{j + 1}]':>7}"
                                                                    for j in range(len(refs)))
    lines = [f"items: {section['note']}", head]
    for row in section["rows"]:
        ci = row["ci95"]
        interval = f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "-"
        cells = "".join(f"  {_pct(row['references'].get(ref['label'])):>7}" for ref in refs)
        lines.append(f"{row['item']:<{width}}  {_pct(row['rate']):>6}  {interval:<15}{cells}")
    for j, ref in enumerate(refs):
        notes = []
        if ref.get("approx_rates"):
            notes.append("rates as worded, approximate")
        if not ref.get("run_used_protocol"):
            notes.append(f"measured under protocol {ref['protocol']}, which this run did not use")
        lines.append(f"ref[{j + 1}] {ref['label']}" + (f" ({'; '.join(notes)})" if notes else ""))
    return "\n".join(lines)


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
