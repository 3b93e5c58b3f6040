"""End-to-end tests of ``python -m vpt_agent.evaluate`` with the golden small model.

The embedded env (``vpt/VoxelTreechop-v0``) is used for the main runs; ``tests/evalenvs.py`` provides a
cheap deterministic env that can crash on purpose (raise, process exit, hang) for the fault tests.
"""
from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_MODEL, SMALL_WEIGHTS
from evalenvs import POV_ENV
from vpt_agent.eval import report
from vpt_agent.eval.records import CRASHED
from vpt_agent.evaluate import EMBEDDED_ENV, EvalConfig, EvalError, default_env, evaluate, main

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SEED = 100


def make_config(out: Path, **overrides) -> EvalConfig:
    settings = dict(model=str(SMALL_MODEL), weights=str(SMALL_WEIGHTS), device="cpu", deterministic=True,
                    seed=SEED, out=str(out), progress=False, print_table=False, env=EMBEDDED_ENV, max_steps=10)
    settings.update(overrides)
    return EvalConfig(**settings)


def records(out: Path) -> list:
    return [json.loads(line) for line in (out / report.EPISODES_FILE).read_text().splitlines() if line.strip()]


def finished(out: Path) -> dict:
    """index -> the record of its finished (non-crashed) episode; asserts no index finished twice."""
    done = {}
    for rec in records(out):
        if rec["outcome"] != CRASHED:
            assert rec["index"] not in done, f"episode {rec['index']} recorded twice"
            done[rec["index"]] = rec
    return done


def assert_summary_matches_log(out: Path, summary: dict) -> None:
    """Recompute the summary's statistics from episodes.jsonl."""
    done = finished(out)
    returns = [done[i]["return"] for i in sorted(done)]
    assert json.loads((out / report.SUMMARY_FILE).read_text()) == json.loads(json.dumps(summary))
    stats = summary["returns"]
    n = len(returns)
    assert stats["n"] == n == summary["episodes_finished"]
    assert stats["mean"] == pytest.approx(statistics.fmean(returns))
    assert stats["median"] == pytest.approx(statistics.median(returns))
    assert (stats["min"], stats["max"]) == (min(returns), max(returns))
    if n > 1:
        std = statistics.stdev(returns)
        half = report.t_quantile_975(n - 1) * std / math.sqrt(n)
        assert stats["std"] == pytest.approx(std)
        assert stats["ci95"] == pytest.approx([stats["mean"] - half, stats["mean"] + half])
    assert summary["crashed_attempts"] == sum(r["outcome"] == CRASHED for r in records(out))
    assert summary["mean_length"] == pytest.approx(statistics.fmean(r["length"] for r in done.values()))
    for item, rate in summary["item_success_rates"].items():
        assert rate == pytest.approx(sum(r.get("items", {}).get(item, 0) > 0 for r in done.values()) / n)
    assert (out / report.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vpt_agent.evaluate", *args], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def cli_args(out: Path, episodes: int, env: str = EMBEDDED_ENV, *extra: str) -> list:
    return ["--model", str(SMALL_MODEL), "--weights", str(SMALL_WEIGHTS), "--env", env, "--device", "cpu",
            "--deterministic", "--seed", str(SEED), "--episodes", str(episodes), "--out", str(out),
            "--no-progress", *extra]


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len([line for line in path.read_text().splitlines() if line.strip()]) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{path} did not reach {n} lines in {timeout}s")


# ----------------------------------------------------------------------------- main runs

def test_exact_episode_count_with_k_envs_and_consistent_report(tmp_path):
    out = tmp_path / "run"
    summary = evaluate(make_config(out, episodes=5, num_envs=2))
    done = finished(out)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert len(records(out)) == 5
    assert all(done[i]["seed"] == SEED + i for i in done)
    assert all(0 < done[i]["length"] <= 10 and done[i]["outcome"] in ("terminated", "truncated") for i in done)
    assert {rec["worker"] for rec in done.values()} == {0, 1}  # both envs were used

    assert_summary_matches_log(out, summary)
    returns = [done[i]["return"] for i in range(5)]
    on_disk = json.loads((out / report.SUMMARY_FILE).read_text())
    assert on_disk == json.loads(json.dumps(summary))
    stats = summary["returns"]
    assert stats["n"] == 5 and summary["episodes_finished"] == 5 and summary["complete"]
    assert stats["mean"] == pytest.approx(statistics.fmean(returns))
    assert stats["std"] == pytest.approx(statistics.stdev(returns))
    assert stats["median"] == pytest.approx(statistics.median(returns))
    assert (stats["min"], stats["max"]) == (min(returns), max(returns))
    half = 2.776 * statistics.stdev(returns) / math.sqrt(5)
    assert stats["ci95"] == pytest.approx([stats["mean"] - half, stats["mean"] + half])
    assert summary["crashed_attempts"] == 0 and summary["smoke_test"] is False
    assert summary["env"] == EMBEDDED_ENV and "embedded" in summary["env_note"]
    assert summary["mean_length"] == pytest.approx(statistics.fmean(r["length"] for r in done.values()))
    for item, rate in summary["item_success_rates"].items():
        assert rate == pytest.approx(sum(r.get("items", {}).get(item, 0) > 0 for r in done.values()) / 5)
    thr = summary["throughput"]
    assert thr["env_steps_per_s"] > 0 and thr["agent_steps_per_s"] > 0
    assert thr["bound_steps_per_s"] == pytest.approx(min(2 * thr["env_steps_per_s"], thr["agent_steps_per_s"]))
    assert thr["share_of_bound"] == pytest.approx(thr["overall_steps_per_s"] / thr["bound_steps_per_s"])
    assert summary["session"]["group_sizes"] == [2]  # on a CPU the default is lock-step (--pipeline 1)
    assert summary["config"]["num_envs"] == 2 and summary["versions"]["torch"]
    assert (out / report.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


DET_ENV = dict(env=POV_ENV, env_kwargs={"length": 4, "length_jitter": 3}, max_steps=None, episodes=4)


def returns_and_lengths(out: Path) -> dict:
    return {i: (r["return"], r["length"]) for i, r in finished(out).items()}


def test_deterministic_returns_same_for_any_k_and_pipelining(tmp_path):
    """Per-env memory is independent (first[i] at each episode start), so neither K nor the pipelined groups
    (each with its own memory) change results: K=1, K=4 lock-step and K=4 in two groups agree."""
    k1 = evaluate(make_config(tmp_path / "k1", num_envs=1, **DET_ENV))
    k4 = evaluate(make_config(tmp_path / "k4", num_envs=4, pipeline=1, **DET_ENV))
    piped = evaluate(make_config(tmp_path / "k4g2", num_envs=4, pipeline=2, **DET_ENV))
    reference = returns_and_lengths(tmp_path / "k1")
    assert sorted(reference) == list(range(4))
    assert len({length for _, length in reference.values()}) > 1  # episodes end at different steps
    assert len({ret for ret, _ in reference.values()}) == 4  # returns depend on the actions
    assert returns_and_lengths(tmp_path / "k4") == reference
    assert returns_and_lengths(tmp_path / "k4g2") == reference
    assert [s["session"]["group_sizes"] for s in (k1, k4, piped)] == [[1], [4], [2, 2]]


def test_ray_backend_gives_same_returns_and_survives_actor_death(tmp_path):
    ray = pytest.importorskip("ray")  # an optional extra: pip install 'vpt-agent[ray]'
    evaluate(make_config(tmp_path / "local", num_envs=1, **DET_ENV))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}})
    try:
        remote = evaluate(make_config(tmp_path / "ray", num_envs=2, backend="ray", **DET_ENV))
        # an actor whose process dies is replaced and its episode retried with the same seed
        crashy = evaluate(make_config(tmp_path / "ray-crash", env=POV_ENV, episodes=2, num_envs=2, backend="ray",
                                      max_steps=None, env_kwargs=dict(length=4, crash_mode="exit", crash_seeds=[SEED],
                                                                      crash_dir=str(tmp_path / "marks"))))
    finally:
        ray.shutdown()
    assert returns_and_lengths(tmp_path / "ray") == returns_and_lengths(tmp_path / "local")
    assert remote["session"]["backend"] == "ray"
    assert crashy["returns"]["n"] == 2 and crashy["crashed_attempts"] == 1
    crashed = [r for r in records(tmp_path / "ray-crash") if r["outcome"] == CRASHED]
    assert crashed[0]["index"] == 0 and "died" in crashed[0]["error"]
    assert finished(tmp_path / "ray-crash")[0]["seed"] == SEED


def test_resume_after_sigterm_has_no_duplicates_or_gaps(tmp_path):
    out = tmp_path / "run"
    slow = {"length": 10, "step_delay": 0.05}  # >= 0.5 s per episode, so SIGTERM lands mid-run
    proc = cli(*cli_args(out, 6, POV_ENV, "--num-envs", "2", "--env-kwargs", json.dumps(slow)))
    wait_for_lines(out / report.EPISODES_FILE, 2, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr and "INTERRUPTED" in stdout
    before = finished(out)
    assert 2 <= len(before) < 6
    summary = json.loads((out / report.SUMMARY_FILE).read_text())  # summary of what finished
    assert summary["episodes_finished"] == len(before) and summary["complete"] is False
    assert summary["session"]["interrupted"] is True

    resumed = evaluate(make_config(out, env=POV_ENV, env_kwargs=slow, max_steps=None, episodes=6, num_envs=2,
                                   resume=True))
    after = finished(out)
    assert sorted(after) == list(range(6))
    assert all(after[i] == before[i] for i in before)  # earlier episodes untouched
    assert resumed["returns"]["n"] == 6 and resumed["complete"] and resumed["session"]["resumed"]
    assert_summary_matches_log(out, resumed)


def test_resume_after_sigkill_with_truncated_last_line(tmp_path, caplog):
    out = tmp_path / "run"
    proc = cli(*cli_args(out, 4, EMBEDDED_ENV, "--num-envs", "2", "--max-steps", "10"))
    wait_for_lines(out / report.EPISODES_FILE, 1, proc)
    proc.kill()
    proc.communicate(timeout=30)
    with open(out / report.EPISODES_FILE, "ab") as fh:  # as if the kill landed in the middle of a line
        fh.write(b'{"index": 3, "seed": 103, "attempt": 0, "outcome": "trunc')
    with caplog.at_level("WARNING"):
        summary = evaluate(make_config(out, episodes=4, num_envs=2, resume=True))
    assert "corrupt last line" in caplog.text
    done = finished(out)
    assert sorted(done) == list(range(4)) and summary["returns"]["n"] == 4
    assert all(done[i]["seed"] == SEED + i for i in done)
    assert_summary_matches_log(out, summary)


@pytest.mark.parametrize("mode", ["raise", "exit", "hang"])
def test_crashing_env_is_recreated_and_episode_retried_with_same_seed(tmp_path, mode):
    out = tmp_path / "run"
    kwargs = dict(length=5, crash_mode=mode, crash_at=2, crash_seeds=[SEED + 1], crash_dir=str(tmp_path / "marks"))
    summary = evaluate(make_config(out, env=POV_ENV, env_kwargs=kwargs, max_steps=None, episodes=2, num_envs=2,
                                   step_timeout=4.0))
    crashed = [r for r in records(out) if r["outcome"] == CRASHED]
    assert len(crashed) == 1
    assert crashed[0]["index"] == 1 and crashed[0]["seed"] == SEED + 1 and crashed[0]["will_retry"] is True
    assert crashed[0]["length"] == 2
    expected = {"raise": "crashed on purpose", "exit": "died", "hang": "hung"}[mode]
    assert expected in crashed[0]["error"]
    done = finished(out)
    assert sorted(done) == [0, 1] and done[1]["attempt"] == 1 and done[1]["seed"] == SEED + 1
    assert done[1]["length"] == 5
    assert summary["returns"]["n"] == 2 and summary["crashed_attempts"] == 1
    assert_summary_matches_log(out, summary)
    assert summary["item_success_rates"]  # evalenvs reports info["items"]


def test_retries_exhausted_episode_is_counted_not_dropped(tmp_path):
    out = tmp_path / "run"
    kwargs = dict(length=4, crash_mode="raise", crash_at=1, crash_seeds=[SEED])
    summary = evaluate(make_config(out, env=POV_ENV, env_kwargs=kwargs, max_steps=None, episodes=2,
                                   max_retries=1))
    crashed = [r for r in records(out) if r["outcome"] == CRASHED]
    assert [(r["index"], r["attempt"], r["will_retry"]) for r in crashed] == [(0, 0, True), (0, 1, False)]
    assert sorted(finished(out)) == [1]
    assert summary["episodes_given_up"] == [0] and summary["crashed_attempts"] == 2
    assert summary["returns"]["n"] == 1 and summary["complete"] is True
    # resuming a finished run runs nothing more and does not retry the given-up episode
    again = evaluate(make_config(out, env=POV_ENV, env_kwargs=kwargs, max_steps=None, episodes=2,
                                 max_retries=1, resume=True))
    assert len(records(out)) == 3 and again["returns"] == summary["returns"]


# ----------------------------------------------------------------------------- labels, video, errors

def test_random_weights_are_labelled_everywhere(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["--model", str(SMALL_MODEL), "--weights", "random", "--env", POV_ENV, "--env-kwargs",
                 '{"length": 3}', "--episodes", "2", "--device", "cpu", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "SMOKE TEST" in capsys.readouterr().out
    summary = json.loads((out / report.SUMMARY_FILE).read_text())
    assert summary["smoke_test"] is True and "SMOKE TEST" in summary["warning"]
    assert "RANDOM" in summary["policy"]
    assert [r["smoke_test"] for r in records(out)] == [True, True]


def test_video_of_first_episodes(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "run"
    evaluate(make_config(out, env=POV_ENV, env_kwargs={"length": 4}, max_steps=None, episodes=2, video=1))
    videos = sorted((out / "videos").iterdir())
    assert [v.name for v in videos] == ["episode_00000.mp4"]
    assert videos[0].read_bytes()[4:8] == b"ftyp"
    import imageio.v2 as imageio

    with imageio.get_reader(videos[0]) as reader:  # full-size frames, not the model's 128x128 input
        assert reader.get_data(0).shape == (72, 128, 3) and reader.count_frames() == 5


def test_resume_with_different_settings_is_refused(tmp_path):
    out = tmp_path / "run"
    cfg = dict(env=POV_ENV, env_kwargs={"length": 2}, max_steps=None, episodes=1)
    evaluate(make_config(out, **cfg))
    with pytest.raises(EvalError, match="seed"):
        evaluate(make_config(out, **{**cfg, "seed": SEED + 1}, resume=True))
    with pytest.raises(EvalError, match="weights"):
        evaluate(make_config(out, **{**cfg, "weights": "random"}, resume=True))
    with pytest.raises(EvalError, match="--resume"):
        evaluate(make_config(out, **cfg))  # a new run may not overwrite an existing one
    with pytest.raises(EvalError, match="not an evaluation run"):
        evaluate(make_config(tmp_path / "empty", **cfg, resume=True))


@pytest.mark.parametrize("args, message", [
    (["--env", "nope/Nope-v0"], "unknown Gymnasium env id"),
    (["--model", "missing.model"], "file not found"),
    (["--weights", "missing.weights"], "file not found"),
    (["--num-envs", "0"], "--num-envs must be >= 1"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--zoo", "foundation-model-1x"], "either --zoo"),
])
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    base = {"--model": str(SMALL_MODEL), "--weights": str(SMALL_WEIGHTS), "--env": POV_ENV,
            "--out": str(tmp_path / "run"), "--episodes": "1"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = [part for pair in base.items() for part in pair] + ["--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_unloadable_weights_give_one_line_and_leave_no_run_dir(tmp_path, capsys):
    bad = tmp_path / "bad.weights"
    bad.write_bytes(b"not a checkpoint")
    argv = ["--model", str(SMALL_MODEL), "--weights", str(bad), "--env", POV_ENV, "--out", str(tmp_path / "run"),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load the agent" in err and "bad.weights" in err
    assert not (tmp_path / "run").exists()  # so the corrected command can use the same --out


def test_missing_weights_error_says_how_to_get_them(capsys):
    assert main(["--env", POV_ENV, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--zoo" in err and "python -m vpt_agent.zoo download" in err and "--weights random" in err


def test_cli_bad_values_exit_nonzero_without_traceback(tmp_path):
    proc = cli("--episodes", "abc")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    proc = cli(*cli_args(tmp_path / "run", 1, "nope/Nope-v0"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().splitlines() == [err.strip()] and "unknown" in err


def test_default_env_is_embedded_without_minerl():
    import importlib.util

    expected = "vpt/MineRLHumanSurvival-v0" if importlib.util.find_spec("minerl") else EMBEDDED_ENV
    assert default_env() == expected


def test_env_that_always_crashes_aborts_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--model", str(SMALL_MODEL), "--weights", str(SMALL_WEIGHTS), "--env", POV_ENV, "--env-kwargs",
            '{"crash_mode": "raise", "crash_at": 0}', "--episodes", "20", "--max-retries", "0", "--out", str(out),
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: run aborted: 5 crashes in a row") and "crashed on purpose" in err[-1]
    assert [r["outcome"] for r in records(out)] == ["crashed"] * 5  # recorded, not dropped
    assert json.loads((out / report.SUMMARY_FILE).read_text())["crashed_attempts"] == 5


def test_env_that_cannot_be_created_is_one_clear_error(tmp_path, capsys):
    argv = ["--model", str(SMALL_MODEL), "--weights", str(SMALL_WEIGHTS), "--env", POV_ENV, "--env-kwargs",
            '{"no_such_option": 1}', "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot create the env" in err and "no_such_option" in err


def test_python_api_from_project_dir_without_pythonpath(tmp_path):
    """``python -c`` puts '' (the cwd) on sys.path; env workers must still import ``envs`` from there."""
    code = ("import sys; from vpt_agent.evaluate import main; sys.exit(main(["
            f"'--model', {str(SMALL_MODEL)!r}, '--weights', {str(SMALL_WEIGHTS)!r}, '--env', {EMBEDDED_ENV!r}, "
            f"'--episodes', '1', '--max-steps', '3', '--out', {str(tmp_path / 'run')!r}, '--no-progress']))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [r["outcome"] for r in records(tmp_path / "run")] == ["truncated"]


def test_default_threads_leave_a_core_per_local_env(monkeypatch):
    from vpt_agent.eval import runner

    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    assert runner.default_threads(EvalConfig(num_envs=3)) == 5
    assert runner.default_threads(EvalConfig(num_envs=16)) == 1
    assert runner.default_threads(EvalConfig(num_envs=16, backend="ray")) == 8
    assert runner.default_threads(EvalConfig(num_envs=16), num_envs=1) == 7  # one episode left: one worker runs


def test_policy_threads_count_the_workers_that_run(tmp_path, monkeypatch):
    """K=6 for one episode starts one env worker, so the policy gets all cores but one."""
    from vpt_agent.eval import runner

    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    asked = []
    real = runner._torch_threads
    monkeypatch.setattr(runner, "_torch_threads", lambda n: asked.append(n) or real(1))
    evaluate(make_config(tmp_path / "run", episodes=1, num_envs=6, max_steps=2))
    assert asked == [7]


def test_users_own_envs_package_does_not_shadow_the_vpt_envs(tmp_path):
    """A stray ``envs`` package in the working directory (common in RL repos) must not hide ``vpt/*`` ids."""
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "__init__.py").write_text("raise RuntimeError('the user\\'s own envs package was imported')\n")
    proc = subprocess.run([sys.executable, "-m", "vpt_agent.evaluate", *cli_args(tmp_path / "run", 1),
                           "--max-steps", "3"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [r["outcome"] for r in records(tmp_path / "run")] == ["truncated"]
