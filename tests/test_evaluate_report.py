"""Unit tests of the evaluation report: the crash-safe episode log, statistics, plot and table."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vpt_agent.eval import report


def _records(returns, crashed=()):
    out = [{"index": i, "seed": 10 + i, "attempt": 0, "outcome": "truncated", "return": r, "length": 5,
            "env_time_s": 0.01, "items": {"oak_log": int(r > 1), "dirt": 1}} for i, r in enumerate(returns)]
    for index in crashed:
        out.append({"index": index, "seed": 10 + index, "attempt": 0, "outcome": "crashed", "return": 0.0,
                    "length": 2, "error": "boom"})
    return out


def test_log_roundtrip_and_truncated_last_line_is_dropped(tmp_path, caplog):
    log = report.EpisodeLog(tmp_path / "episodes.jsonl")
    for rec in _records([1.0, 2.0]):
        log.append(rec)
    log.close()
    with open(log.path, "ab") as fh:
        fh.write(b'{"index": 2, "seed": 12, "ret')  # killed mid-write
    with caplog.at_level("WARNING"):
        records = log.load()
    assert [r["index"] for r in records] == [0, 1]
    assert "corrupt last line" in caplog.text
    # The file was rewritten without the broken line: appending continues cleanly.
    log.append(_records([0, 0, 5.0])[2])
    log.close()
    assert [r["index"] for r in log.load()] == [0, 1, 2]
    assert all(json.loads(line) for line in log.path.read_text().splitlines())


def test_log_missing_newline_on_valid_last_line_is_repaired(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_records([1.0])[0]))  # complete JSON, newline not yet written
    log = report.EpisodeLog(path)
    assert len(log.load()) == 1
    log.append(_records([1.0, 2.0])[1])
    log.close()
    assert [r["index"] for r in log.load()] == [0, 1]


def test_log_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "episodes.jsonl"
    lines = [json.dumps(r) for r in _records([1.0, 2.0])]
    path.write_text(lines[0] + "\n{garbage\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="line 2"):
        report.EpisodeLog(path).load()


def test_return_stats_match_numpy():
    returns = [3.0, 1.5, 4.0, 0.0, 2.5, 7.25]
    stats = report.return_stats(returns)
    arr = np.array(returns)
    assert stats["n"] == 6
    assert stats["mean"] == pytest.approx(arr.mean())
    assert stats["std"] == pytest.approx(arr.std(ddof=1))
    assert stats["median"] == pytest.approx(np.median(arr))
    assert (stats["min"], stats["max"]) == (0.0, 7.25)
    half = 2.571 * arr.std(ddof=1) / math.sqrt(6)  # t(0.975, df=5)
    assert stats["ci95"] == pytest.approx([arr.mean() - half, arr.mean() + half])
    assert report.return_stats([])["mean"] is None
    assert report.return_stats([2.0])["ci95"] == [2.0, 2.0]


def test_t_quantile_large_df_tends_to_normal():
    assert report.t_quantile_975(30) == pytest.approx(2.042)
    assert report.t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)
    assert report.t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    assert report.t_quantile_975(100000) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError):
        report.t_quantile_975(0)


def test_summary_excludes_crashes_and_counts_them():
    records = _records([1.0, 2.0, 4.0], crashed=[1, 3, 3])
    summary = report.build_summary(records, episodes_requested=4, max_retries=1, smoke_test=False,
                                   config={"env": "e"}, versions={}, session={})
    assert summary["returns"]["n"] == 3
    assert summary["returns"]["mean"] == pytest.approx(7 / 3)
    assert summary["crashed_attempts"] == 3
    assert summary["episodes_given_up"] == [3]  # 2 crashes > max_retries=1
    assert summary["complete"] is True
    assert summary["item_success_rates"] == {"dirt": 1.0, "oak_log": pytest.approx(2 / 3)}
    assert summary["smoke_test"] is False


def test_episode_status_keeps_first_success_and_counts_attempts():
    records = _records([1.0]) + _records([9.0]) + _records([], crashed=[2])
    status = report.episode_status(records, max_retries=2)
    assert status.done[0]["return"] == 1.0
    assert status.attempts == {2: 1} and status.gave_up == {}


def test_plot_is_png_and_table_mentions_smoke_test(tmp_path):
    records = _records([1.0, 2.0, 0.5], crashed=[1])
    report.plot_returns(records, tmp_path / "returns.png", "title")
    assert (tmp_path / "returns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = report.build_summary(records, episodes_requested=3, max_retries=2, smoke_test=True,
                                   config={"env": "e", "policy_label": "p"}, versions={}, session={})
    table = report.format_table(summary, tmp_path)
    assert "SMOKE TEST" in table and summary["smoke_test"] is True and "warning" in summary
    assert "3/3 finished" in table and "1 crashed" in table and "INTERRUPTED" not in table
    summary["session"] = {"interrupted": True}
    assert "INTERRUPTED" in report.format_table(summary, tmp_path)
