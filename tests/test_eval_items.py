"""The report's item table (tech-tree order, Wilson intervals, public references, items.png) and its JSON safety
(NaN/Inf rewards, unique temporary files)."""
from __future__ import annotations

import errno
import json
import math
import os
import threading

import pytest

from vpt_agent.eval import report
from vpt_agent.eval.config import EvalError
from vpt_agent.eval.records import CRASHED, EpisodeTask, episode_record
from vpt_envs.protocols import TECH_TREE, get_protocol

MINERL = "vpt/MineRLHumanSurvival-v0"
ZOO_WITH_REFERENCES = "rl-from-early-game-2x"


def rec(index, ret=1.0, items=None, outcome="truncated", source="info", **extra):
    record = {"index": index, "seed": index, "attempt": 0, "outcome": outcome, "return": ret, "length": 5, **extra}
    if items is not None:
        record["items"] = items
        record["items_source"] = source
    return record


def summarise(records, **config):
    return report.build_summary(records, episodes_requested=len({r["index"] for r in records}), max_retries=2,
                                smoke_test=False, config=config, versions={}, session={})


def strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- Wilson intervals

def _wilson_by_bisection(k, n, z=report.Z95):
    """The Wilson interval as the set of p with |k/n - p| <= z sqrt(p(1-p)/n), found numerically."""
    phat = k / n

    def inside(p):
        return abs(phat - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(lo, hi):  # lo outside, hi inside (or the reverse): bisect the boundary
        for _ in range(200):
            mid = (lo + hi) / 2
            if inside(mid) == inside(hi):
                hi = mid
            else:
                lo = mid
        return hi

    low = 0.0 if k == 0 else edge(0.0, phat)
    high = 1.0 if k == n else edge(1.0, phat)
    return low, high


@pytest.mark.parametrize("k, n", [(0, 10), (5, 10), (10, 10), (1, 20), (17, 20), (3, 1500), (1499, 1500)])
def test_wilson_interval_solves_the_score_inequality(k, n):
    low, high = report.wilson_interval(k, n)
    expected = _wilson_by_bisection(k, n)
    assert low == pytest.approx(expected[0], abs=1e-9) and high == pytest.approx(expected[1], abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_interval_known_values_and_edges():
    assert report.wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert report.wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert report.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        report.wilson_interval(11, 10)


# ----------------------------------------------------------------------------- the item table

def test_minerl_run_lists_the_whole_tech_tree_in_order_over_all_finished_episodes():
    records = [rec(0, items={"log": 8, "planks": 4, "diamond": 1}),
               rec(1, items={"log": 3}),
               rec(2, items={}),  # obtained nothing
               rec(3),  # no items key at all: obtained nothing, still in the denominator
               rec(4, ret=0.0, outcome=CRASHED, error="boom", items={"diamond": 9})]  # crashes never count
    summary = summarise(records, env=MINERL)
    rows = summary["items"]["rows"]
    assert [row["item"] for row in rows] == list(TECH_TREE)
    by_item = {row["item"]: row for row in rows}
    assert (by_item["log"]["successes"], by_item["log"]["episodes"]) == (2, 4)
    assert by_item["diamond"]["rate"] == pytest.approx(0.25)
    assert by_item["iron_pickaxe"]["rate"] == 0.0 and by_item["iron_pickaxe"]["ci95"][1] > 0.3  # 0/4 is not "0"
    assert by_item["log"]["ci95"] == pytest.approx(list(report.wilson_interval(2, 4)))
    assert "Wilson" in summary["items"]["note"] and "4 finished" in summary["items"]["note"]
    # the flat per-name rates use the same denominator (every finished episode)
    assert summary["item_success_rates"]["log"] == pytest.approx(0.5)
    assert list(summary["item_success_rates"]) == ["log", "planks", "diamond"]  # tech-tree order
    assert summary["references"] == []  # not a zoo model


def test_inventory_names_count_for_their_tech_tree_group_and_other_items_follow():
    records = [rec(0, items={"birch_log": 2, "jumps": 1}, source="inventory"), rec(1, items={"dirt": 3},
                                                                                  source="inventory")]
    summary = summarise(records, env="evalenvs:evalenvs/Pov-v0")
    rows = {row["item"]: row["rate"] for row in summary["items"]["rows"]}
    assert list(rows) == ["log", "dirt", "jumps"]
    assert rows == {"log": 0.5, "dirt": 0.5, "jumps": 0.5}
    assert "inventory" in summary["items"]["note"]


def test_reported_tech_tree_items_nobody_obtained_keep_their_place():
    """An item the env reports at 0 in every episode is a result (0%), in its tech-tree place, and a group
    member reported at 0 (``oak_log``) still gives its group's row."""
    records = [rec(0, items={"diamond": 0, "log": 2, "dirt": 1, "planks": 0}), rec(1, items={"oak_log": 0})]
    summary = summarise(records, env="evalenvs:evalenvs/Pov-v0")
    rows = {row["item"]: row["rate"] for row in summary["items"]["rows"]}
    assert list(rows) == ["log", "planks", "diamond", "dirt"]
    assert rows == {"log": 0.5, "planks": 0.0, "diamond": 0.0, "dirt": 0.5}


def test_protocol_items_are_listed_even_when_nothing_was_obtained():
    summary = summarise([rec(0), rec(1)], env="vpt/VoxelTreechop-v0", protocol="voxel-treechop")
    assert [(row["item"], row["successes"]) for row in summary["items"]["rows"]] == [("log", 0)]
    assert summarise([rec(0)], env="evalenvs:evalenvs/Pov-v0")["items"] is None  # env reports no items


def test_zoo_model_with_public_results_shows_them_beside_ours(tmp_path):
    records = [rec(i, items={"wooden_pickaxe": 1, **({"diamond": 1} if i < 3 else {})}) for i in range(10)]
    summary = summarise(records, env=MINERL, zoo=ZOO_WITH_REFERENCES, policy_label="zoo")
    expected = get_protocol("vpt-rl").references_for(ZOO_WITH_REFERENCES)
    assert [ref["label"] for ref in summary["references"]] == [ref.label for ref in expected]
    assert any("1,500 episodes" in ref["label"] and "PR #14" in ref["label"] for ref in summary["references"])
    diamond = next(row for row in summary["items"]["rows"] if row["item"] == "diamond")
    assert diamond["rate"] == pytest.approx(0.3)
    assert diamond["references"] == {ref.label: ref.success_rates.get("diamond") for ref in expected}
    assert all(not ref["run_used_protocol"] for ref in summary["references"])

    table = report.format_table(summary, tmp_path)
    assert "ref[1]" in table and "14.4%" in table and "30%" in table  # PR #14 21 FPS diamond rate, ours
    assert expected[0].label in table and "did not use" in table
    lines = table.splitlines()
    starts = [line.split(" ")[0] for line in lines]
    assert starts.index("log") < starts.index("wooden_pickaxe") < starts.index("diamond")

    with_protocol = summarise(records, env=MINERL, zoo=ZOO_WITH_REFERENCES, protocol="vpt-rl")
    assert all(ref["run_used_protocol"] for ref in with_protocol["references"])
    assert "did not use" not in report.format_table(with_protocol, tmp_path)
    assert summarise(records, env=MINERL, zoo="foundation-model-1x")["references"] == []


def test_items_plot_is_a_png_and_skipped_without_items(tmp_path):
    summary = summarise([rec(i, items={"log": i}) for i in range(4)], env=MINERL, zoo=ZOO_WITH_REFERENCES)
    assert report.plot_items(summary, tmp_path / "items.png", "title") is True
    assert (tmp_path / "items.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.plot_items(summarise([rec(0)], env="x"), tmp_path / "none.png", "t") is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.png"]  # no temporary files left


# ----------------------------------------------------------------------------- NaN / Inf rewards

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nonfinite_return_is_a_crashed_attempt_written_as_strict_json(tmp_path, bad):
    record = episode_record(EpisodeTask(0, 13), "truncated", bad, 7, 0.5, 0, end={"env_time_s": float("nan")})
    assert record["outcome"] == CRASHED and record["return"] is None and "non-finite" in record["error"]
    log = report.EpisodeLog(tmp_path / "episodes.jsonl")
    log.append(record)
    log.append(rec(1, ret=2.0))
    log.close()
    for line in log.path.read_text().splitlines():
        strict_json(line)
    loaded = log.load()
    assert loaded[0]["env_time_s"] is None
    summary = summarise(loaded)
    assert summary["returns"]["n"] == 1 and summary["crashed_attempts"] == 1
    status = report.episode_status(loaded, max_retries=2)
    assert 0 not in status.done and status.attempts == {0: 1}  # --resume runs the index again


def test_a_log_with_bare_nan_from_an_older_version_still_summarises(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(rec(0, ret=1.5)) + "\n" + json.dumps(rec(1, ret=float("nan"))) + "\n"
                    + json.dumps(rec(2, ret=float("inf"), outcome=CRASHED, error="x")) + "\n")
    records = report.EpisodeLog(path).load()
    assert [r["outcome"] for r in records] == ["truncated", CRASHED, CRASHED]
    summary = summarise(records)
    assert summary["returns"]["mean"] == 1.5
    report.write_json_atomic(tmp_path / "summary.json", {**summary, "odd": [float("nan"), {"x": float("inf")}]})
    data = strict_json((tmp_path / "summary.json").read_text())
    assert data["odd"] == [None, {"x": None}]


# ----------------------------------------------------------------------------- the log and atomic writes

@pytest.mark.parametrize("line", ['{"index": 1, "outcome": "truncated", "length": 3}',  # no return
                                  '{"index": -1, "outcome": "truncated", "return": 1, "length": 3}',
                                  '{"index": 1, "outcome": "won", "return": 1, "length": 3}',
                                  '[1, 2]'])
def test_a_middle_line_that_is_json_but_not_a_record_is_a_one_line_error(tmp_path, line):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n" + line + "\n" + json.dumps(rec(2)) + "\n")
    with pytest.raises(EvalError, match="line 2") as exc:
        report.EpisodeLog(path).load()
    assert "\n" not in str(exc.value)


def test_load_without_repair_writes_nothing(tmp_path):
    path = tmp_path / "episodes.jsonl"
    content = json.dumps(rec(0)) + "\n" + '{"index": 1, "se'
    path.write_text(content)
    assert len(report.EpisodeLog(path).load(repair=False)) == 1
    assert path.read_text() == content
    assert len(report.EpisodeLog(path).load()) == 1
    assert path.read_text() == json.dumps(rec(0)) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.jsonl"]


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    report.write_json_atomic(target, {"v": 1})

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        report.write_json_atomic(target, {"v": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "run.json"
    errors = []

    def write(i):
        try:
            for j in range(30):
                report.write_json_atomic(target, {"writer": i, "j": j, "pad": "x" * 5000})
        except Exception as err:  # the old fixed ".tmp" name made writers collide here
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(target.read_text())["j"] == 29
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))
