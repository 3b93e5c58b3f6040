"""Evaluator integrity end to end: hostile envs, bad flags, concurrent and interrupted runs, disk full, Ray signals,
``--record`` (VPT recordings round trip) and ``--protocol``.

Uses the golden small model and ``tests/evalenvs.py`` (a cheap deterministic env that misbehaves on request).
"""
from __future__ import annotations

import json
import logging
import resource
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_MODEL, SMALL_WEIGHTS
from evalenvs import POV_ENV
from test_evaluate import cli, wait_for_lines  # the evaluator CLI in a subprocess (tests/ on its path)
from vpt_agent.eval import reaper, report, rundir
from vpt_agent.eval.records import CRASHED
from vpt_agent.evaluate import EvalConfig, EvalError, evaluate

SEED = 100


def make_config(out: Path, **overrides) -> EvalConfig:
    settings = dict(model=str(SMALL_MODEL), weights=str(SMALL_WEIGHTS), device="cpu", deterministic=True, seed=SEED,
                    out=str(out), progress=False, print_table=False, env=POV_ENV, env_kwargs={"length": 3},
                    episodes=2)
    settings.update(overrides)
    return EvalConfig(**settings)


def strict_lines(path: Path) -> list:
    def refuse(name):
        raise AssertionError(f"{name} written to {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line.strip()]


def strict_file(path: Path):
    def refuse(name):
        raise AssertionError(f"{name} written to {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def cli_args(out: Path, episodes: int, *extra: str, env_kwargs: str = '{"length": 3}') -> list:
    return ["--model", str(SMALL_MODEL), "--weights", str(SMALL_WEIGHTS), "--env", POV_ENV, "--env-kwargs",
            env_kwargs, "--device", "cpu", "--deterministic", "--seed", str(SEED), "--episodes", str(episodes),
            "--out", str(out), "--no-progress", *extra]


def no_temporaries(out: Path) -> None:
    left = [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert not left, left


# ----------------------------------------------------------------------------- hostile envs

HOSTILE = {"float_pov": "uint8", "no_pov": "no 'pov'", "bad_shape": "changed shape", "flat_pov": "(H, W, 3)",
           "nan_reward": "non-finite reward", "inf_reward": "non-finite reward"}


def test_each_hostile_reply_is_that_envs_crash_retried_with_the_same_seed(tmp_path):
    out = tmp_path / "run"
    plan = {str(SEED + 1 + i): mode for i, mode in enumerate(HOSTILE)}  # episode 0 behaves, 1..6 misbehave once
    kwargs = {"length": 3, "crash_plan": plan, "crash_at": 1, "crash_dir": str(tmp_path / "marks")}
    summary = evaluate(make_config(out, env_kwargs=kwargs, episodes=1 + len(HOSTILE), num_envs=2))
    lines = strict_lines(out / report.EPISODES_FILE)
    crashed = {r["seed"]: r for r in lines if r["outcome"] == CRASHED}
    assert sorted(crashed) == sorted(int(seed) for seed in plan)
    for seed, mode in plan.items():
        assert HOSTILE[mode] in crashed[int(seed)]["error"], (mode, crashed[int(seed)]["error"])
        assert crashed[int(seed)]["will_retry"] is True
    assert summary["returns"]["n"] == 1 + len(HOSTILE) and summary["episodes_given_up"] == [] and summary["complete"]
    assert summary["crashed_attempts"] == len(HOSTILE)
    strict_file(out / report.SUMMARY_FILE)


def test_an_env_that_always_misbehaves_is_given_up_not_the_run(tmp_path):
    out = tmp_path / "run"
    kwargs = {"length": 3, "crash_mode": "float_pov", "crash_at": 1, "crash_seeds": [SEED + 1]}
    summary = evaluate(make_config(out, env_kwargs=kwargs, episodes=3, max_retries=1))
    assert summary["episodes_given_up"] == [1] and summary["returns"]["n"] == 2 and summary["crashed_attempts"] == 2


def test_a_hanging_env_constructor_is_a_one_line_error_within_the_timeout(tmp_path):
    start = time.monotonic()
    with pytest.raises(EvalError, match="did not finish within 1s") as exc:
        evaluate(make_config(tmp_path / "run", env_kwargs={"hang_init": 60}, reset_timeout=1.0))
    assert time.monotonic() - start < 30 and "\n" not in str(exc.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("changes, message", [
    ({"seed": -5}, "--seed must be >= 0"),
    ({"step_timeout": float("nan")}, "--step-timeout must be a finite number"),
    ({"step_timeout": float("inf")}, "--step-timeout must be a finite number"),
    ({"reset_timeout": -1.0}, "--reset-timeout must be > 0"),
    ({"episodes": True}, "--episodes must be an integer"),
    ({"num_envs": 1.5}, "--num-envs must be an integer"),
    ({"protocol": "nope"}, "--protocol"),
    ({"step_timeout": 3e6}, "--step-timeout must be <= 1,000,000.0, got 3000000.0"),  # poll() takes <= ~24.8 days
    ({"reset_timeout": 1e20}, "--reset-timeout must be <= 1,000,000.0"),
    ({"episodes": 10**11}, "--episodes must be <= 1,000,000, got 100000000000"),
    ({"seed": 2**64}, "--seed must be <= 4,294,967,295"),
])
def test_bad_values_are_refused_up_front(tmp_path, changes, message):
    with pytest.raises(EvalError, match=message):
        evaluate(make_config(tmp_path / "run", **changes))
    assert not (tmp_path / "run").exists()


def test_cli_negative_seed_one_line_exit_2(tmp_path):
    proc = cli(*cli_args(tmp_path / "run", 1, "--seed=-5"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "--seed" in err


def test_a_video_error_drops_that_video_not_the_run(tmp_path, monkeypatch, caplog):
    import imageio.v2 as imageio

    def broken(*args, **kwargs):
        raise OSError("encoder exploded")

    monkeypatch.setattr(imageio, "get_writer", broken)
    with caplog.at_level(logging.WARNING):
        summary = evaluate(make_config(tmp_path / "run", video=1))
    assert summary["returns"]["n"] == 2
    assert summary["session"]["videos"]["dropped"] == {"0": "OSError: encoder exploded"}
    assert "encoder exploded" in caplog.text and not list((tmp_path / "run").rglob("*.mp4"))


# ----------------------------------------------------------------------------- run directory, end to end

def test_resume_refuses_changed_weights(tmp_path):
    weights = tmp_path / "w.weights"
    weights.write_bytes(SMALL_WEIGHTS.read_bytes())
    out = tmp_path / "run"
    evaluate(make_config(out, weights=str(weights), episodes=1))
    assert json.loads((out / rundir.RUN_FILE).read_text())["files"]["weights"]["size"] == weights.stat().st_size
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(EvalError, match="weights file .* changed"):
        evaluate(make_config(out, weights=str(weights), episodes=2, resume=True))


def test_an_evaluator_on_a_directory_in_use_stops_at_once_and_touches_nothing(tmp_path):
    out = tmp_path / "run"
    with rundir.locked_run_dir(out):  # as a running evaluator holds it
        before = sorted(p.name for p in out.iterdir())
        proc = cli(*cli_args(out, 2))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "in use by another evaluation" in err, err
        assert len(err.strip().splitlines()) == 1
        with pytest.raises(EvalError, match="in use by another evaluation"):
            evaluate(make_config(out, resume=True))
        assert sorted(p.name for p in out.iterdir()) == before
    evaluate(make_config(out))  # free again
    assert sorted(r["index"] for r in strict_lines(out / report.EPISODES_FILE)) == [0, 1]


def test_record_directory_in_use_is_refused(tmp_path):
    with rundir.locked_run_dir(tmp_path / "rec"):
        with pytest.raises(EvalError, match="--record .* in use"):
            evaluate(make_config(tmp_path / "run", record=str(tmp_path / "rec")))


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_disk_full_is_one_line_leaves_no_temporaries_and_resumes(tmp_path):
    out = tmp_path / "run"
    proc = cli(*cli_args(out, 6), preexec_fn=_limit_file_size(1500))  # run.json fits, the log soon does not
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "File too large" in err and "--resume" in err
    no_temporaries(out)
    assert 0 < len(strict_lines(out / report.EPISODES_FILE)) < 6  # complete lines only: the failed one was cut off
    evaluate(make_config(out, episodes=6, resume=True))
    assert sorted(r["index"] for r in strict_lines(out / report.EPISODES_FILE) if r["outcome"] != CRASHED) == \
        list(range(6))
    no_temporaries(out)


@pytest.mark.parametrize("content", ["{broken", '{"identity": []}'])
def test_cli_corrupt_run_json_is_one_line_exit_2(tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.RUN_FILE).write_text(content)
    proc = cli(*cli_args(out, 1, "--resume"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1 and "run.json" in err


# ----------------------------------------------------------------------------- Ray: signals and leftovers

def test_ray_sigterm_writes_the_summary_and_hostile_obs_is_a_crash(tmp_path):
    out = tmp_path / "run"
    kwargs = json.dumps({"length": 3, "step_delay": 0.2, "crash_mode": "float_pov", "crash_at": 1,
                         "crash_seeds": [SEED], "crash_dir": str(tmp_path / "marks")})
    proc = cli(*cli_args(out, 30, "--backend", "ray", "--num-envs", "2", env_kwargs=kwargs))
    try:
        wait_for_lines(out / report.EPISODES_FILE, 3, proc, timeout=240)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads((out / report.SUMMARY_FILE).read_text())
    assert summary["session"]["interrupted"] is True and summary["session"]["backend"] == "ray"
    crashed = [r for r in strict_lines(out / report.EPISODES_FILE) if r["outcome"] == CRASHED]
    assert crashed and "uint8" in crashed[0]["error"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc (Linux only)")
def test_ray_sigkill_of_the_evaluator_leaves_no_ray_processes(tmp_path):
    out = tmp_path / "run"
    proc = cli(*cli_args(out, 30, "--backend", "ray", env_kwargs='{"length": 3, "step_delay": 0.2}'))
    try:
        wait_for_lines(out / report.EPISODES_FILE, 1, proc, timeout=240)
        time.sleep(1.0)  # the reaper polls twice a second
        started = reaper.tree([proc.pid]) - {k for k in reaper.tree([proc.pid]) if k[0] == proc.pid}
        assert len(started) >= 4  # Ray's GCS, raylet, agents, the env actor
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    deadline = time.monotonic() + 30
    while any(reaper.alive(key) for key in started):
        assert time.monotonic() < deadline, [key for key in started if reaper.alive(key)]
        time.sleep(0.2)


# ----------------------------------------------------------------------------- --record and --protocol

def test_record_refuses_to_replace_another_runs_recordings(tmp_path):
    record = tmp_path / "rec"
    evaluate(make_config(tmp_path / "a", record=str(record), episodes=1, max_steps=3))
    before = {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()}
    with pytest.raises(EvalError, match=f"already holds episode_00000_seed{SEED}"):
        evaluate(make_config(tmp_path / "b", record=str(record), episodes=1, max_steps=5))
    assert not (tmp_path / "b").exists()  # refused before anything was created
    assert {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()} == before
    evaluate(make_config(tmp_path / "c", record=str(record), episodes=1, max_steps=3, seed=SEED + 7))  # a new seed
    (tmp_path / "file").write_text("x")
    for bad, message in ((tmp_path / "file", "exists and is not a directory"), (tmp_path / "d", "another directory")):
        with pytest.raises(EvalError, match=message):
            evaluate(make_config(tmp_path / "d", record=str(bad)))
    assert not (tmp_path / "d").exists()


def test_record_round_trip_gives_the_actions_sent_to_the_env(tmp_path):
    from vpt_agent.data import find_recordings, load_actions, load_recording

    out, record, log = tmp_path / "run", tmp_path / "rec", tmp_path / "actions.jsonl"
    kwargs = {"length": 6, "action_log": str(log), "crash_mode": "raise", "crash_at": 2,
              "crash_seeds": [SEED + 1], "crash_dir": str(tmp_path / "marks")}
    summary = evaluate(make_config(out, env_kwargs=kwargs, record=str(record), episodes=2))
    assert summary["session"]["recordings"]["saved"] == 2 and summary["session"]["recordings"]["dropped"] == {}
    files = find_recordings(record)
    assert [f.name for f in files] == [f"episode_00000_seed{SEED}", f"episode_00001_seed{SEED + 1}"]
    no_temporaries(record)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    for files_i, seed in zip(files, (SEED, SEED + 1)):
        episode = [s["action"] for s in sent if s["seed"] == seed]
        episode = episode[-6:]  # the seed's last (finished) attempt: 6 steps
        raw = [json.loads(line) for line in files_i.actions.read_text().splitlines()]
        assert len(raw) == 6 and [r["tick"] for r in raw] == list(range(6))
        loaded = load_actions(files_i)
        for step, action in zip(loaded.frame_index.tolist(), loaded.actions):
            expected = episode[step]
            assert {k: int(v) for k, v in action.items() if k != "camera"} == \
                {k: v for k, v in expected.items() if k != "camera"}
            assert np.array_equal(np.asarray(action["camera"], np.float32), np.float32(expected["camera"]))
        skipped = set(range(6)) - set(loaded.frame_index.tolist())
        assert all(not any(v for k, v in episode[i].items() if k != "camera") and not any(episode[i]["camera"])
                   for i in skipped)  # only null actions are skipped on read
        frames = load_recording(files_i, size=None).frames
        assert frames.shape[1:] == (72, 128, 3)  # full resolution, not the model's 128x128 input


def test_protocol_sets_env_length_and_reward_and_the_report_says_what_was_overridden(tmp_path):
    out = tmp_path / "run"
    summary = evaluate(make_config(out, protocol="voxel-treechop", env=None, env_kwargs={}, max_steps=4,
                                   episodes=1))
    assert summary["env"] == "vpt/VoxelTreechop-v0"
    run = json.loads((out / rundir.RUN_FILE).read_text())
    assert run["identity"]["protocol"] == "voxel-treechop" and run["protocol"]["name"] == "voxel-treechop"
    section = summary["protocol"]
    assert section["comparable"] is False and any("--max-steps 4" in o for o in section["overridden"])
    assert [row["item"] for row in summary["items"]["rows"]] == ["log"]
    assert "not comparable" in report.format_table(summary, out)
    with pytest.raises(EvalError, match="protocol"):
        evaluate(make_config(out, env="vpt/VoxelTreechop-v0", env_kwargs={}, max_steps=4, episodes=1,
                             resume=True))  # the protocol is part of the run's identity


def test_a_recording_error_drops_that_recording_not_the_run(tmp_path, monkeypatch, caplog):
    from vpt_agent.data import RecordingWriter, find_recordings

    original = RecordingWriter.write

    def full_disk_for_episode_0(self, frame, action, extra=None):
        if self.files.name.startswith("episode_00000"):
            raise OSError(28, "No space left on device")
        return original(self, frame, action, extra)

    monkeypatch.setattr(RecordingWriter, "write", full_disk_for_episode_0)
    record = tmp_path / "rec"
    with caplog.at_level(logging.WARNING):
        summary = evaluate(make_config(tmp_path / "run", record=str(record)))
    assert summary["returns"]["n"] == 2
    assert summary["session"]["recordings"] == {"directory": str(record), "saved": 1,
                                                "dropped": {"0": "OSError: [Errno 28] No space left on device"}}
    assert [f.name for f in find_recordings(record)] == [f"episode_00001_seed{SEED + 1}"]
    assert "dropped the recording of episode 0" in caplog.text
    no_temporaries(record)


def test_protocol_presets_fill_only_what_was_not_given():
    from vpt_agent.eval.protocol import apply_protocol, overrides

    filled = apply_protocol(EvalConfig(protocol="vpt-rl"))
    assert (filled.env, filled.max_steps) == ("vpt/MineRLHumanSurvival-v0", 12_000)
    assert overrides({"protocol": "vpt-rl", "env": filled.env, "max_steps": 12_000, "env_kwargs": {}}) == []
    kept = apply_protocol(EvalConfig(protocol="vpt-bc", max_steps=100, env="vpt/VoxelTreechop-v0"))
    assert (kept.env, kept.max_steps) == ("vpt/VoxelTreechop-v0", 100)
    changed = overrides({"protocol": "vpt-bc", "env": kept.env, "max_steps": 100,
                         "env_kwargs": {"item_rewards": {"log": 1}}})
    assert len(changed) == 3 and "the reward is that env's own" in changed[0]
